// Deterministic simulation of Raft clusters (TigerBeetle VOPR / etcd style).
//
// One seed drives everything: cluster size (3 or 5 voters plus 2 spare nodes
// that may join), core settings, network faults (drop, delay, duplicate,
// reorder), partitions (random, leader-isolating, one-way) and heals, crashes
// and restarts that lose everything not yet persisted, client proposals,
// membership changes (add learner, promote, remove, re-add), leader
// transfers, read-index reads and compaction. The replicated state machines
// are the lock table (protocols/locks) and a queue shard (protocols/queue) in
// the same log, each entry tagged with the machine it is for: proposals are
// random lock and queue commands stamped with the proposer's clock (ticks *
// 10 ms, lagging per node), the leader proposes the lock table's expire when a
// deadline passes and renew_all once per term, and the shard's expire when
// its next deadline passes; every node applies them in log order and
// snapshots both. Simulated queue clients learn the outcome of a proposal only
// when the node that accepted it applies it (the actor answers after apply),
// and ack or nack the deliveries they learned about. After every step the
// invariants of raft_invariants.hpp are checked. A liveness phase follows:
// faults stop, and the connected cluster must elect a leader and commit a new
// proposal within a bounded number of ticks, then drain the checked queue
// (dequeue, ack, redrive its DLQ) so that every committed enqueue is shown to
// have been delivered.
#pragma once

#include <cstdint>
#include <string>

namespace dsync::sim {

struct sim_stats {
  uint64_t ticks = 0;
  uint64_t messages = 0;
  uint64_t committed = 0;          // highest committed index
  uint64_t leaders = 0;            // terms that had a leader
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t snapshots_installed = 0;
  uint64_t compactions = 0;
  uint64_t conf_changes = 0;       // conf change entries committed
  uint64_t transfers = 0;          // transfers started
  uint64_t reads = 0;              // reads served
  uint64_t lock_commands = 0;      // lock commands applied (counted once per index)
  uint64_t lock_grants = 0;        // new grants among them (answers and events)
  uint64_t lock_deadlocks = 0;     // requests refused with deadlock
  uint64_t queue_commands = 0;     // queue shard commands applied (counted once per index)
  uint64_t queue_enqueued = 0;     // enqueues that succeeded
  uint64_t queue_deliveries = 0;   // messages handed out by dequeues
  uint64_t queue_acks = 0;         // acks that succeeded
  uint64_t queue_dead_letters = 0; // messages moved to a dead-letter queue
  uint64_t drain_ticks = 0;        // ticks the liveness phase needed to drain the checked queue
  uint64_t max_drain_ticks = 0;    // worst seed
  uint64_t liveness_ticks = 0;     // ticks the liveness phase needed
  uint64_t max_liveness_ticks = 0; // worst seed

  void add(const sim_stats& o);
  std::string to_string() const;
};

struct sim_result {
  bool ok = true;
  std::string violation; // first invariant violated, empty if ok
  sim_stats stats;
};

// Runs one seed. verbose: print a trace of every event to stdout.
sim_result run_raft_seed(uint64_t seed, bool verbose);

// Feeds deliberately broken histories to the invariant checker; returns an
// empty string if every one was caught, else what slipped through.
std::string run_checker_self_test();

} // namespace dsync::sim
