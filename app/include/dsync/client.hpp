// dsync::client: a C++ client of one dsync node over CAF's network layer. Any node serves
// any request (it forwards to whichever actor must answer), so one address is enough.
//
//   auto c = dsync::client::connect("127.0.0.1", 5000);
//   if (!c) { std::cerr << c.error_text() ...
//   auto status = (*c)->cluster();
//
// Every call blocks the calling thread for at most `timeout` and returns either the
// answer or a caf::error (render it with describe()). A client is not thread-safe: use one
// per thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "dsync/api.hpp"

namespace dsync {

class client {
 public:
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Connects to the node API published at host:port.
  static caf::expected<std::unique_ptr<client>> connect(const std::string& host, uint16_t port,
                                                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

  caf::expected<health_status> health();
  caf::expected<cluster_status> cluster();

  // Replicated key-value store (the control Raft group). put and del answer the revision
  // (log index) of the write; get answers errc::not_found when the key has no value.
  // Linearizable reads go through the leader; stale ones read this node's replica.
  caf::expected<uint64_t> put(const std::string& key, const std::string& value);
  caf::expected<kv_entry> get(const std::string& key, bool linearizable = true);
  caf::expected<uint64_t> del(const std::string& key);

  // Membership of the control group: add a running node (started with
  // CLUSTER_STATE=existing) as a voter once it caught up, or remove one. Both answer the
  // configuration afterwards; both may take up to 30 s.
  caf::expected<group_status> add_member(const std::string& node_id);
  caf::expected<group_status> remove_member(const std::string& node_id);

  // A one-line description of an error returned by any call.
  std::string describe(const caf::error& err) const;

 private:
  struct impl;
  explicit client(std::unique_ptr<impl> d);
  std::unique_ptr<impl> impl_;
};

}  // namespace dsync
