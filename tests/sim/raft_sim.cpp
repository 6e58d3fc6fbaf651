#include "tests/sim/raft_sim.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <iterator>
#include <set>
#include <unordered_map>
#include <vector>

#include "protocols/codec.hpp"
#include "protocols/locks/lock_table.hpp"
#include "protocols/queue/queue_shard.hpp"
#include "protocols/raft/core.hpp"
#include "protocols/raft/rng.hpp"
#include "tests/sim/raft_invariants.hpp"

namespace dsync::sim {

using namespace dsync::raft;

void sim_stats::add(const sim_stats& o) {
  ticks += o.ticks;
  messages += o.messages;
  committed += o.committed;
  leaders += o.leaders;
  crashes += o.crashes;
  partitions += o.partitions;
  snapshots_installed += o.snapshots_installed;
  compactions += o.compactions;
  conf_changes += o.conf_changes;
  transfers += o.transfers;
  reads += o.reads;
  lock_commands += o.lock_commands;
  lock_grants += o.lock_grants;
  lock_deadlocks += o.lock_deadlocks;
  queue_commands += o.queue_commands;
  queue_enqueued += o.queue_enqueued;
  queue_deliveries += o.queue_deliveries;
  queue_acks += o.queue_acks;
  queue_dead_letters += o.queue_dead_letters;
  drain_ticks += o.drain_ticks;
  max_drain_ticks = std::max(max_drain_ticks, o.max_drain_ticks);
  liveness_ticks += o.liveness_ticks;
  max_liveness_ticks = std::max(max_liveness_ticks, o.max_liveness_ticks);
}

std::string sim_stats::to_string() const {
  char buf[1200];
  std::snprintf(buf, sizeof buf,
                "ticks=%llu messages=%llu committed=%llu leaders=%llu crashes=%llu partitions=%llu "
                "snapshots_installed=%llu compactions=%llu conf_changes=%llu transfers=%llu "
                "reads=%llu lock_commands=%llu lock_grants=%llu lock_deadlocks=%llu "
                "queue_commands=%llu queue_enqueued=%llu queue_deliveries=%llu queue_acks=%llu "
                "queue_dead_letters=%llu "
                "liveness_ticks=%llu max_liveness_ticks=%llu drain_ticks=%llu max_drain_ticks=%llu",
                (unsigned long long) ticks, (unsigned long long) messages,
                (unsigned long long) committed, (unsigned long long) leaders,
                (unsigned long long) crashes, (unsigned long long) partitions,
                (unsigned long long) snapshots_installed, (unsigned long long) compactions,
                (unsigned long long) conf_changes, (unsigned long long) transfers,
                (unsigned long long) reads, (unsigned long long) lock_commands,
                (unsigned long long) lock_grants, (unsigned long long) lock_deadlocks,
                (unsigned long long) queue_commands, (unsigned long long) queue_enqueued,
                (unsigned long long) queue_deliveries, (unsigned long long) queue_acks,
                (unsigned long long) queue_dead_letters,
                (unsigned long long) liveness_ticks,
                (unsigned long long) max_liveness_ticks, (unsigned long long) drain_ticks,
                (unsigned long long) max_drain_ticks);
  return buf;
}

namespace {


// The lock table the nodes replicate: a few locks and clients, so that requests
// collide, queue, upgrade and deadlock.
const std::vector<std::string> sim_locks = {"L0", "L1", "L2"};
const std::vector<std::string> sim_clients = {"a", "b", "c", "d"};
constexpr uint64_t ms_per_tick = 10;

// A lock command entry: 'K', a proposal number (keeps entries unique), the command.
constexpr char lock_entry_tag = 'K';
constexpr size_t lock_entry_header = 1 + 8;

std::string lock_entry(uint64_t seq, const locks::command& c) {
  std::string out(1, lock_entry_tag);
  codec::put_u64(out, seq);
  return out + locks::encode(c);
}

bool is_lock_entry(const entry& e) {
  return e.type == entry_type::normal && !e.data.empty() && e.data[0] == lock_entry_tag;
}

// The queue shard the nodes replicate beside the lock table: three queues. q0 is the
// checked one: never deleted or purged, and drained in the liveness phase.
const std::vector<std::string> sim_queues = {"q0", "q1", "q2"};
const std::string& checked_queue = sim_queues[0];

// A queue command entry: 'Q', the proposal number (the client's handle on its answer),
// the command.
constexpr char queue_entry_tag = 'Q';
constexpr size_t queue_entry_header = 1 + 8;

std::string queue_entry(uint64_t seq, const queue::command& c) {
  std::string out(1, queue_entry_tag);
  codec::put_u64(out, seq);
  return out + queue::encode(c);
}

bool is_queue_entry(const entry& e) {
  return e.type == entry_type::normal && !e.data.empty() && e.data[0] == queue_entry_tag;
}

// FNV-1a over 8-byte words: it runs on every entry (several times) and on the lock
// table's snapshot after every batch every node applies. Each step is a bijection of the
// word, so inputs of the same length that differ in one word always hash apart.
uint64_t hash_words(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  const char* p = s.data();
  size_t k = 0;
  for (; k + 8 <= s.size(); k += 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + k, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; k < s.size(); ++k)
    h = (h ^ static_cast<unsigned char>(p[k])) * 1099511628211ull;
  return mix(h, s.size());
}

uint64_t digest_of(const entry& e) {
  return mix(hash_words(e.data), static_cast<uint64_t>(e.type));
}



// Everything a seed decides up front.
struct params {
  size_t voters = 3;
  size_t spares = 2;
  uint64_t safety_ticks = 1200;
  uint64_t liveness_ticks = 800;
  uint64_t drop_pm = 0;       // per mille of messages dropped
  uint64_t dup_pm = 0;        // per mille duplicated
  uint64_t max_delay = 1;     // delivery after 1..max_delay ticks
  uint64_t crash_pm = 0;      // per mille per tick that some node crashes
  uint64_t partition_pm = 0;  // per mille per tick that a partition starts
  uint64_t propose_pm = 0;    // per mille per tick of a proposal burst
  uint64_t conf_pm = 0;       // membership changes
  uint64_t transfer_pm = 0;
  uint64_t compact_pm = 0;
  uint64_t read_pm = 0;
  uint64_t mid_persist_crash_pm = 0; // crash between persisting and advance
  size_t max_outstanding = 1;        // ready batches in flight per node (pipelining)
  uint64_t slow_storage_pct = 25;    // chance per round that a node's storage is still busy
  config base;
};

struct sim_node {
  node_id id;
  std::unique_ptr<memory_storage> store;
  std::unique_ptr<core> raft; // null while crashed
  uint64_t incarnation = 0;
  uint64_t restart_at = 0;
  std::deque<ready> pending; // ready batches taken, not yet persisted/advanced (oldest first)
  // The state machine: the last applied index, a hash chain of the applied entries and
  // the lock table's answers and events (the state reported per index), and the table.
  uint64_t sm_index = 0;
  uint64_t sm_hash = 0;
  locks::table locks;
  queue::shard queue{0}; // the shard id is set when the node starts
  uint64_t queue_digest_at = UINT64_MAX; // the shard's last index when its digest was taken
  uint64_t clock_lag_ms = 0; // this node's clock runs behind the simulated time
  uint64_t commit_seen = 0;     // commit index already registered with the checker
  uint64_t leader_checked = 0;  // term whose leader completeness was checked
  uint64_t reported_term = 0;   // last values given to the checker
  uint64_t reported_commit = 0;
  uint64_t reported_incarnation = UINT64_MAX;
};

class simulation {
 public:
  simulation(uint64_t seed, bool verbose) : seed_(seed), rng_(seed), verbose_(verbose) {
    choose_params();
    auto all = p_.voters + p_.spares;
    configuration boot;
    for (size_t i = 0; i < all; ++i) {
      sim_node n;
      n.id = "node-" + std::to_string(i + 1);
      if (i < p_.voters)
        boot.voters.push_back(n.id);
      n.clock_lag_ms = lock_rng_.below(200);
      index_[n.id] = nodes_.size();
      nodes_.push_back(std::move(n));
    }
    std::sort(boot.voters.begin(), boot.voters.end());
    for (size_t i = 0; i < all; ++i) {
      // Spares start empty: they learn the membership when they are added.
      nodes_[i].store = i < p_.voters ? std::make_unique<memory_storage>(boot)
                                      : std::make_unique<memory_storage>();
      start(i);
    }
  }

