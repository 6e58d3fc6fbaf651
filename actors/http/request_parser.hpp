// An HTTP/1.1 request parser for the gateway: pure (bytes in, request out), so every
// malformed input can be tested without a socket. It parses one request from the front
// of a buffer; the caller keeps what follows (pipelined requests) for the next call.
//
// Supported: HTTP/1.0 and 1.1, Content-Length bodies, keep-alive, Expect: 100-continue,
// percent-encoded paths and query strings. Refused with a status and a reason: chunked
// request bodies (411: send Content-Length), oversized request lines (414), header lines
// (400) and header blocks (431), bodies over the limit (413), other protocol versions (505).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsync::http {

struct request {
  std::string method;
  std::string path;  // percent-decoded, without the query
  std::map<std::string, std::string> params;  // decoded query parameters (the first of repeated ones)
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  bool keep_alive = true;

  // The value of a header (name in lower case), or "" if absent.
  const std::string& header(std::string_view name) const;
  bool has_param(const std::string& name) const { return params.count(name) > 0; }
};

struct limits {
  size_t max_request_line = 8192;
  size_t max_header_line = 8192;
  size_t max_header_bytes = 65536;
  size_t max_path = 1024;
  size_t max_body = 1 << 20;
};

struct parse_result {
  enum class state { incomplete, complete, invalid };
  state outcome = state::incomplete;
  size_t consumed = 0;             // complete: bytes taken from the buffer's front
  bool expects_continue = false;   // incomplete with headers read: the client waits for "100 Continue"
  request req;                     // complete
  int status = 0;                  // invalid: the HTTP status to answer with
  std::string error;               // invalid: what was wrong (the connection is closed after the answer)
  size_t request_bytes = 0;        // invalid with 413: the whole request's size, headers and declared body
};

// Parses the request at the front of `buffer`.
parse_result parse_request(std::string_view buffer, const limits& lim);

// Percent-decodes `in` (and '+' as a space if `plus_is_space`); false on a malformed escape.
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out);

// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);

// The reason phrase of a status code ("OK", "Not Found", ...).
const char* reason_phrase(int status);

}  // namespace dsync::http
