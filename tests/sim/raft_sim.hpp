// Deterministic simulation of Raft clusters (TigerBeetle VOPR / etcd style).
//
// One seed drives everything: cluster size (3 or 5 voters plus 2 spare nodes
// that may join), core settings, network faults (drop, delay, duplicate,
// reorder), partitions (random, leader-isolating, one-way) and heals, crashes
// and restarts that lose everything not yet persisted, client proposals,
// membership changes (add learner, promote, remove, re-add), leader
// transfers, read-index reads and compaction. The replicated state machine
// is the lock table (protocols/locks): proposals are random lock commands
// stamped with the proposer's clock (ticks * 10 ms, lagging per node), the
// leader proposes expire when a deadline passes and renew_all once per term,
// and every node applies them in log order and snapshots the table. After
// every step the
// invariants of raft_invariants.hpp are checked. A liveness phase follows:
// faults stop, and the connected cluster must elect a leader and commit a new
// proposal within a bounded number of ticks.
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
