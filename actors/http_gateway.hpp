// The HTTP/JSON API and /metrics on HTTP_PORT. It talks to the node only through the node
// API actor, so HTTP and CAF clients see the same behaviour. One exception: a cache read
// hit is answered from this node's cache mirror (cache_mirror.hpp), with the same body.
//
// Connections are served by one epoll loop thread (http/server.hpp), which hands each
// request to the gateway actor; the actor asks the node asynchronously and answers when
// its response arrives. No thread blocks per connection or per request (a
// thread-per-connection server spent most of a node's CPU on thread switches), and a
// cache hit is answered on the loop thread itself, without any actor.
//
// Limits: request bodies over HTTP_MAX_BODY_BYTES get 413, paths over 1024 bytes 414,
// header lines over 8 KiB 400, connections beyond HTTP_MAX_CONNECTIONS 503; a request
// that stalls for 10 s gets 408 and an idle keep-alive connection is closed after 60 s;
// every error is {"error": code, "message": text}.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "actors/metrics.hpp"
#include "app/settings.hpp"
#include "dsync/api.hpp"

namespace dsync {

class cache_mirror;

class http_gateway {
 public:
  // `cache_lines`: this node's readable cache lines (cache_mirror.hpp), from which
  // GET /v1/cache/{key} answers hits without asking the node; null: it always asks.
  http_gateway(caf::actor_system& sys, node_api node, const node_settings& settings,
               metrics::registry& metrics, std::shared_ptr<cache_mirror> cache_lines = nullptr);
  ~http_gateway();

  // Binds the port and starts serving; an error text (naming the address) on failure.
  std::optional<std::string> start();
  // Stops accepting and closes every connection.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dsync
