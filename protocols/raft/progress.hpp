// What the leader knows about one follower's log, and the flow control of
// append messages to it (the shape of etcd's tracker.Progress / Inflights).
//
// States:
//   probe      - the leader does not know where the follower's log matches
//                ours. It sends one append at a time (paused until an answer
//                or a heartbeat response) and walks next_index back using the
//                follower's conflict hint.
//   replicate  - the follower's log is known to match up to `match`. The
//                leader pipelines: it sends entries optimistically, advancing
//                next_index on send, and bounds what is unacknowledged by
//                max_inflight_msgs / max_inflight_bytes (the inflights window).
//   snapshot   - next_index fell behind the leader's first index; an
//                InstallSnapshot transfer (in chunks) is running. No appends
//                until the follower acknowledges the installed snapshot.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>

#include "protocols/raft/types.hpp"

namespace dsync::raft {

enum class progress_state : uint8_t { probe = 0, replicate = 1, snapshot = 2 };
const char* to_string(progress_state x);

// A window of append messages sent but not yet acknowledged, in send order;
// each remembered by its last entry index and its entry bytes.
class inflights {
 public:
  inflights(uint64_t max_msgs, uint64_t max_bytes) : max_msgs_(max_msgs), max_bytes_(max_bytes) {}

  // Precondition: !full().
  void add(uint64_t last_index, uint64_t bytes);
  // Acknowledges every message whose last index is <= index.
  void free_le(uint64_t index);
  // Forgets the oldest message (it was probably lost).
  void free_first();
  void reset();
  bool full() const { return items_.size() >= max_msgs_ || bytes_ >= max_bytes_; }
  size_t count() const { return items_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct item {
    uint64_t last_index;
    uint64_t bytes;
  };
  std::deque<item> items_;
  uint64_t bytes_ = 0;
  uint64_t max_msgs_;
  uint64_t max_bytes_;
};

// A snapshot being sent in chunks to one follower.
struct snapshot_transfer {
  std::shared_ptr<const raft::snapshot> snap; // pinned for the whole transfer
  uint64_t acked_offset = 0; // bytes the follower confirmed; next chunk starts here
  uint64_t ticks_since_send = 0; // resend the chunk after a silence
};

class progress {
 public:
  progress(uint64_t next, uint64_t max_inflight_msgs, uint64_t max_inflight_bytes, bool learner)
    : next_(next), inflights_(max_inflight_msgs, max_inflight_bytes), learner_(learner) {}

  uint64_t match() const { return match_; }
  uint64_t next() const { return next_; }
  progress_state state() const { return state_; }
  bool is_learner() const { return learner_; }
  void set_learner(bool x) { learner_ = x; }
  // Set by any message from the follower; cleared by each check-quorum round.
  bool recent_active = false;

  void become_probe();
  void become_replicate();
  void become_snapshot(uint64_t snapshot_index, std::shared_ptr<const raft::snapshot> snap);

  // A successful append response for `index`. True if match advanced.
  bool maybe_update(uint64_t index);
  // A rejection of the append at `rejected` with the leader's computed next
  // index `hint_next`. False if the rejection is stale (already resolved).
  // A replicating follower falls back to probe.
  bool maybe_decrease_to(uint64_t rejected, uint64_t hint_next);
  // Records that an append with entries up to `last_index` (`count` entries,
  // `bytes` bytes) was sent.
  void sent_entries(uint64_t last_index, uint64_t count, uint64_t bytes);

  // May the leader send this follower an append now?
  bool is_paused() const;
  // Probe state: let one more message out (on a heartbeat response).
  void resume_probe() { probe_sent_ = false; }

  // Replicate state: an acknowledgement up to `index` frees window slots.
  void window_free_le(uint64_t index) { inflights_.free_le(index); }
  // Replicate state: a heartbeat answer while the window is full means the
  // window's messages were likely lost; let one more message out.
  void window_free_first_if_full() {
    if (state_ == progress_state::replicate && inflights_.full())
      inflights_.free_first();
  }

  uint64_t pending_snapshot() const { return pending_snapshot_; }
  snapshot_transfer& transfer() { return transfer_; }
  const snapshot_transfer& transfer() const { return transfer_; }
  const inflights& window() const { return inflights_; }

 private:
  uint64_t match_ = 0;
  uint64_t next_ = 1;
  progress_state state_ = progress_state::probe;
  bool probe_sent_ = false;
  uint64_t pending_snapshot_ = 0;
  snapshot_transfer transfer_;
  inflights inflights_;
  bool learner_ = false;
};

} // namespace dsync::raft
