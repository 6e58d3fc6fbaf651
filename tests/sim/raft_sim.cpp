#include "tests/sim/raft_sim.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
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
  liveness_ticks += o.liveness_ticks;
  max_liveness_ticks = std::max(max_liveness_ticks, o.max_liveness_ticks);
}

std::string sim_stats::to_string() const {
  char buf[800];
  std::snprintf(buf, sizeof buf,
                "ticks=%llu messages=%llu committed=%llu leaders=%llu crashes=%llu partitions=%llu "
                "snapshots_installed=%llu compactions=%llu conf_changes=%llu transfers=%llu "
                "reads=%llu lock_commands=%llu lock_grants=%llu lock_deadlocks=%llu "
                "liveness_ticks=%llu max_liveness_ticks=%llu",
                (unsigned long long) ticks, (unsigned long long) messages,
                (unsigned long long) committed, (unsigned long long) leaders,
                (unsigned long long) crashes, (unsigned long long) partitions,
                (unsigned long long) snapshots_installed, (unsigned long long) compactions,
                (unsigned long long) conf_changes, (unsigned long long) transfers,
                (unsigned long long) reads, (unsigned long long) lock_commands,
                (unsigned long long) lock_grants, (unsigned long long) lock_deadlocks,
                (unsigned long long) liveness_ticks,
                (unsigned long long) max_liveness_ticks);
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
  config base;
};

struct sim_node {
  node_id id;
  std::unique_ptr<memory_storage> store;
  std::unique_ptr<core> raft; // null while crashed
  uint64_t incarnation = 0;
  uint64_t restart_at = 0;
  bool pending = false; // a ready batch taken but not yet persisted/advanced
  ready rd;
  // The state machine: the last applied index, a hash chain of the applied entries and
  // the lock table's answers and events (the state reported per index), and the table.
  uint64_t sm_index = 0;
  uint64_t sm_hash = 0;
  locks::table locks;
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
            "check_quorum=%d heartbeat=%llu inflight=%llu chunk=%llu chaos=%d",
            p_.voters, ull(p_.drop_pm), ull(p_.dup_pm), ull(p_.max_delay), ull(p_.crash_pm),
            ull(p_.partition_pm), p_.base.pre_vote, p_.base.check_quorum,
            ull(p_.base.heartbeat_ticks), ull(p_.base.max_inflight_msgs),
            ull(p_.base.snapshot_chunk_bytes), chaos_);
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
    n.pending = false;
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
    n.raft.reset();
    n.pending = false;
    n.rd = ready{};
    ++n.incarnation;
    n.restart_at = now_ + (chaos_ ? between(1, 20) : between(3, 60));
    ++stats_.crashes;
  }

  // Snapshot data: "index:chain:length:" + the lock table's snapshot (length bytes) + padding.
  static std::string snapshot_data(const sim_node& n, size_t padding) {
    auto table = n.locks.snapshot();
    return std::to_string(n.sm_index) + ":" + std::to_string(n.sm_hash) + ":"
           + std::to_string(table.size()) + ":" + table + std::string(padding, 's');
  }

  void restore_state_machine(size_t i, const snapshot& snap) {
    auto& n = nodes_[i];
    if (snap.metadata.index == 0) {
      n.sm_index = 0;
      n.sm_hash = 0;
      n.locks = locks::table{};
      check_lock_table(i, 0);
      return;
    }
    unsigned long long idx = 0;
    unsigned long long hash = 0;
    unsigned long long len = 0;
    int used = 0;
    if (std::sscanf(snap.data.c_str(), "%llu:%llu:%llu:%n", &idx, &hash, &len, &used) != 3
        || idx != snap.metadata.index) {
      chk_.fail(n.id + ": snapshot data does not match its metadata index "
                + std::to_string(snap.metadata.index));
      return;
    }
    locks::table table;
    if (static_cast<size_t>(used) + len > snap.data.size()
        || !table.restore(snap.data.substr(static_cast<size_t>(used), len))) {
      chk_.fail(n.id + ": the lock table in the snapshot at " + std::to_string(idx)
                + " does not restore");
      return;
    }
    n.sm_index = idx;
    n.sm_hash = hash;
    n.locks = std::move(table);
    chk_.on_state(n.id, idx, hash);
    check_lock_table(i, idx);
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
    n.rd = n.raft->ready();
    n.pending = true;
    const auto& log = n.raft->log();
    for (size_t k = 0; k < n.rd.entries.size(); ++k) {
      const auto& e = n.rd.entries[k];
      auto prev = k > 0 ? std::optional<uint64_t>(n.rd.entries[k - 1].term) : log.term(e.index - 1);
      if (!prev) {
        chk_.fail(n.id + ": entry " + std::to_string(e.index) + " has no predecessor in the log");
        return;
      }
      chk_.on_entry(n.id, e.index, e.term, *prev, digest_of(e));
    }
    for (const auto& m : n.rd.messages)
      send(m);
  }

  void complete_ready(size_t i) {
    auto& n = nodes_[i];
    auto& rd = n.rd;
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
      apply_lock_entry(i, e);
      chk_.on_applied(n.id, e.index, e.term, digest_of(e), prev, n.sm_hash);
      if (e.type == entry_type::conf_change && counted_conf_.insert(e.index).second) {
        ++stats_.conf_changes;
        conf_change_record rec;
        decode_conf_change(e.data, rec);
        trace("conf change %llu committed: %s %s -> %s", ull(e.index), to_string(rec.change.type),
              rec.change.node.c_str(), raft::to_string(rec.config).c_str());
      }
    }
    if (!rd.committed_entries.empty())
      check_lock_table(i, n.sm_index);
    for (const auto& r : rd.read_states) {
      if (!r.ok)
        continue;
      ++stats_.reads;
      chk_.on_read_served(n.id, r.request_id, r.index);
    }
    n.raft->advance(rd);
    n.pending = false;
    n.rd = ready{};
    check_node(i);
  }

  void process_readies() {
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        auto& n = nodes_[i];
        if (!n.raft)
          continue;
        if (!n.pending && n.raft->has_ready())
          take_ready(i);
        // Storage is sometimes slow: the batch stays in flight for a while,
        // and the node keeps receiving messages meanwhile.
        if (n.pending && (!faults_ || !rng_.chance(1, 4))) {
          complete_ready(i);
        } else if (n.pending && chance_pm(p_.mid_persist_crash_pm)) {
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
    auto data = lock_entry(++proposal_seq_, random_lock_command(clock_ms(i)));
    auto r = nodes_[i].raft->propose(data);
    if (r.code == errc::not_leader && !r.leader_hint.empty()) {
      // The actor layer forwards to the leader it was told about.
      auto j = index_of(r.leader_hint);
      if (j < nodes_.size() && nodes_[j].raft)
        r = nodes_[j].raft->propose(data);
      i = j;
    }
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
    if (n.pending || n.sm_index != n.raft->applied_index())
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
