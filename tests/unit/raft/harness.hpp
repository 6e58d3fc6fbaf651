// Test scaffolding for the Raft core: nodes with memory storage and a tiny
// synchronous network (the shape of etcd's raft_test.go `network`). Tests
// drive time and delivery explicitly; nothing here is random.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocols/raft/core.hpp"

namespace dsync::raft::test {

inline config make_config(const node_id& id, uint64_t seed = 1) {
  config c;
  c.id = id;
  c.group = 7;
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.seed = seed;
  return c;
}

inline configuration voters(std::vector<node_id> ids, std::vector<node_id> learners = {}) {
  std::sort(ids.begin(), ids.end());
  std::sort(learners.begin(), learners.end());
  return configuration{std::move(ids), std::move(learners)};
}

struct peer {
  std::unique_ptr<memory_storage> store;
  std::unique_ptr<core> raft;
  std::vector<entry> applied;        // normal/noop/conf entries applied, in order
  std::vector<read_state> reads;     // read states received
  std::string restored_snapshot;     // data of the last snapshot restored
  std::vector<message> sent;         // every message this node sent (all batches)
};

class network {
 public:
  using tweak_fn = std::function<void(config&)>;

  // Every id becomes a voter of a bootstrapped cluster.
  explicit network(std::vector<node_id> ids, tweak_fn tweak = {}) : tweak_(std::move(tweak)) {
    auto conf = voters(ids);
    uint64_t seed = 1;
    for (const auto& id : ids)
      add(id, std::make_unique<memory_storage>(conf), seed++);
  }

  // Adds a node with the given storage (empty storage: a joining node).
  core& add(const node_id& id, std::unique_ptr<memory_storage> store, uint64_t seed = 99) {
    auto& p = peers_[id];
    p.store = std::move(store);
    auto cfg = make_config(id, seed);
    if (tweak_)
      tweak_(cfg);
    p.raft = std::make_unique<core>(cfg, *p.store);
    return *p.raft;
  }

  // Crash and restart `id` from its storage: everything not persisted is lost.
  core& restart(const node_id& id, uint64_t seed = 1234) {
    auto& p = peers_.at(id);
    auto cfg = make_config(id, seed);
    if (tweak_)
      tweak_(cfg);
    // The state machine here is volatile: it restarts from the snapshot.
    std::shared_ptr<const snapshot> snap;
    p.store->snapshot(snap);
    cfg.applied_index = 0;
    p.applied.clear();
    p.restored_snapshot = snap->data;
    p.raft = std::make_unique<core>(cfg, *p.store);
    return *p.raft;
  }

  core& operator[](const node_id& id) { return *peers_.at(id).raft; }
  peer& at(const node_id& id) { return peers_.at(id); }
  std::vector<node_id> ids() const {
    std::vector<node_id> out;
    for (const auto& [id, _] : peers_)
      out.push_back(id);
    return out;
  }

  // Handles one ready batch of `id` completely (persist, apply, advance) and
  // queues its messages. Returns the batch.
  ready process(const node_id& id) {
    auto& p = peers_.at(id);
    if (!p.raft->has_ready())
      return {};
    auto rd = p.raft->ready();
    persist_ready(*p.store, rd);
    if (rd.has_snapshot)
      p.restored_snapshot = rd.snapshot.data;
    for (const auto& e : rd.committed_entries)
      p.applied.push_back(e);
    for (const auto& r : rd.read_states)
      p.reads.push_back(r);
    for (const auto* list : {&rd.messages, &rd.messages_after_append})
      for (const auto& m : *list) {
        p.sent.push_back(m);
        queue_.push_back(m);
      }
    p.raft->advance(rd);
    return rd;
  }

  // Processes ready batches of every node once.
  void process_all() {
    for (const auto& id : ids())
      process(id);
  }

  // Removes and returns the queued messages (after processing readies).
  std::vector<message> take_messages() {
    process_all();
    auto out = std::move(queue_);
    queue_.clear();
    return out;
  }

  // Messages of one type queued so far, without removing them.
  std::vector<message> queued(message_type t) const {
    std::vector<message> out;
    for (const auto& m : queue_)
      if (m.type == t)
        out.push_back(m);
    return out;
  }

  // Delivers one message, honouring cuts and the drop filter.
  void deliver(const message& m) {
    if (!connected(m.from, m.to) || (drop_ && drop_(m)))
      return;
    auto i = peers_.find(m.to);
    if (i == peers_.end())
      return;
    i->second.raft->step(m);
  }

  // Runs until no node has anything to do and no message is in flight.
  void stabilize(size_t max_rounds = 10000) {
    for (size_t round = 0; round < max_rounds; ++round) {
      process_all();
      if (queue_.empty()) {
        bool busy = false;
        for (const auto& [_, p] : peers_)
          busy = busy || p.raft->has_ready();
        if (!busy)
          return;
        continue;
      }
      auto batch = std::move(queue_);
      queue_.clear();
      for (const auto& m : batch)
        deliver(m);
    }
    throw std::runtime_error("network did not stabilize");
  }

  void tick(const node_id& id, uint64_t n = 1) {
    for (uint64_t i = 0; i < n; ++i)
      peers_.at(id).raft->tick();
  }

  // Ticks every node n times, stabilizing after each tick.
  void tick_all(uint64_t n = 1) {
    for (uint64_t i = 0; i < n; ++i) {
      for (const auto& id : ids())
        peers_.at(id).raft->tick();
      stabilize();
    }
  }

  // Makes `id` leader: campaign, then let the messages flow.
  void elect(const node_id& id) {
    (*this)[id].campaign();
    stabilize();
  }

  void cut(const node_id& a, const node_id& b) {
    cuts_.insert({a, b});
    cuts_.insert({b, a});
  }
  void isolate(const node_id& id) {
    for (const auto& other : ids())
      if (other != id)
        cut(id, other);
  }
  void heal() { cuts_.clear(); }
  bool connected(const node_id& a, const node_id& b) const { return cuts_.count({a, b}) == 0; }
  void set_drop(std::function<bool(const message&)> f) { drop_ = std::move(f); }

  std::vector<message>& queue() { return queue_; }

 private:
  tweak_fn tweak_;
  std::map<node_id, peer> peers_;
  std::vector<message> queue_;
  std::set<std::pair<node_id, node_id>> cuts_;
  std::function<bool(const message&)> drop_;
};

// Payloads of applied normal entries, in order.
inline std::vector<std::string> applied_data(const peer& p) {
  std::vector<std::string> out;
  for (const auto& e : p.applied)
    if (e.type == entry_type::normal)
      out.push_back(e.data);
  return out;
}

// A message from `from` to `to` of the given type and term in group 7.
inline message msg(message_type t, const node_id& from, const node_id& to, uint64_t term) {
  message m;
  m.type = t;
  m.group = 7;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

inline std::vector<entry> ents_with_terms(uint64_t first_index, std::vector<uint64_t> terms) {
  std::vector<entry> out;
  for (auto t : terms)
    out.push_back(entry{t, first_index++, entry_type::normal, "x"});
  return out;
}

} // namespace dsync::raft::test
