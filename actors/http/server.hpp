// The HTTP/1.1 connection loop of the gateway: one thread, epoll, non-blocking sockets.
// It accepts, reads, parses (request_parser.hpp) and writes; what a request means is the
// handler's business, which may answer at once on the loop thread (a cache hit) or later
// from any thread (an answer from the node actor).
//
// Why not CAF's multiplexer: in CAF 0.17 every answer costs two epoll_ctl calls (write
// interest on, then off), every read a second read that ends in EAGAIN and a reset of a
// 64 KiB receive buffer, and every request an actor message. This loop writes an answer
// at once and reads once per readiness, as Redis does: an epoll_wait, a read and a write
// per request.
//
// One request per connection is answered at a time; requests pipelined behind it wait
// their turn. Limits: the parser's (413, 414, 431, 400, 505, 411), `max_connections`
// (503 to the one over), a request that stalls for `read_timeout` gets 408, a keep-alive
// connection idle for `idle_timeout` is closed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "actors/http/request_parser.hpp"

namespace dsync::http {

struct server_settings {
  std::string host;
  uint16_t port = 0;
  limits parse;
  size_t max_connections = 1024;
  std::chrono::milliseconds read_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
};

class server {
 public:
  // Called on the loop thread with each complete request; it must be answered exactly
  // once with respond(), at once or later.
  using request_handler = std::function<void(uint64_t connection, request&& req)>;
  // Called on the loop thread for a request the loop refused itself (its status).
  using refusal_handler = std::function<void(int status)>;

  server(server_settings settings, request_handler on_request, refusal_handler on_refusal);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds and starts the loop thread; an error text naming the address on failure.
  std::optional<std::string> start();
  // Stops the loop and closes every connection; answers after this are dropped.
  void stop();

  // Answers the request being served on `connection`, from any thread. Dropped if the
  // connection has closed meanwhile. `close`: the connection is closed after the answer.
  void respond(uint64_t connection, int status, std::string_view content_type, std::string_view body, bool close);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dsync::http