  sim_result run() {
    try {
      trace("params voters=%zu drop=%llu dup=%llu delay=%llu crash=%llu partition=%llu pre_vote=%d "
            "check_quorum=%d heartbeat=%llu inflight=%llu chunk=%llu chaos=%d outstanding=%zu slow=%llu",
            p_.voters, ull(p_.drop_pm), ull(p_.dup_pm), ull(p_.max_delay), ull(p_.crash_pm),
            ull(p_.partition_pm), p_.base.pre_vote, p_.base.check_quorum,
            ull(p_.base.heartbeat_ticks), ull(p_.base.max_inflight_msgs),
            ull(p_.base.snapshot_chunk_bytes), chaos_, p_.max_outstanding, ull(p_.slow_storage_pct));
      for (uint64_t t = 0; t < p_.safety_ticks && chk_.ok(); ++t)
        step(true);
      if (chk_.ok())
        liveness_phase();
    } catch (const std::exception& e) {
      chk_.fail(std::string("exception: ") + e.what());
    }
    sim_result r;
    r.ok = chk_.ok();
    r.violation = chk_.violation();
    stats_.ticks = now_;
    stats_.committed = chk_.max_committed();
    stats_.leaders = leader_terms_.size();
    r.stats = stats_;
    return r;
  }

 private:
  static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

  template <class... Ts>
  void trace(const char* fmt, Ts... xs) {
    if (!verbose_)
      return;
    std::printf("[%6llu] ", ull(now_));
    if constexpr (sizeof...(Ts) == 0)
      std::fputs(fmt, stdout);
    else
      std::printf(fmt, xs...);
    std::putchar('\n');
  }

  bool chance_pm(uint64_t pm) { return rng_.below(1000) < pm; }
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + rng_.below(hi - lo + 1); }

  void choose_params() {
    p_.voters = rng_.chance(1, 2) ? 3 : 5;
    p_.safety_ticks = between(800, 1400);
    p_.drop_pm = rng_.chance(1, 5) ? 0 : between(0, 150);
    p_.dup_pm = between(0, 60);
    p_.max_delay = between(1, 3);
    p_.crash_pm = between(0, 25);
    p_.partition_pm = between(0, 20);
    p_.propose_pm = between(150, 600);
    p_.conf_pm = between(0, 15);
    p_.transfer_pm = between(0, 8);
    p_.compact_pm = between(5, 60);
    p_.read_pm = between(0, 80);
    p_.mid_persist_crash_pm = between(0, 5);
    if (rng_.chance(2, 3)) {
      p_.max_outstanding = between(2, 4);
      p_.slow_storage_pct = between(25, 75);
    }
    auto& c = p_.base;
    c.group = 1 + rng_.below(1000);
    c.election_ticks = 10;
    c.heartbeat_ticks = between(1, 3);
    switch (rng_.below(4)) {
      case 0: c.pre_vote = false; c.check_quorum = true; break;
      case 1: c.pre_vote = true; c.check_quorum = false; break;
      default: c.pre_vote = true; c.check_quorum = true; break;
    }
    c.max_inflight_msgs = between(1, 8);
    c.max_inflight_bytes = between(256, 8192);
    c.max_msg_bytes = between(64, 1024);
    c.max_entries_per_msg = between(1, 16);
    c.max_uncommitted_entries = between(20, 200);
    c.max_uncommitted_bytes = 1 << 20;
    c.max_entry_bytes = 1 << 16;
    c.snapshot_chunk_bytes = between(32, 512);
    c.max_pending_reads = 64;
    if (rng_.chance(1, 3)) {
      // Chaos seeds: frequent leader changes with divergent logs, and
      // one-entry messages so that a new leader's older entries can travel
      // without its no-op (the Figure 8 situation).
      p_.crash_pm = between(30, 80);
      p_.partition_pm = between(30, 80);
      p_.mid_persist_crash_pm = between(5, 30);
      c.max_entries_per_msg = between(1, 2);
      c.max_inflight_msgs = between(1, 3);
      chaos_ = true;
    }
  }

  // ---- node lifecycle ----

  void start(size_t i) {
    auto& n = nodes_[i];
    auto cfg = p_.base;
    cfg.id = n.id;
    cfg.seed = mix(seed_, i * 7919 + n.incarnation);
    cfg.applied_index = 0; // the state machine is volatile: rebuilt from the snapshot
    std::shared_ptr<const snapshot> snap;
    n.store->snapshot(snap);
    restore_state_machine(i, *snap);
    n.raft = std::make_unique<core>(cfg, *n.store);
    n.pending.clear();
    n.commit_seen = snap->metadata.index;
    n.leader_checked = 0;
    chk_.on_restart(n.id, n.raft->term(), n.raft->commit_index());
    check_node(i);
  }

  void crash(size_t i, const char* why) {
    auto& n = nodes_[i];
    if (!n.raft)
      return;
    trace("%s crashes (%s)", n.id.c_str(), why);
    // Batches still in flight: the log file may keep a prefix of them (written, and
    // flushed by the OS before the crash) and loses the rest.
    for (const auto& rd : n.pending) {
      if (rng_.chance(1, 2))
        break;
      persist_ready(*n.store, rd);
      if (rd.has_hard_state)
        chk_.on_persisted(n.id, rd.hard.term, rd.hard.commit);
      trace("%s: batch %llu reached the disk before the crash", n.id.c_str(), ull(rd.seq));
    }
    n.raft.reset();
    n.pending.clear();
    ++n.incarnation;
    n.restart_at = now_ + (chaos_ ? between(1, 20) : between(3, 60));
    ++stats_.crashes;
  }

  // Snapshot data: "index:chain:length:queue_length:" + the lock table's snapshot (length
  // bytes) + the queue shard's snapshot (queue_length bytes) + padding.
  static std::string snapshot_data(const sim_node& n, size_t padding) {
    auto table = n.locks.snapshot();
    auto shard = n.queue.snapshot();
    return std::to_string(n.sm_index) + ":" + std::to_string(n.sm_hash) + ":"
           + std::to_string(table.size()) + ":" + std::to_string(shard.size()) + ":" + table
           + shard + std::string(padding, 's');
  }

  // Every node's shard has the Raft group's id (so message ids read "<group>-<index>").
  uint64_t shard_id() const { return p_.base.group; }

  void restore_state_machine(size_t i, const snapshot& snap) {
    auto& n = nodes_[i];
    if (snap.metadata.index == 0) {
      n.sm_index = 0;
      n.sm_hash = 0;
      n.locks = locks::table{};
      n.queue = queue::shard(shard_id());
      check_lock_table(i, 0);
      n.queue_digest_at = UINT64_MAX;
      check_queue_shard(i);
      return;
    }
    unsigned long long idx = 0;
    unsigned long long hash = 0;
    unsigned long long len = 0;
    unsigned long long qlen = 0;
    int used = 0;
    if (std::sscanf(snap.data.c_str(), "%llu:%llu:%llu:%llu:%n", &idx, &hash, &len, &qlen, &used) != 4
        || idx != snap.metadata.index) {
      chk_.fail(n.id + ": snapshot data does not match its metadata index "
                + std::to_string(snap.metadata.index));
      return;
    }
    const auto at = static_cast<size_t>(used);
    locks::table table;
    if (at + len > snap.data.size() || !table.restore(snap.data.substr(at, len))) {
      chk_.fail(n.id + ": the lock table in the snapshot at " + std::to_string(idx)
                + " does not restore");
      return;
    }
    queue::shard shard(shard_id());
    if (at + len + qlen > snap.data.size() || !shard.restore(snap.data.substr(at + len, qlen))) {
      chk_.fail(n.id + ": the queue shard in the snapshot at " + std::to_string(idx)
                + " does not restore");
      return;
    }
    n.sm_index = idx;
    n.sm_hash = hash;
    n.locks = std::move(table);
    n.queue = std::move(shard);
    chk_.on_state(n.id, idx, hash);
    check_lock_table(i, idx);
    n.queue_digest_at = UINT64_MAX;
    check_queue_shard(i);
    for (const auto& q : sim_queues)
      check_queue(i, idx, q);
  }

  // ---- the lock table ----

  // This node's clock, as its actor would stamp a proposal.
  uint64_t clock_ms(size_t i) const {
    auto t = now_ * ms_per_tick;
    return t - std::min(t, nodes_[i].clock_lag_ms);
  }

  locks::command random_lock_command(uint64_t now_ms) {
    auto& r = lock_rng_;
    locks::command c;
    c.now_ms = now_ms;
    c.lock = sim_locks[r.below(sim_locks.size())];
    c.client = sim_clients[r.below(sim_clients.size())];
    auto roll = r.below(100);
    if (roll < 50) {
      c.kind = locks::op::acquire;
      c.wanted = r.chance(1, 2) ? locks::mode::shared : locks::mode::exclusive;
      c.wait_ms = r.chance(1, 4) ? 0 : 50 + r.below(2000);
      c.ttl_ms = r.chance(1, 50) ? 10 : locks::min_ttl_ms + r.below(3000); // sometimes refused
    } else if (roll < 75) {
      c.kind = locks::op::release;
    } else if (roll < 85) {
      c.kind = locks::op::refresh;
    } else if (roll < 95) {
      c.kind = locks::op::expire;
    } else {
      c.kind = locks::op::renew_all;
    }
    return c;
  }

