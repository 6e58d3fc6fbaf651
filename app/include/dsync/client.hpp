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

  // Locks (see README "Locks"). acquire_lock waits up to `wait` for the lock (0: try once)
  // and answers the grant with its fencing token; the lease lasts `ttl` unless refreshed.
  // Errors: errc::timeout, deadlock (the cycle is in the error's context), bad_request,
  // limit_exceeded, unavailable. release_lock answers true if the client held the lock,
  // false if it was only waiting (the wait is cancelled); errc::not_held otherwise.
  caf::expected<lock_grant> acquire_lock(const std::string& resource, const std::string& client,
                                         const std::string& type = "exclusive",
                                         std::chrono::milliseconds wait = std::chrono::milliseconds{0},
                                         std::chrono::milliseconds ttl = std::chrono::seconds(10));
  caf::expected<bool> release_lock(const std::string& resource, const std::string& client);
  caf::expected<lock_grant> refresh_lock(const std::string& resource, const std::string& client);
  caf::expected<lock_info> lock_status(const std::string& resource, bool linearizable = true);

  // Queues (see README "Queues"). enqueue answers the message id once a majority of the
  // queue's shard stored it; dequeue hands up to `max` messages to `consumer`, invisible
  // to others for `visibility`, waiting up to `wait` for one (long poll); acknowledge
  // deletes a delivered message (receipt 0: its current delivery), errc::stale_receipt if
  // that delivery timed out; nack makes it ready again after `delay` and answers whether
  // it went to the dead-letter queue instead.
  caf::expected<std::string> enqueue(const std::string& queue, const std::string& payload);
  caf::expected<std::vector<queue_message>> dequeue(const std::string& queue, const std::string& consumer,
                                                    uint64_t max = 1,
                                                    std::chrono::milliseconds visibility = std::chrono::seconds(30),
                                                    std::chrono::milliseconds wait = std::chrono::milliseconds{0});
  caf::expected<bool> acknowledge(const std::string& queue, const std::string& message_id, uint64_t receipt = 0);
  caf::expected<bool> nack(const std::string& queue, const std::string& message_id, uint64_t receipt = 0,
                           std::chrono::milliseconds delay = std::chrono::milliseconds{0});
  caf::expected<queue_info> queue_stats(const std::string& queue);
  caf::expected<dead_letters> dead_letters_of(const std::string& queue, uint64_t cursor = 0, uint64_t limit = 100);
  caf::expected<uint64_t> redrive(const std::string& queue, uint64_t max = 100);
  caf::expected<uint64_t> delete_queue(const std::string& queue);
  caf::expected<queue_info> configure_queue(const std::string& queue, uint64_t max_deliveries);
  caf::expected<std::vector<std::string>> list_queues();

  // The coherent cache (see README "Cache"): get answers the value and the state of the
  // line on the node this client talks to, or errc::not_found; del removes the key
  // everywhere, Redis included; invalidate drops every cached copy (dirty data first
  // written back).
  caf::expected<cache_entry> cache_get(const std::string& key);
  caf::expected<bool> cache_put(const std::string& key, const std::string& value);
  caf::expected<bool> cache_del(const std::string& key);
  caf::expected<bool> invalidate(const std::string& key);
  caf::expected<cache_stats> cache_statistics();

  // A one-line description of an error returned by any call.
  std::string describe(const caf::error& err) const;

 private:
  struct impl;
  explicit client(std::unique_ptr<impl> d);
  std::unique_ptr<impl> impl_;
};

}  // namespace dsync
