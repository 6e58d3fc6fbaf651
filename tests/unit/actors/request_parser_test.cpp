#include <doctest/doctest.h>

#include <string>

#include "actors/http/request_parser.hpp"

using namespace dsync::http;
using state = parse_result::state;

namespace {

parse_result parse(const std::string& text, limits lim = {}) { return parse_request(text, lim); }

}  // namespace

TEST_CASE("a complete request with a body, then the next pipelined one") {
  std::string first = "PUT /v1/kv/a%2Fb?consistency=stale&x=1+2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                      "Content-Type: application/json\r\n\r\nhello";
  std::string second = "GET /v1/health HTTP/1.1\r\n\r\n";
  auto r = parse(first + second);
  REQUIRE(r.outcome == state::complete);
  CHECK(r.consumed == first.size());
  CHECK(r.req.method == "PUT");
  CHECK(r.req.path == "/v1/kv/a/b");
  CHECK(r.req.params.at("consistency") == "stale");
  CHECK(r.req.params.at("x") == "1 2");
  CHECK(r.req.body == "hello");
  CHECK(r.req.header("content-type") == "application/json");
  CHECK(r.req.keep_alive);
  auto next = parse(second);
  REQUIRE(next.outcome == state::complete);
  CHECK(next.req.path == "/v1/health");
  CHECK(next.req.body.empty());
}

TEST_CASE("every prefix of a request is incomplete, never invalid") {
  std::string text = "POST /v1/queues/q/messages HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"payload\":1}";
  for (size_t n = 0; n < text.size(); ++n) {
    auto r = parse(text.substr(0, n));
    INFO("prefix of " << n << " bytes");
    CHECK(r.outcome == state::incomplete);
  }
  CHECK(parse(text).outcome == state::complete);
}

TEST_CASE("keep-alive follows the version and the Connection header") {
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").req.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.0\r\n\r\n").req.keep_alive);
  CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").req.keep_alive);
  CHECK(parse("GET / HTTP/1.1\r\nconnection: upgrade, keep-alive\r\n\r\n").req.keep_alive);
}

TEST_CASE("Expect: 100-continue is reported while the body is missing") {
  auto r = parse("PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  CHECK(r.outcome == state::incomplete);
  CHECK(r.expects_continue);
  CHECK_FALSE(parse("PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n").expects_continue);
}

TEST_CASE("malformed requests are refused with a status and a reason") {
  struct bad {
    std::string text;
    int status;
    std::string says;
  };
  limits lim;
  lim.max_body = 10;
  const bad cases[] = {
    {"GET /\r\n\r\n", 400, "request line"},
    {"GET  / HTTP/1.1\r\n\r\n", 400, "request line"},
    {"G(T / HTTP/1.1\r\n\r\n", 400, "method"},
    {"GET / HTTP/2.0\r\n\r\n", 505, "2.0"},
    {"GET / FTP/1.0\r\n\r\n", 400, "version"},
    {"GET x HTTP/1.1\r\n\r\n", 400, "start"},
    {"GET /a%zz HTTP/1.1\r\n\r\n", 400, "%-escape"},
    {"GET /a%4 HTTP/1.1\r\n\r\n", 400, "%-escape"},
    {"GET /a?b=%G1 HTTP/1.1\r\n\r\n", 400, "query"},
    {"GET /v1/kv/%ff HTTP/1.1\r\n\r\n", 400, "not UTF-8"},
    {"GET /v1/kv/a?b=%c3 HTTP/1.1\r\n\r\n", 400, "not UTF-8"},
    {"GET /v1/kv/a?%ed%a0%80=1 HTTP/1.1\r\n\r\n", 400, "not UTF-8"},
    {"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, "header"},
    {"GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400, "header"},
    {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, "folded"},
    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"},
    {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "Content-Length"},
    {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "conflicting"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, "Content-Length"},
    {"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413, "10 bytes"},
    {"GET /" + std::string(2000, 'p') + " HTTP/1.1\r\n\r\n", 414, "1024"},
  };
  for (auto& c : cases) {
    auto r = parse(c.text, lim);
    INFO(c.text);
    CHECK(r.outcome == state::invalid);
    CHECK(r.status == c.status);
    CHECK(r.error.find(c.says) != std::string::npos);
  }
}

TEST_CASE("a refused body's size is known, so it can be drained before closing") {
  limits lim;
  lim.max_body = 10;
  std::string head = "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
  auto r = parse(head, lim);
  REQUIRE(r.status == 413);
  CHECK(r.request_bytes == head.size() + 100);
}

TEST_CASE("oversized lines are refused before their end arrives") {
  limits lim;
  CHECK(parse(std::string(lim.max_request_line + 1, 'G'), lim).status == 414);
  auto long_header = "GET / HTTP/1.1\r\nX: " + std::string(lim.max_header_line + 1, 'v');
  CHECK(parse(long_header, lim).status == 400);
  std::string many = "GET / HTTP/1.1\r\n";
  while (many.size() < lim.max_header_bytes + lim.max_request_line + 100) many += "X-Filler: 0123456789\r\n";
  CHECK(parse(many, lim).status == 431);
}

TEST_CASE("bare LF line ends and leading empty lines are tolerated") {
  auto r = parse("\r\n\nGET /v1/health HTTP/1.1\nHost: x\n\n");
  REQUIRE(r.outcome == state::complete);
  CHECK(r.req.path == "/v1/health");
  CHECK(r.req.header("host") == "x");
}

TEST_CASE("percent_decode") {
  std::string out;
  CHECK(percent_decode("a%20b+c", false, out));
  CHECK(out == "a b+c");
  CHECK(percent_decode("a%20b+c", true, out));
  CHECK(out == "a b c");
  CHECK_FALSE(percent_decode("%", false, out));
  CHECK_FALSE(percent_decode("%2", false, out));
  CHECK_FALSE(percent_decode("%x0", false, out));
}

TEST_CASE("valid_utf8") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain ascii"));
  CHECK(valid_utf8("\xc3\xa9t\xc3\xa9"));              // été
  CHECK(valid_utf8("\xe2\x82\xac"));                    // U+20AC
  CHECK(valid_utf8("\xf0\x9f\x98\x80"));                // U+1F600
  CHECK(valid_utf8("\xf4\x8f\xbf\xbf"));                // U+10FFFF
  CHECK_FALSE(valid_utf8("\xff"));
  CHECK_FALSE(valid_utf8("\x80"));                      // a lone continuation byte
  CHECK_FALSE(valid_utf8("\xc3"));                      // cut short
  CHECK_FALSE(valid_utf8("\xe2\x82"));
  CHECK_FALSE(valid_utf8("\xc3\x28"));                  // not a continuation
  CHECK_FALSE(valid_utf8("\xc0\xaf"));                  // overlong '/'
  CHECK_FALSE(valid_utf8("\xe0\x80\xaf"));
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));              // a surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));          // past U+10FFFF
  CHECK_FALSE(valid_utf8("\xf8\x88\x80\x80\x80"));
}