  // Applies a committed lock command to the node's table and folds the answer and the
  // events into its hash chain, so that replicas must also answer alike.
  void apply_lock_entry(size_t i, const entry& e) {
    auto& n = nodes_[i];
    if (!is_lock_entry(e))
      return;
    locks::command c;
    if (e.data.size() < lock_entry_header || !locks::decode(e.data.substr(lock_entry_header), c)) {
      chk_.fail(n.id + ": lock command at index " + std::to_string(e.index) + " does not decode");
      return;
    }
    std::vector<locks::event> events;
    const auto floor = n.locks.last_token();
    auto o = n.locks.apply(e.index, c, events);
    n.sm_hash = mix(n.sm_hash, hash_words(locks::encode(o)));
    auto newest = floor;
    auto on_grant = [&](const locks::grant& g) {
      chk_.on_lock_grant(n.id, e.index, g.token, newest);
      newest = g.token;
    };
    if (o.result == locks::code::granted && o.granted.token > floor)
      on_grant(o.granted);
    for (const auto& ev : events) {
      n.sm_hash = mix(mix(n.sm_hash, static_cast<uint64_t>(ev.what)),
                      mix(hash_words(ev.subject.lock + "/" + ev.subject.client), ev.subject.token));
      if (ev.what == locks::event::kind::granted)
        on_grant(ev.subject);
    }
    if (e.index > lock_counted_) { // first application of this index anywhere
      lock_counted_ = e.index;
      ++stats_.lock_commands;
      stats_.lock_grants += newest - floor;
      stats_.lock_deadlocks += o.result == locks::code::deadlock;
      if (verbose_)
        trace("lock command %llu: op %d %s %s -> %s, %zu events, last token %llu", ull(e.index),
              static_cast<int>(c.kind), c.lock.c_str(), c.client.c_str(), locks::to_string(o.result),
              events.size(), ull(n.locks.last_token()));
    }
  }

  // The lock table's invariants on one node after it applied or restored `index` (after
  // each batch of committed entries: so after every step in which its table changed).
  // Every answer and event of every index is in the state hash chain; the table itself is
  // compared here, at the end of each batch.
  void check_lock_table(size_t i, uint64_t index) {
    auto& n = nodes_[i];
    const auto& t = n.locks;
    chk_.on_lock_table(n.id, index, hash_words(t.snapshot()));
    auto conflict = [](locks::mode a, locks::mode b) {
      return a == locks::mode::exclusive || b == locks::mode::exclusive;
    };
    std::map<std::string, std::vector<std::string>> waits_for; // the wait-for graph, as defined
    for (const auto& lock : sim_locks) {
      auto s = t.status(lock);
      for (size_t k = 0; k < s.waiters.size(); ++k) {
        const auto& w = s.waiters[k];
        for (const auto& h : s.holders)
          if (h.client != w.client && conflict(w.wanted, h.held))
            waits_for[w.client].push_back(h.client);
        for (size_t j = 0; j < k; ++j)
          if (conflict(w.wanted, s.waiters[j].wanted))
            waits_for[w.client].push_back(s.waiters[j].client);
      }
      size_t exclusive = 0;
      for (const auto& h : s.holders)
        exclusive += h.held == locks::mode::exclusive;
      chk_.on_lock_holders(n.id, index, lock, exclusive, s.holders.size() - exclusive);
      for (size_t k = 0; k < s.waiters.size(); ++k) {
        const auto& w = s.waiters[k];
        bool holds = std::any_of(s.holders.begin(), s.holders.end(),
                                 [&](const locks::holder_status& h) { return h.client == w.client; });
        if (holds != w.upgrade || (w.upgrade && k != 0))
          chk_.fail(n.id + ": " + w.client + " holds and waits for " + lock + " at index "
                    + std::to_string(index) + " without being its first, upgrading waiter");
      }
      if (!s.waiters.empty()) {
        const auto& w = s.waiters.front();
        bool grantable = w.upgrade ? s.holders.size() == 1
                                   : s.holders.empty()
                                         || (w.wanted == locks::mode::shared
                                             && s.holders.front().held == locks::mode::shared);
        if (grantable)
          chk_.fail(n.id + ": the first waiter for " + lock + " could be granted at index "
                    + std::to_string(index));
      }
    }
    // Deadlock detection is complete: a wait that would close a cycle is refused, so no
    // cycle is ever left in the graph.
    std::map<std::string, int> color; // 1: on the path, 2: done
    std::function<bool(const std::string&)> cyclic = [&](const std::string& c) {
      color[c] = 1;
      for (const auto& next : waits_for[c])
        if (color[next] == 1 || (color[next] == 0 && cyclic(next)))
          return true;
      color[c] = 2;
      return false;
    };
    for (const auto& client : sim_clients)
      if (color[client] == 0 && cyclic(client)) {
        chk_.fail(n.id + ": a cycle is left in the wait-for graph at index " + std::to_string(index));
        break;
      }
    chk_.on_lock_state(n.id, n.incarnation, index, t.last_token(), t.now_ms());
  }

  bool propose_lock_command(size_t i, const locks::command& c) {
    auto r = nodes_[i].raft->propose(lock_entry(++proposal_seq_, c));
    if (r.ok() && verbose_)
      trace("%s proposes lock op %d at %llu/%llu", nodes_[i].id.c_str(), static_cast<int>(c.kind),
            ull(r.index), ull(r.term));
    check_node(i);
    return r.ok();
  }

  // What the lock service's leader does on its own: renew every lease once per term (the
  // cluster may have had no leader to refresh with), and propose expire once the next
  // deadline has passed on its clock.
  void lock_maintenance() {
    auto l = leader_index();
    if (l == nodes_.size())
      return;
    auto& n = nodes_[l];
    locks::command c;
    c.now_ms = clock_ms(l);
    if (renewed_term_ != n.raft->term()) {
      c.kind = locks::op::renew_all;
      if (propose_lock_command(l, c))
        renewed_term_ = n.raft->term();
    } else if (auto d = n.locks.next_deadline(); d && *d <= c.now_ms && now_ >= expire_again_at_) {
      c.kind = locks::op::expire;
      if (propose_lock_command(l, c))
        expire_again_at_ = now_ + 5; // one in flight at a time, roughly
    }
  }

  // ---- the queue shard ----

  // What a simulated client does: enqueue unique payloads, dequeue, ack or nack the
  // deliveries it learned about (sometimes quoting a wrong receipt, receipt 0 or another
  // shard's id), configure small max_deliveries so that messages die, redrive, and on the
  // unchecked queues delete the queue or purge its DLQ. The leader's expire comes from
  // queue_maintenance; a lagging expire from anywhere is legal too.
  queue::command random_queue_command(uint64_t now_ms) {
    auto& r = queue_rng_;
    queue::command c;
    c.now_ms = now_ms;
    const auto pick = r.below(10);
    c.queue = sim_queues[pick < 5 ? 0 : pick < 8 ? 1 : 2];
    auto roll = r.below(100);
    if (roll >= 55 && roll < 83 && held_.empty())
      roll = 30; // nothing to ack or nack: dequeue instead
    if (roll < 30) {
      c.kind = queue::op::enqueue;
      c.payload = "p" + std::to_string(++payload_seq_);
    } else if (roll < 55) {
      c.kind = queue::op::dequeue;
      c.consumer = "c" + std::to_string(r.below(3));
      c.max = r.chance(1, 50) ? 0 : 1 + r.below(4); // 0 is refused (bad_request)
      c.visibility_ms = 50 + r.below(1951);
    } else if (roll < 83) {
      c.kind = roll < 73 ? queue::op::ack : queue::op::nack;
      const auto k = static_cast<size_t>(r.below(held_.size()));
      const auto h = held_[k];
      c.queue = h.queue;
      c.id = h.id;
      c.receipt = h.receipt;
      const auto variant = r.below(20);
      if (variant < 3)
        c.receipt = 0; // the current delivery, whatever it is
      else if (variant < 5)
        c.receipt = h.receipt + 1; // not this delivery's receipt
      else if (variant < 6)
        c.id = std::to_string(shard_id() + 1) + "-" + std::to_string(h.receipt); // another shard's
      if (c.kind == queue::op::nack)
        c.delay_ms = r.chance(1, 2) ? 0 : 50 + r.below(951);
      if (!r.chance(1, 5)) // else kept: quoted again later, stale by then
        held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
    } else if (roll < 88) {
      c.kind = queue::op::configure;
      c.max_deliveries = r.chance(1, 5) ? 1 + r.below(5) : 2 + r.below(2);
    } else if (roll < 94) {
      c.kind = queue::op::redrive;
      c.max = 1 + r.below(4);
    } else if (roll < 96) {
      c.kind = queue::op::delete_queue;
      c.queue = sim_queues[1 + r.below(2)];
    } else if (roll < 98) {
      c.kind = queue::op::purge_dead;
      c.queue = sim_queues[1 + r.below(2)];
      c.max = 1 + r.below(4);
    } else {
      c.kind = queue::op::expire;
    }
    return c;
  }

  // Registers a queue proposal `node` accepted: its client learns the outcome when that
  // node (in this incarnation) applies the entry.
  void track_queue_proposal(size_t node, uint64_t seq) {
    pending_[seq] = pending_proposal{node, nodes_[node].incarnation};
  }

