// The HTTP/JSON API and /metrics on HTTP_PORT (cpp-httplib). It talks to the node only
// through the node API actor, so HTTP and CAF clients see the same behaviour. Requests
// run on the server's own worker threads (never on CAF's scheduler), each waiting for its
// answer with a bounded timeout.
//
// Limits: request bodies over HTTP_MAX_BODY_BYTES get 413, paths over 1024 bytes 414,
// header lines over 8 KiB 400; every error is {"error": code, "message": text}.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "actors/metrics.hpp"
#include "app/settings.hpp"
#include "dsync/api.hpp"

namespace dsync {

class http_gateway {
 public:
  http_gateway(caf::actor_system& sys, node_api node, const node_settings& settings,
               metrics::registry& metrics);
  ~http_gateway();

  // Binds the port and starts serving; an error text (naming the address) on failure.
  std::optional<std::string> start();
  // Stops accepting, finishes requests in progress and joins the server thread.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dsync
