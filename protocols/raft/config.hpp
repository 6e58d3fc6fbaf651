// Settings of one Raft core. Times are logical ticks: the caller decides how
// long a tick is (the actor uses a timer; tests and the simulation call
// core::tick() directly). Sizes are bytes as counted by entry_size_bytes().
#pragma once

#include <cstdint>
#include <string>

#include "protocols/raft/types.hpp"

namespace dsync::raft {

struct config {
  // This node's id; must be non-empty.
  node_id id;
  // Raft group this core belongs to; copied into every outgoing message, and
  // messages of other groups are refused.
  uint64_t group = 0;

  // A follower starts an election after a randomized timeout drawn from
  // [election_ticks, 2 * election_ticks) without hearing from a leader.
  // It is also the check-quorum period and the leader-lease length.
  uint64_t election_ticks = 10;
  // Leader sends heartbeats every heartbeat_ticks. Must be < election_ticks.
  uint64_t heartbeat_ticks = 1;
  // Seed of the PRNG for the election timeout. Give each node a different one.
  uint64_t seed = 0;

  // Pre-vote (dissertation §9.6): probe for a majority before bumping the term.
  bool pre_vote = true;
  // Check-quorum (§6.2) and leader stickiness (§4.2.3): a leader that did not
  // hear from a majority within election_ticks steps down; a node that heard
  // from a leader within election_ticks ignores vote requests.
  bool check_quorum = true;

  // Index the state machine had already applied (durably) before this start.
  // Committed entries after max(applied_index, snapshot index) are delivered again.
  uint64_t applied_index = 0;

  // Flow control per follower (probe/replicate states, see progress.hpp).
  uint64_t max_inflight_msgs = 256;              // append messages in flight
  uint64_t max_inflight_bytes = 32ull << 20;     // entry bytes in flight
  uint64_t max_msg_bytes = 1ull << 20;           // entry bytes per append message (>= 1 entry)
  uint64_t max_entries_per_msg = 1024;
  // Bound on the leader's uncommitted tail: proposals beyond it are refused.
  uint64_t max_uncommitted_entries = 10000;
  uint64_t max_uncommitted_bytes = 64ull << 20;
  // Largest single proposal.
  uint64_t max_entry_bytes = 1ull << 20;
  // Committed entries handed out per ready batch (>= 1 entry).
  uint64_t max_apply_bytes_per_ready = 64ull << 20;
  // InstallSnapshot chunk size.
  uint64_t snapshot_chunk_bytes = 256ull << 10;
  // Largest snapshot a follower accepts (bounds the reassembly buffer).
  uint64_t max_snapshot_bytes = 1ull << 30;
  // Read-index requests waiting on the leader.
  uint64_t max_pending_reads = 4096;

  // Empty string if the settings are usable, otherwise what is wrong.
  std::string validate() const;
};

} // namespace dsync::raft