  bool propose_queue_command(size_t i, const queue::command& c) {
    const auto seq = ++proposal_seq_;
    auto r = nodes_[i].raft->propose(queue_entry(seq, c));
    if (r.ok()) {
      track_queue_proposal(i, seq);
      if (verbose_)
        trace("%s proposes queue %s %s at %llu/%llu", nodes_[i].id.c_str(), queue::to_string(c.kind),
              c.queue.c_str(), ull(r.index), ull(r.term));
    }
    check_node(i);
    return r.ok();
  }

  // The shard's leader proposes expire once the next deadline has passed on its clock.
  void queue_maintenance() {
    auto l = leader_index();
    if (l == nodes_.size())
      return;
    queue::command c;
    c.kind = queue::op::expire;
    c.now_ms = clock_ms(l);
    if (auto d = nodes_[l].queue.next_deadline(); d && *d <= c.now_ms && now_ >= queue_expire_again_at_)
      if (propose_queue_command(l, c))
        queue_expire_again_at_ = now_ + 5; // one in flight at a time, roughly
  }

  // Applies a committed queue command to the node's shard and folds the outcome and the
  // events into its hash chain. The first application of an index anywhere reports the
  // outcome to the checker (log order); the proposing node's client learns it.
  void apply_queue_entry(size_t i, const entry& e) {
    auto& n = nodes_[i];
    queue::command c;
    uint64_t seq = 0;
    codec::reader header{std::string_view(e.data).substr(1, 8)};
    if (e.data.size() < queue_entry_header || !header.get_u64(seq)
        || !queue::decode(std::string_view(e.data).substr(queue_entry_header), c)) {
      chk_.fail(n.id + ": queue command at index " + std::to_string(e.index) + " does not decode");
      return;
    }
    const bool first = e.index > queue_counted_;
    std::vector<queue::event> events;
    auto o = n.queue.apply(e.index, c, events);
    n.sm_hash = mix(n.sm_hash, hash_words(queue::encode(o)));
    for (const auto& ev : events)
      n.sm_hash = mix(mix(n.sm_hash, static_cast<uint64_t>(ev.what)),
                      mix(hash_words(ev.queue + "/" + ev.id), ev.count));
    if (first) {
      queue_counted_ = e.index;
      observe_queue_outcome(e.index, c, o, events);
    }
    if (auto p = pending_.find(seq);
        p != pending_.end() && p->second.node == i && p->second.incarnation == n.incarnation) {
      pending_.erase(p);
      learn_queue_outcome(c, o);
    }
    // Only the named queue changed; an expire changed the queues its events name.
    if (c.kind != queue::op::expire) {
      check_queue(i, e.index, c.queue);
    } else {
      std::set<std::string> touched;
      for (const auto& ev : events)
        touched.insert(ev.queue);
      for (const auto& q : touched)
        check_queue(i, e.index, q);
    }
  }

  void observe_queue_outcome(uint64_t index, const queue::command& c, const queue::outcome& o,
                             const std::vector<queue::event>& events) {
    ++stats_.queue_commands;
    chk_.on_queue_command(index, c.now_ms);
    const bool ok = o.result == queue::code::ok;
    switch (c.kind) {
      case queue::op::enqueue:
        if (ok) {
          ++stats_.queue_enqueued;
          chk_.on_enqueued(index, c.queue, o.id);
        }
        break;
      case queue::op::dequeue:
        for (const auto& d : o.messages)
          chk_.on_delivered(index, c.queue, d.id, d.receipt, d.deliveries, c.visibility_ms);
        stats_.queue_deliveries += o.messages.size();
        break;
      case queue::op::ack:
        if (ok) {
          ++stats_.queue_acks;
          chk_.on_acked(index, c.queue, c.id, c.receipt);
        }
        break;
      case queue::op::nack:
        if (ok)
          chk_.on_nacked(index, c.queue, c.id, c.receipt, o.dead_lettered);
        break;
      case queue::op::expire: {
        std::vector<std::string> expired;
        std::vector<std::string> dead;
        for (const auto& ev : events)
          if (ev.what == queue::event::kind::expired)
            expired.push_back(ev.id);
          else if (ev.what == queue::event::kind::dead_lettered)
            dead.push_back(ev.id);
        chk_.on_expired(index, expired, dead);
        break;
      }
      case queue::op::delete_queue:
        if (ok)
          chk_.on_queue_deleted(index, c.queue);
        break;
      case queue::op::purge_dead:
        if (ok)
          chk_.on_purged(index, c.queue, c.max, o.count);
        break;
      case queue::op::redrive:
        if (ok)
          chk_.on_redriven(index, c.queue, c.max, o.count);
        break;
      case queue::op::configure:
        if (ok)
          chk_.on_queue_configured(index, c.queue, c.max_deliveries);
        break;
    }
    for (const auto& ev : events)
      stats_.queue_dead_letters += ev.what == queue::event::kind::dead_lettered;
    if (verbose_)
      trace("queue command %llu: %s %s -> %s, %zu delivered, count %llu, %zu events", ull(index),
            queue::to_string(c.kind), c.queue.c_str(), queue::to_string(o.result),
            o.messages.size(), ull(o.count), events.size());
  }

  // The client of a proposal hears its outcome (from the node that accepted it).
  void learn_queue_outcome(const queue::command& c, const queue::outcome& o) {
    if (o.result != queue::code::ok)
      return;
    if (c.kind == queue::op::enqueue) {
      chk_.on_enqueue_acknowledged(o.id);
    } else if (c.kind == queue::op::dequeue) {
      for (const auto& d : o.messages)
        held_.push_back(held_delivery{c.queue, d.id, d.receipt});
      if (held_.size() > 32) // consumers that never answer: their deliveries time out
        held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(held_.size() - 32));
    }
  }

  // The shard's invariants on one node: the digest of its snapshot at the end of each
  // batch and after a restore (like the lock table; every answer and event of every
  // index is in the hash chain besides), and after every queue command it applies the
  // contents of the queue the command named (for an expire: the queues its events name;
  // after a restore: all). The digest is keyed by the shard's last applied queue command
  // (its state at every index up to the next one), and taken once per node and state.
  void check_queue_shard(size_t i) {
    auto& n = nodes_[i];
    const auto at = n.queue.last_index();
    if (at == n.queue_digest_at)
      return;
    n.queue_digest_at = at;
    chk_.on_queue_shard(n.id, at, hash_words(n.queue.snapshot()));
  }

  void check_queue(size_t i, uint64_t index, const std::string& q) {
    const auto& n = nodes_[i];
    const auto s = n.queue.stats(q);
    std::vector<std::string> dead;
    if (s.dead > 0)
      for (const auto& m : n.queue.list_dead(q).messages)
        dead.push_back(m.id);
    chk_.on_queue_contents(
        n.id, index, q,
        [&](const std::string& id) {
          auto m = n.queue.find(q, id);
          return m ? static_cast<int>(m->where) : 0;
        },
        std::array<uint64_t, 4>{s.ready, s.in_flight, s.delayed, s.dead}, dead);
  }

  // ---- network ----

  bool link_ok(const node_id& from, const node_id& to) const {
    return cuts_.empty() || cuts_.count({from, to}) == 0;
  }

  void send(const message& m) {
    ++stats_.messages;
    if (faults_ && chance_pm(p_.drop_pm)) {
      if (verbose_)
        trace("drop %s", describe(m).c_str());
      return;
    }
    auto copies = faults_ && chance_pm(p_.dup_pm) ? 2 : 1;
    for (int c = 0; c < copies; ++c)
      net_[now_ + 1 + rng_.below(faults_ ? p_.max_delay : 1)].push_back(m);
  }

  size_t index_of(const node_id& id) const {
    auto i = index_.find(id);
    return i == index_.end() ? nodes_.size() : i->second;
  }

  void deliver_due() {
    std::vector<message> due;
    while (!net_.empty() && net_.begin()->first <= now_) {
      auto& bucket = net_.begin()->second;
      if (due.empty())
        due = std::move(bucket);
      else
        std::move(bucket.begin(), bucket.end(), std::back_inserter(due));
      net_.erase(net_.begin());
    }
    // Random order among the due messages: reordering beyond the delays.
    std::vector<size_t> order(due.size());
    for (size_t k = 0; k < order.size(); ++k)
      order[k] = k;
    for (size_t k = order.size(); k > 1; --k)
      std::swap(order[k - 1], order[rng_.below(k)]);
    for (auto k : order) {
      const auto& m = due[k];
      auto i = index_of(m.to);
      if (i == nodes_.size() || !nodes_[i].raft || !link_ok(m.from, m.to))
        continue;
      if (verbose_)
        trace("deliver %s", describe(m).c_str());
      nodes_[i].raft->step(m);
      check_node(i);
    }
  }

  // ---- ready handling ----

