#include "actors/http/request_parser.hpp"

#include <algorithm>

namespace dsync::http {

namespace {

const std::string no_value;

// ASCII only, by design: HTTP's grammar is ASCII, and the C library's locale-aware
// versions cost a call per byte on every request.
bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = trim(list.substr(0, comma));
    if (lower(item) == token) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

parse_result invalid(int status, std::string why) {
  parse_result r;
  r.outcome = parse_result::state::invalid;
  r.status = status;
  r.error = std::move(why);
  return r;
}

bool parse_query(std::string_view query, std::map<std::string, std::string>& out) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (!pair.empty()) {
      auto eq = pair.find('=');
      std::string name;
      std::string value;
      if (!percent_decode(pair.substr(0, eq), true, name)) return false;
      if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), true, value)) return false;
      out.emplace(std::move(name), std::move(value));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return true;
}

}  // namespace

const std::string& request::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name) return v;
  return no_value;
}

bool valid_utf8(std::string_view s) {
  static constexpr uint32_t least[] = {0, 0x80, 0x800, 0x10000};  // by continuation bytes
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    uint32_t cp = c;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) extra = 1, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0) extra = 2, cp = c & 0x0Fu;
    else if ((c & 0xF8) == 0xF0) extra = 3, cp = c & 0x07u;
    else return false;
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if (cp < least[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

parse_result parse_request(std::string_view buffer, const limits& lim) {
  // Tolerate empty lines before a request (RFC 9112 section 2.2).
  size_t start = 0;
  while (start < buffer.size() && (buffer[start] == '\r' || buffer[start] == '\n')) ++start;
  auto line_end = buffer.find('\n', start);
  if (line_end == std::string_view::npos) {
    if (buffer.size() - start > lim.max_request_line)
      return invalid(414, "the request line is over " + std::to_string(lim.max_request_line) + " bytes");
    return {};
  }
  auto line = buffer.substr(start, line_end - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > lim.max_request_line)
    return invalid(414, "the request line is over " + std::to_string(lim.max_request_line) + " bytes");

  // The header block ends at an empty line.
  size_t pos = line_end + 1;
  std::vector<std::string_view> header_lines;
  header_lines.reserve(16);
  bool headers_done = false;
  while (pos < buffer.size()) {
    auto end = buffer.find('\n', pos);
    if (end == std::string_view::npos) {
      if (buffer.size() - pos > lim.max_header_line)
        return invalid(400, "a header line is over " + std::to_string(lim.max_header_line) + " bytes");
      break;
    }
    auto h = buffer.substr(pos, end - pos);
    if (!h.empty() && h.back() == '\r') h.remove_suffix(1);
    pos = end + 1;
    if (h.empty()) {
      headers_done = true;
      break;
    }
    if (h.size() > lim.max_header_line)
      return invalid(400, "a header line is over " + std::to_string(lim.max_header_line) + " bytes");
    header_lines.push_back(h);
  }
  if (pos - start > lim.max_header_bytes + lim.max_request_line)
    return invalid(431, "the request headers are over " + std::to_string(lim.max_header_bytes) + " bytes");
  if (!headers_done) return {};

  parse_result r;
  auto& req = r.req;
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return invalid(400, "malformed request line: expected METHOD TARGET HTTP/1.1");
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char))
    return invalid(400, "malformed request line: bad method");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    if (version.substr(0, 5) != "HTTP/") return invalid(400, "malformed request line: bad protocol version");
    return invalid(505, "HTTP version " + std::string{version.substr(5)} + " is not supported; use HTTP/1.1");
  }
  if (target.empty() || target.front() != '/') return invalid(400, "the request target must be a path starting with /");
  auto q = target.find('?');
  auto raw_path = target.substr(0, q);
  if (raw_path.size() > lim.max_path)
    return invalid(414, "path is " + std::to_string(raw_path.size()) + " bytes; the limit is " + std::to_string(lim.max_path));
  if (!percent_decode(raw_path, false, req.path)) return invalid(400, "the path has a malformed %-escape");
  if (!valid_utf8(req.path)) return invalid(400, "the path is not UTF-8 once %-decoded");
  if (q != std::string_view::npos) {
    auto query = target.substr(q + 1);
    if (auto hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
    if (!parse_query(query, req.params)) return invalid(400, "the query string has a malformed %-escape");
    for (auto& [name, value] : req.params)
      if (!valid_utf8(name) || !valid_utf8(value)) return invalid(400, "the query string is not UTF-8 once %-decoded");
  }
  req.method = std::string{method};

  bool has_length = false;
  uint64_t length = 0;
  for (auto h : header_lines) {
    if (h.front() == ' ' || h.front() == '\t') return invalid(400, "folded header lines are not allowed");
    auto colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return invalid(400, "malformed header line (no name: value)");
    auto name = h.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return invalid(400, "malformed header name");
    auto value = trim(h.substr(colon + 1));
    auto key = lower(name);
    if (key == "content-length") {
      if (value.empty() || value.size() > 18 || !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return invalid(400, "Content-Length must be a non-negative integer");
      auto n = std::stoull(std::string{value});
      if (has_length && n != length) return invalid(400, "conflicting Content-Length headers");
      has_length = true;
      length = n;
    } else if (key == "transfer-encoding") {
      return invalid(411, "chunked request bodies are not supported; send the body with a Content-Length");
    }
    req.headers.emplace_back(std::move(key), std::string{value});
  }
  auto& connection = req.header("connection");
  req.keep_alive = version == "HTTP/1.1" ? !has_token(connection, "close") : has_token(connection, "keep-alive");
  if (length > lim.max_body) {
    auto r413 = invalid(413, "request body exceeds " + std::to_string(lim.max_body) + " bytes");
    r413.request_bytes = pos + length;
    return r413;
  }
  if (buffer.size() - pos < length) {
    r.outcome = parse_result::state::incomplete;
    r.expects_continue = has_token(req.header("expect"), "100-continue");
    r.req = {};
    return r;
  }
  req.body = std::string{buffer.substr(pos, length)};
  r.outcome = parse_result::state::complete;
  r.consumed = pos + length;
  return r;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

}  // namespace dsync::http