  void take_ready(size_t i) {
    auto& n = nodes_[i];
    n.pending.push_back(n.raft->ready());
    const auto& rd = n.pending.back();
    const auto& log = n.raft->log();
    for (size_t k = 0; k < rd.entries.size(); ++k) {
      const auto& e = rd.entries[k];
      auto prev = k > 0 ? std::optional<uint64_t>(rd.entries[k - 1].term) : log.term(e.index - 1);
      if (!prev) {
        chk_.fail(n.id + ": entry " + std::to_string(e.index) + " has no predecessor in the log");
        return;
      }
      chk_.on_entry(n.id, e.index, e.term, *prev, digest_of(e));
    }
    for (const auto& m : rd.messages)
      send(m);
  }

  void complete_ready(size_t i) {
    auto& n = nodes_[i];
    auto rd = std::move(n.pending.front());
    n.pending.pop_front();
    persist_ready(*n.store, rd);
    if (rd.has_hard_state)
      chk_.on_persisted(n.id, rd.hard.term, rd.hard.commit);
    if (faults_ && chance_pm(p_.mid_persist_crash_pm)) {
      crash(i, "after persisting, before sending and applying");
      return;
    }
    for (const auto& m : rd.messages_after_append)
      send(m);
    if (rd.has_snapshot) {
      ++stats_.snapshots_installed;
      trace("%s installs snapshot at %llu", n.id.c_str(), ull(rd.snapshot.metadata.index));
      restore_state_machine(i, rd.snapshot);
    }
    if (rd.has_compaction)
      ++stats_.compactions;
    for (const auto& e : rd.committed_entries) {
      auto prev = n.sm_index;
      n.sm_hash = mix(mix(n.sm_hash, e.index), mix(e.term, digest_of(e)));
      n.sm_index = e.index;
      if (is_lock_entry(e))
        apply_lock_entry(i, e);
      else if (is_queue_entry(e))
        apply_queue_entry(i, e);
      chk_.on_applied(n.id, e.index, e.term, digest_of(e), prev, n.sm_hash);
      if (e.type == entry_type::conf_change && counted_conf_.insert(e.index).second) {
        ++stats_.conf_changes;
        conf_change_record rec;
        decode_conf_change(e.data, rec);
        trace("conf change %llu committed: %s %s -> %s", ull(e.index), to_string(rec.change.type),
              rec.change.node.c_str(), raft::to_string(rec.config).c_str());
      }
    }
    if (!rd.committed_entries.empty()) {
      check_lock_table(i, n.sm_index);
      check_queue_shard(i);
    }
    for (const auto& r : rd.read_states) {
      if (!r.ok)
        continue;
      ++stats_.reads;
      chk_.on_read_served(n.id, r.request_id, r.index);
    }
    n.raft->advance(rd);
    check_node(i);
  }

  void process_readies() {
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        auto& n = nodes_[i];
        if (!n.raft)
          continue;
        if (n.pending.size() < p_.max_outstanding && n.raft->has_ready())
          take_ready(i);
        // Storage is sometimes slow: batches stay in flight for a while (with
        // pipelining, the next ones are taken meanwhile), and the node keeps
        // receiving messages.
        if (!n.pending.empty() && (!faults_ || !rng_.chance(p_.slow_storage_pct, 100))) {
          complete_ready(i);
        } else if (!n.pending.empty() && chance_pm(p_.mid_persist_crash_pm)) {
          crash(i, "while persisting: the batch is lost");
          n.restart_at = now_ + between(1, 3); // e.g. kill -9 under a supervisor
          continue;
        }
        if (!chk_.ok())
          return;
      }
    }
  }

  // ---- observation and checks ----

  bool holds(const core& c, uint64_t index, uint64_t term) const {
    const auto& log = c.log();
    if (index + 1 < log.first_index())
      return true; // compacted into the snapshot, whose own index is checked
    return log.match_term(index, term);
  }

  bool storage_holds(const memory_storage& s, uint64_t index, uint64_t term) const {
    uint64_t t = 0;
    auto err = s.term(index, t);
    if (err == storage_errc::compacted)
      return true; // inside the snapshot (its own index is checked when taken)
    return err == storage_errc::ok && t == term;
  }

  void check_leader_completeness(size_t i) {
    auto& n = nodes_[i];
    const auto& c = *n.raft;
    for (const auto& [index, td] : chk_.committed()) {
      // Leader completeness covers entries committed in earlier terms; a
      // stale leader need not hold what a later leader committed.
      if (commit_term_.at(index) >= c.term())
        continue;
      chk_.on_leader_holds(n.id, c.term(), index, holds(c, index, td.first));
      if (!chk_.ok())
        return;
    }
  }

  void check_node(size_t i) {
    auto& n = nodes_[i];
    if (!n.raft || !chk_.ok())
      return;
    const auto& c = *n.raft;
    // Report changes only: an unchanged value cannot break monotonicity.
    if (c.term() != n.reported_term || c.commit_index() != n.reported_commit
        || n.reported_incarnation != n.incarnation) {
      chk_.on_term(n.id, n.incarnation, c.term());
      chk_.on_commit_index(n.id, n.incarnation, c.commit_index());
      n.reported_term = c.term();
      n.reported_commit = c.commit_index();
      n.reported_incarnation = n.incarnation;
    }
    if (c.state() == role::leader) {
      chk_.on_leader(n.id, c.term());
      if (leader_terms_.insert(c.term()).second)
        trace("%s becomes leader of term %llu (%s)", n.id.c_str(), ull(c.term()),
              raft::to_string(c.current_config()).c_str());
      if (n.leader_checked != c.term()) {
        n.leader_checked = c.term();
        check_leader_completeness(i);
      }
    }
    if (c.commit_index() > n.commit_seen) {
      std::vector<entry> ents;
      auto lo = std::max(n.commit_seen + 1, c.log().first_index());
      if (lo <= c.commit_index())
        c.log().slice(lo, c.commit_index() + 1, UINT64_MAX, UINT64_MAX, ents);
      for (const auto& e : ents) {
        if (chk_.on_committed(n.id, e.index, e.term, digest_of(e))) {
          // The commit happened in the observer's term (the leader that
          // decided it observes it first).
          commit_term_[e.index] = c.term();
          on_new_commit(i, e);
        }
      }
      n.commit_seen = c.commit_index();
    }
  }

  void on_new_commit(size_t committer, const entry& e) {
    const auto& c = *nodes_[committer].raft;
    if (c.state() == role::leader) {
      // It just decided the commit: a majority of its voters must hold the
      // entry durably (acknowledgements only after persisting).
      size_t holders = 0;
      for (const auto& v : c.current_config().voters) {
        auto j = index_of(v);
        if (j < nodes_.size() && storage_holds(*nodes_[j].store, e.index, e.term))
          ++holders;
      }
      chk_.on_commit_durability(e.index, holders, c.current_config().voters.size());
    }
    // Leader completeness for leaders already elected in this or later terms.
    for (auto& n : nodes_) {
      if (n.raft && n.raft->state() == role::leader && n.raft->term() >= c.term())
        chk_.on_leader_holds(n.id, n.raft->term(), e.index, holds(*n.raft, e.index, e.term));
    }
  }

  // ---- faults and client actions ----

  size_t leader_index() const {
    size_t best = nodes_.size();
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const auto& n = nodes_[i];
      if (n.raft && n.raft->state() == role::leader
          && (best == nodes_.size() || n.raft->term() > nodes_[best].raft->term()))
        best = i;
    }
    return best;
  }

  size_t random_up_node() {
    std::vector<size_t> up;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].raft)
        up.push_back(i);
    return up.empty() ? nodes_.size() : up[rng_.below(up.size())];
  }

  void cut_both(const node_id& a, const node_id& b) {
    cuts_.insert({a, b});
    cuts_.insert({b, a});
  }

  void maybe_partition() {
    if (!cuts_.empty()) {
      if (now_ >= heal_at_) {
        cuts_.clear();
        trace("partition heals");
      }
      return;
    }
    if (!chance_pm(p_.partition_pm))
      return;
    ++stats_.partitions;
    heal_at_ = now_ + (chaos_ ? between(3, 30) : between(10, 120));
    auto kind = rng_.below(4);
    auto leader = leader_index();
    if (kind == 0 && leader < nodes_.size()) {
      for (const auto& n : nodes_)
        if (n.id != nodes_[leader].id)
          cut_both(n.id, nodes_[leader].id);
      trace("partition: leader %s isolated", nodes_[leader].id.c_str());
    } else if (kind == 1) {
      std::vector<int> side(nodes_.size());
      for (auto& s : side)
        s = static_cast<int>(rng_.below(2));
      std::string desc;
      for (size_t a = 0; a < nodes_.size(); ++a) {
        desc += nodes_[a].id + (side[a] ? "=B " : "=A ");
        for (size_t b = 0; b < nodes_.size(); ++b)
          if (side[a] != side[b])
            cuts_.insert({nodes_[a].id, nodes_[b].id});
      }
      trace("partition: split %s", desc.c_str());
    } else if (kind == 2) {
      auto v = rng_.below(nodes_.size());
      for (const auto& n : nodes_)
        if (n.id != nodes_[v].id)
          cut_both(n.id, nodes_[v].id);
      trace("partition: %s isolated", nodes_[v].id.c_str());
    } else {
      auto a = rng_.below(nodes_.size());
      auto b = rng_.below(nodes_.size());
      if (a != b)
        cuts_.insert({nodes_[a].id, nodes_[b].id});
      trace("partition: one-way %s -/-> %s", nodes_[a].id.c_str(), nodes_[b].id.c_str());
    }
  }

  void maybe_crash() {
    size_t down = 0;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto& n = nodes_[i];
      if (!n.raft) {
        ++down;
        if (now_ >= n.restart_at) {
          trace("%s restarts", n.id.c_str());
          start(i);
        }
      }
    }
    if (down < 2 && chance_pm(p_.crash_pm)) {
      auto i = random_up_node();
      if (i < nodes_.size())
        crash(i, "random");
    }
  }

  void propose_somewhere() {
    auto i = random_up_node();
    if (i == nodes_.size())
      return;
    const bool for_queue = queue_rng_.chance(1, 2);
    const auto seq = ++proposal_seq_;
    auto data = for_queue ? queue_entry(seq, random_queue_command(clock_ms(i)))
                          : lock_entry(seq, random_lock_command(clock_ms(i)));
    auto r = nodes_[i].raft->propose(data);
    if (r.code == errc::not_leader && !r.leader_hint.empty()) {
      // The actor layer forwards to the leader it was told about.
      auto j = index_of(r.leader_hint);
      if (j < nodes_.size() && nodes_[j].raft)
        r = nodes_[j].raft->propose(data);
      i = j;
    }
    if (r.ok() && for_queue)
      track_queue_proposal(i, seq);
    if (r.ok() && verbose_)
      trace("proposal %llu accepted by %s at %llu/%llu", ull(proposal_seq_), nodes_[i].id.c_str(),
            ull(r.index), ull(r.term));
    if (i < nodes_.size())
      check_node(i);
  }

  void change_membership() {
    auto l = leader_index();
    if (l == nodes_.size())
      return;
    auto& c = *nodes_[l].raft;
    const auto& conf = c.current_config();
    std::vector<conf_change> options;
    for (const auto& n : nodes_)
      if (!conf.contains(n.id))
        options.push_back(conf_change{conf_change_type::add_learner, n.id});
    for (const auto& id : conf.learners) {
      const auto* pr = c.progress_of(id);
      if (pr && pr->match() >= c.commit_index())
        options.push_back(conf_change{conf_change_type::promote_learner, id});
      options.push_back(conf_change{conf_change_type::remove_node, id});
    }
    if (conf.voters.size() > 2)
      for (const auto& id : conf.voters)
        options.push_back(conf_change{conf_change_type::remove_node, id});
    if (options.empty())
      return;
    auto cc = options[rng_.below(options.size())];
    auto r = c.propose_conf_change(cc);
    if (verbose_)
      trace("%s proposes %s %s: %s", nodes_[l].id.c_str(), to_string(cc.type), cc.node.c_str(),
            to_string(r.code));
    check_node(l);
  }

  void transfer() {
    auto l = leader_index();
    if (l == nodes_.size())
      return;
    auto& c = *nodes_[l].raft;
    const auto& voters = c.current_config().voters;
    if (voters.empty())
      return;
    auto target = voters[rng_.below(voters.size())];
    auto r = c.transfer_leadership(target);
    if (r.ok() && target != nodes_[l].id) {
      ++stats_.transfers;
      trace("%s transfers leadership to %s", nodes_[l].id.c_str(), target.c_str());
    }
    check_node(l);
  }

  void compact_somewhere() {
    auto i = random_up_node();
    if (i == nodes_.size())
      return;
    auto& n = nodes_[i];
    if (n.sm_index != n.raft->applied_index())
      return;
    if (n.sm_index < n.store->first_index() + 3)
      return;
    // Padding makes snapshots span several chunks.
    auto data = snapshot_data(n, rng_.below(1500));
    auto r = n.raft->compact(n.sm_index, data);
    if (r.ok())
      trace("%s compacts at %llu", n.id.c_str(), ull(n.sm_index));
    check_node(i);
  }

  void read_somewhere() {
    // Any node that believes it leads, stale ones included: they must not
    // answer from their possibly outdated state.
    std::vector<size_t> leaders;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].raft && nodes_[i].raft->state() == role::leader)
        leaders.push_back(i);
    if (leaders.empty())
      return;
    auto l = leaders[rng_.below(leaders.size())];
    auto id = ++read_seq_;
    if (nodes_[l].raft->read_index(id).ok())
      chk_.on_read_issued(nodes_[l].id, id);
  }

  // ---- the loop ----

  void step(bool client_load) {
    ++now_;
    if (faults_) {
      maybe_crash();
      maybe_partition();
    }
    deliver_due();
    for (size_t i = 0; i < nodes_.size() && chk_.ok(); ++i) {
      if (nodes_[i].raft) {
        nodes_[i].raft->tick();
        check_node(i);
      }
    }
    if (client_load && chk_.ok()) {
      if (chance_pm(p_.propose_pm))
        for (auto k = between(1, 3); k > 0; --k)
          propose_somewhere();
      if (chance_pm(p_.conf_pm))
        change_membership();
      if (chance_pm(p_.transfer_pm))
        transfer();
      if (chance_pm(p_.compact_pm))
        compact_somewhere();
      if (chance_pm(p_.read_pm))
        read_somewhere();
      if (chk_.ok())
        lock_maintenance();
      if (chk_.ok())
        queue_maintenance();
    }
    if (chk_.ok())
      process_readies();
  }

  void liveness_phase() {
    trace("liveness phase: faults stop");
    faults_ = false;
    cuts_.clear();
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (!nodes_[i].raft) {
        trace("%s restarts", nodes_[i].id.c_str());
        start(i);
      }
    auto start_tick = now_;
    auto deadline = now_ + p_.liveness_ticks;
    auto data = "liveness-" + std::to_string(seed_);
    uint64_t index = 0;
    uint64_t term = 0;
    bool committed = false;
    // 1. A leader is elected and commits a new proposal within the bound.
    while (!committed && now_ < deadline && chk_.ok()) {
      step(false);
      if (index != 0) {
        uint64_t t = 0;
        uint64_t d = 0;
        if (chk_.committed_at(index, t, d)) {
          if (t == term) {
            committed = true;
            trace("liveness proposal committed at %llu", ull(index));
            break;
          }
          index = 0; // lost in a leader change: propose again
        } else if (auto l = leader_index(); l < nodes_.size() && nodes_[l].raft->term() > term
                   && !nodes_[l].raft->log().match_term(index, term)) {
          index = 0; // a newer leader does not have it: it will never commit
        }
      }
      if (index == 0) {
        auto l = leader_index();
        if (l < nodes_.size()) {
          auto r = nodes_[l].raft->propose(data);
          if (verbose_)
            trace("liveness proposal to %s: %s %llu/%llu", nodes_[l].id.c_str(),
                  to_string(r.code), ull(r.index), ull(r.term));
          if (r.ok()) {
            index = r.index;
            term = r.term;
          }
        }
      }
    }
    if (!chk_.ok())
      return;
    if (!committed) {
      chk_.fail("liveness: no proposal committed within " + std::to_string(p_.liveness_ticks)
                + " ticks of fault-free operation");
      return;
    }
    stats_.liveness_ticks = stats_.max_liveness_ticks = now_ - start_tick;
    // 2. Every member catches up and applies it (no committed entry lost, all
    // state machines agree). Members far behind need time in proportion to
    // their backlog, at the seed's (possibly tiny) message and window sizes.
    uint64_t backlog = 0;
    if (auto l = leader_index(); l < nodes_.size())
      for (const auto& id : nodes_[l].raft->current_config().members())
        if (auto j = index_of(id); j < nodes_.size())
          backlog = std::max(backlog, index - std::min(index, nodes_[j].sm_index));
    auto catch_up_deadline = now_ + 400 + 4 * backlog;
    while (!all_members_applied(index) && now_ < catch_up_deadline && chk_.ok())
      step(false);
    if (chk_.ok() && !all_members_applied(index))
      chk_.fail("liveness: members did not apply committed index " + std::to_string(index)
                + " within " + std::to_string(400 + 4 * backlog) + " ticks");
    if (chk_.ok())
      drain_phase(index);
  }

  // 3. The checked queue drains: a consumer on the leader dequeues and acks until the
  // queue is empty at the leader's commit index (the leader's expire fires meanwhile,
  // its DLQ is redriven), and then every committed enqueue of it must have been
  // delivered and acked. No enqueue can commit any more: the liveness proposal at
  // `index` committed the leader's whole log, and nobody proposes one now.
  void drain_phase(uint64_t index) {
    const auto& q = checked_queue;
    const auto start_tick = now_;
    const auto deadline = now_ + drain_limit_ticks;
    uint64_t next_dequeue = 0;
    queue::queue_stats s;
    bool drained = false;
    while (now_ < deadline && chk_.ok()) {
      if (auto l = leader_index(); l < nodes_.size()) {
        const auto& n = nodes_[l];
        s = n.queue.stats(q);
        if (n.sm_index >= index && n.sm_index == n.raft->commit_index()
            && s.ready + s.in_flight + s.delayed + s.dead == 0) {
          drained = true;
          break;
        }
        // Ack what the clients were handed (the drain's own deliveries among them).
        for (size_t k = 0; k < held_.size();) {
          if (held_[k].queue != q) {
            ++k;
            continue;
          }
          queue::command c;
          c.kind = queue::op::ack;
          c.now_ms = clock_ms(l);
          c.queue = q;
          c.id = held_[k].id;
          c.receipt = held_[k].receipt;
          propose_queue_command(l, c);
          held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
        }
        if (now_ >= next_dequeue && (s.ready > 0 || s.dead > 0)) {
          queue::command c;
          c.now_ms = clock_ms(l);
          c.queue = q;
          if (s.dead > 0) {
            c.kind = queue::op::redrive;
            c.max = queue::max_dequeue;
          } else {
            c.kind = queue::op::dequeue;
            c.consumer = "drain";
            c.max = 10;
            c.visibility_ms = 1000;
          }
          propose_queue_command(l, c);
          next_dequeue = now_ + 5;
        }
        queue_maintenance();
      }
      if (chk_.ok())
        step(false);
    }
    if (!chk_.ok())
      return;
    if (!drained) {
      chk_.fail("liveness: " + q + " not drained within " + std::to_string(drain_limit_ticks)
                + " ticks (ready " + std::to_string(s.ready) + ", in flight "
                + std::to_string(s.in_flight) + ", delayed " + std::to_string(s.delayed)
                + ", dead " + std::to_string(s.dead) + " on the leader)");
      return;
    }
    chk_.check_queue_drained(q);
    stats_.drain_ticks = stats_.max_drain_ticks = now_ - start_tick;
    trace("%s drained in %llu ticks: %zu messages, all delivered and acked", q.c_str(),
          ull(now_ - start_tick), chk_.queue_messages(q));
  }

  bool all_members_applied(uint64_t index) const {
    auto l = leader_index();
    if (l == nodes_.size())
      return false;
    for (const auto& id : nodes_[l].raft->current_config().members()) {
      auto j = index_of(id);
      if (j == nodes_.size() || !nodes_[j].raft || nodes_[j].sm_index < index)
        return false;
    }
    return true;
  }

  uint64_t seed_;
  rng rng_;
  rng lock_rng_{mix(seed_, 0x10c7ab1e)}; // lock commands: the fault schedule keeps rng_
  rng queue_rng_{mix(seed_, 0x0e0e0e0e)}; // queue commands, and lock or queue
  bool verbose_;
  params p_;
  std::vector<sim_node> nodes_;
  std::map<uint64_t, std::vector<message>> net_; // delivery tick -> messages
  std::unordered_map<node_id, size_t> index_;
  std::set<std::pair<node_id, node_id>> cuts_; // directed: messages from first to second are lost
  uint64_t heal_at_ = 0;
  uint64_t now_ = 0;
  bool faults_ = true;
  bool chaos_ = false;
  uint64_t proposal_seq_ = 0;
  uint64_t read_seq_ = 0;
  raft_checker chk_;
  sim_stats stats_;
  std::set<uint64_t> leader_terms_;
  std::set<uint64_t> counted_conf_;
  std::map<uint64_t, uint64_t> commit_term_; // index -> term in which it was committed
  uint64_t renewed_term_ = 0;  // the last term whose leader proposed renew_all
  uint64_t expire_again_at_ = 0; // the leader's next expire proposal waits until this tick
  uint64_t lock_counted_ = 0;  // the highest index counted in the lock stats
  // The queue shard's clients.
  static constexpr uint64_t drain_limit_ticks = 2000;
  struct pending_proposal {
    size_t node;          // the node that accepted it: the client hears from it only
    uint64_t incarnation; // ... unless it restarted meanwhile
  };
  struct held_delivery {
    std::string queue;
    std::string id;
    uint64_t receipt;
  };
  std::unordered_map<uint64_t, pending_proposal> pending_; // queue proposals by number
  std::vector<held_delivery> held_;  // deliveries clients learned about, oldest first
  uint64_t payload_seq_ = 0;         // payloads are unique per proposal
  uint64_t queue_counted_ = 0;       // the highest index reported to the checker
  uint64_t queue_expire_again_at_ = 0;
};

} // namespace

sim_result run_raft_seed(uint64_t seed, bool verbose) {
  simulation s(seed, verbose);
  return s.run();
}

std::string run_checker_self_test() {
  std::string missed;
  auto expect_violation = [&](const char* name, auto feed) {
    raft_checker c;
    feed(c);
    if (c.ok())
      missed += std::string(name) + "; ";
  };
  expect_violation("two leaders in one term", [](raft_checker& c) {
    c.on_leader("a", 3);
    c.on_leader("b", 3);
  });
  expect_violation("term decreased", [](raft_checker& c) {
    c.on_term("a", 0, 5);
    c.on_term("a", 0, 4);
  });
  expect_violation("durable term decreased across a restart", [](raft_checker& c) {
    c.on_persisted("a", 5, 1);
    c.on_persisted("a", 4, 1);
  });
  expect_violation("log matching: same index and term, other data", [](raft_checker& c) {
    c.on_entry("a", 7, 2, 2, 111);
    c.on_entry("b", 7, 2, 2, 222);
  });
  expect_violation("log matching: same entry, other predecessor", [](raft_checker& c) {
    c.on_entry("a", 7, 2, 1, 111);
    c.on_entry("b", 7, 2, 2, 111);
  });
  expect_violation("committed entry replaced", [](raft_checker& c) {
    c.on_committed("a", 4, 1, 10);
    c.on_committed("b", 4, 2, 20);
  });
  expect_violation("different entries applied", [](raft_checker& c) {
    c.on_committed("a", 1, 1, 10);
    c.on_applied("b", 1, 1, 11, 0, 99);
  });
  expect_violation("applied out of order", [](raft_checker& c) { c.on_applied("a", 2, 1, 10, 0, 5); });
  expect_violation("leader lacks committed entry",
                   [](raft_checker& c) { c.on_leader_holds("a", 4, 9, false); });
  expect_violation("commit not durable on a majority",
                   [](raft_checker& c) { c.on_commit_durability(3, 1, 3); });
  expect_violation("stale read", [](raft_checker& c) {
    c.on_committed("a", 5, 1, 1);
    c.on_read_issued("b", 1);
    c.on_read_served("b", 1, 4);
  });
  expect_violation("two exclusive holders of a lock",
                   [](raft_checker& c) { c.on_lock_holders("a", 3, "L", 2, 0); });
  expect_violation("a shared holder beside an exclusive one",
                   [](raft_checker& c) { c.on_lock_holders("a", 3, "L", 1, 1); });
  expect_violation("a fencing token not above the previous one",
                   [](raft_checker& c) { c.on_lock_grant("a", 3, 5, 5); });
  expect_violation("token counter went back within an incarnation", [](raft_checker& c) {
    c.on_lock_state("a", 0, 3, 5, 100);
    c.on_lock_state("a", 0, 4, 4, 100);
  });
  expect_violation("lock table clock went back within an incarnation", [](raft_checker& c) {
    c.on_lock_state("a", 0, 3, 5, 100);
    c.on_lock_state("a", 0, 4, 5, 99);
  });
  expect_violation("token counter out of log order across nodes", [](raft_checker& c) {
    c.on_lock_state("a", 0, 3, 5, 100);
    c.on_lock_state("b", 0, 2, 6, 100);
  });
  expect_violation("another lock table at the same index", [](raft_checker& c) {
    c.on_lock_table("a", 3, 111);
    c.on_lock_table("b", 3, 112);
  });
  expect_violation("another token counter at the same index", [](raft_checker& c) {
    c.on_lock_state("a", 0, 3, 5, 100);
    c.on_lock_state("b", 0, 3, 6, 100);
  });
  // The queue shard. q(c) replays a small legal prefix: "7-1" and "7-2" enqueued in q,
  // "7-1" delivered at 3 (visibility 100 ms, shard time 10).
  auto q = [](raft_checker& c) {
    c.on_queue_command(1, 10);
    c.on_enqueued(1, "q", "7-1");
    c.on_queue_command(2, 10);
    c.on_enqueued(2, "q", "7-2");
    c.on_queue_command(3, 10);
    c.on_delivered(3, "q", "7-1", 3, 1, 100);
  };
  auto contents = [](raft_checker& c, uint64_t index, std::map<std::string, int> where,
                     std::array<uint64_t, 4> counts, std::vector<std::string> dead = {}) {
    c.on_queue_contents("a", index, "q", [&](const std::string& id) { return where[id]; }, counts, dead);
  };
  expect_violation("another queue shard at the same index", [](raft_checker& c) {
    c.on_queue_shard("a", 3, 111);
    c.on_queue_shard("b", 3, 112);
  });
  expect_violation("a message id given twice", [](raft_checker& c) {
    c.on_enqueued(5, "q", "7-5");
    c.on_enqueued(5, "q", "7-5");
  });
  expect_violation("an enqueue answering another index's id",
                   [](raft_checker& c) { c.on_enqueued(5, "q", "7-6"); });
  expect_violation("an acked message delivered again", [&](raft_checker& c) {
    q(c);
    c.on_queue_command(4, 20);
    c.on_acked(4, "q", "7-1", 3);
    c.on_queue_command(5, 500);
    c.on_delivered(5, "q", "7-1", 5, 2, 100);
  });
  expect_violation("first deliveries out of enqueue order (the older one never acknowledged)",
                   [](raft_checker& c) {
    c.on_enqueued(1, "q", "7-1");
    c.on_enqueued(2, "q", "7-2");
    c.on_enqueue_acknowledged("7-2");
    c.on_delivered(3, "q", "7-2", 3, 1, 100);
  });
  expect_violation("a first delivery counting 2 deliveries", [](raft_checker& c) {
    c.on_enqueued(1, "q", "7-1");
    c.on_delivered(2, "q", "7-1", 2, 2, 100);
  });
  expect_violation("a message delivered again while in flight", [&](raft_checker& c) {
    q(c);
    c.on_queue_command(4, 50);
    c.on_delivered(4, "q", "7-1", 4, 2, 100);
  });
  expect_violation("a delivery of a message of another queue", [&](raft_checker& c) {
    q(c);
    c.on_delivered(4, "r", "7-2", 4, 1, 100);
  });
  expect_violation("a delivery of an id no enqueue created",
                   [&](raft_checker& c) { c.on_delivered(4, "q", "7-9", 4, 1, 100); });
  expect_violation("an ack with a stale receipt succeeded", [&](raft_checker& c) {
    q(c);
    c.on_acked(4, "q", "7-1", 2);
  });
  expect_violation("an ack of a message not in flight succeeded", [&](raft_checker& c) {
    q(c);
    c.on_acked(4, "q", "7-2", 0);
  });
  expect_violation("a nacked delivery acked", [&](raft_checker& c) {
    q(c);
    c.on_nacked(4, "q", "7-1", 3, false);
    c.on_acked(5, "q", "7-1", 3);
  });
  expect_violation("an expire that left a due delivery in flight", [&](raft_checker& c) {
    q(c);
    c.on_queue_command(4, 110);
    c.on_expired(4, {}, {});
  });
  expect_violation("an expire of a delivery not yet due", [&](raft_checker& c) {
    q(c);
    c.on_queue_command(4, 109);
    c.on_expired(4, {"7-1"}, {});
  });
  expect_violation("a purge of more messages than the DLQ held", [&](raft_checker& c) {
    q(c);
    c.on_purged(4, "q", 4, 1);
  });
  expect_violation("a redrive of more messages than the DLQ held", [&](raft_checker& c) {
    q(c);
    c.on_redriven(4, "q", 4, 1);
  });
  expect_violation("a nack at max_deliveries not dead-lettered", [&](raft_checker& c) {
    q(c);
    c.on_queue_configured(4, "q", 1);
    c.on_nacked(5, "q", "7-1", 3, false);
  });
  expect_violation("a timeout under max_deliveries dead-lettered", [&](raft_checker& c) {
    q(c);
    c.on_queue_command(4, 200);
    c.on_expired(4, {"7-1"}, {"7-1"});
  });
  expect_violation("a dead message delivered", [&](raft_checker& c) {
    q(c);
    c.on_queue_configured(4, "q", 1);
    c.on_nacked(5, "q", "7-1", 3, true);
    c.on_delivered(6, "q", "7-1", 6, 2, 100);
  });
  expect_violation("a delivery count that skips one", [&](raft_checker& c) {
    q(c);
    c.on_nacked(4, "q", "7-1", 3, false);
    c.on_delivered(5, "q", "7-1", 5, 3, 100);
  });
  expect_violation("a committed enqueue lost on a node", [&](raft_checker& c) {
    q(c);
    contents(c, 3, {{"7-1", 2}}, {0, 1, 0, 0});
  });
  expect_violation("an acked message back in the counters", [&](raft_checker& c) {
    q(c);
    c.on_acked(4, "q", "7-1", 0);
    contents(c, 4, {{"7-2", 1}}, {2, 0, 0, 0});
  });
  expect_violation("a message counted in two states", [&](raft_checker& c) {
    q(c);
    contents(c, 3, {{"7-1", 2}, {"7-2", 1}}, {1, 1, 0, 1}, {"7-1"});
  });
  expect_violation("a DLQ list without a dead message", [&](raft_checker& c) {
    q(c);
    contents(c, 3, {{"7-1", 4}, {"7-2", 1}}, {1, 0, 0, 1});
  });
  expect_violation("liveness: a committed enqueue never delivered", [&](raft_checker& c) {
    q(c);
    c.on_acked(4, "q", "7-1", 3);
    c.check_queue_drained("q");
  });
  expect_violation("liveness: a delivered message left in the drained queue", [&](raft_checker& c) {
    q(c);
    c.on_delivered(4, "q", "7-2", 4, 1, 100);
    c.on_acked(5, "q", "7-2", 4);
    c.check_queue_drained("q");
  });
  // A legal queue history passes, a lagging node's view included.
  {
    raft_checker c;
    q(c);
    c.on_enqueue_acknowledged("7-1");
    contents(c, 2, {{"7-1", 1}, {"7-2", 1}}, {2, 0, 0, 0});
    contents(c, 3, {{"7-1", 2}, {"7-2", 1}}, {1, 1, 0, 0});
    c.on_queue_command(4, 5); // a lagging clock: the shard's time stays 10
    c.on_queue_configured(4, "q", 2);
    c.on_queue_command(5, 5);
    c.on_nacked(5, "q", "7-1", 0, false); // 1 delivery of 2
    c.on_queue_command(6, 20);
    c.on_delivered(6, "q", "7-1", 6, 2, 100);
    c.on_delivered(6, "q", "7-2", 6, 1, 100);
    c.on_queue_command(7, 130);
    c.on_expired(7, {"7-1", "7-2"}, {"7-1"});
    contents(c, 7, {{"7-1", 4}, {"7-2", 1}}, {1, 0, 0, 1}, {"7-1"});
    c.on_queue_command(8, 130);
    c.on_redriven(8, "q", 4, 1);
    c.on_queue_command(9, 130);
    c.on_delivered(9, "q", "7-1", 9, 1, 100); // counted afresh after the redrive
    c.on_delivered(9, "q", "7-2", 9, 2, 100);
    c.on_queue_command(10, 140);
    c.on_nacked(10, "q", "7-2", 9, true);
    c.on_queue_command(11, 140);
    c.on_purged(11, "q", 4, 1);
    c.on_queue_command(12, 150);
    c.on_acked(12, "q", "7-1", 9);
    contents(c, 12, {}, {0, 0, 0, 0});
    contents(c, 4, {{"7-1", 2}, {"7-2", 1}}, {1, 1, 0, 0}); // a node still at index 4
    c.on_queue_command(13, 150);
    c.on_enqueued(13, "q", "7-13");
    c.on_queue_command(14, 150);
    c.on_queue_deleted(14, "q");
    c.on_queue_command(15, 150);
    c.on_enqueued(15, "q", "7-15");
    c.on_queue_command(16, 150);
    c.on_delivered(16, "q", "7-15", 16, 1, 100); // 7-13 went with its queue
    c.on_queue_command(17, 300);
    c.on_expired(17, {"7-15"}, {}); // the default max_deliveries again
    c.on_queue_command(18, 300);
    c.on_delivered(18, "q", "7-15", 18, 2, 100);
    c.on_queue_command(19, 300);
    c.on_acked(19, "q", "7-15", 18);
    c.on_queue_shard("a", 19, 5);
    c.on_queue_shard("b", 19, 5);
    c.check_queue_drained("q");
    if (!c.ok())
      missed += "legal queue history rejected: " + c.violation() + "; ";
  }
  // And a legal history passes.
  raft_checker good;
  good.on_lock_holders("a", 1, "L", 1, 0);
  good.on_lock_holders("a", 1, "M", 0, 3);
  good.on_lock_grant("a", 1, 6, 5);
  good.on_lock_state("a", 0, 5, 7, 200);
  good.on_lock_state("b", 0, 3, 5, 100);
  good.on_lock_state("a", 1, 3, 5, 100); // a restart goes back to its older snapshot
  good.on_lock_state("a", 1, 4, 5, 150);
  good.on_lock_table("a", 3, 111);
  good.on_lock_table("b", 3, 111);
  good.on_leader("a", 1);
  good.on_entry("a", 1, 1, 0, 5);
  good.on_entry("b", 1, 1, 0, 5);
  good.on_committed("a", 1, 1, 5);
  good.on_applied("a", 1, 1, 5, 0, 42);
  good.on_applied("b", 1, 1, 5, 0, 42);
  good.on_leader("b", 2);
  good.on_term("a", 0, 1);
  good.on_term("a", 1, 1);
  if (!good.ok())
    missed += "legal history rejected: " + good.violation();
  return missed;
}

} // namespace dsync::sim
