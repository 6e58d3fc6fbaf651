#include "protocols/raft/progress.hpp"

#include <algorithm>

namespace dsync::raft {

const char* to_string(progress_state x) {
  switch (x) {
    case progress_state::probe: return "probe";
    case progress_state::replicate: return "replicate";
    case progress_state::snapshot: return "snapshot";
  }
  return "?";
}

void inflights::add(uint64_t last_index, uint64_t bytes) {
  items_.push_back(item{last_index, bytes});
  bytes_ += bytes;
}

void inflights::free_le(uint64_t index) {
  while (!items_.empty() && items_.front().last_index <= index) {
    bytes_ -= items_.front().bytes;
    items_.pop_front();
  }
}

void inflights::free_first() {
  if (items_.empty())
    return;
  bytes_ -= items_.front().bytes;
  items_.pop_front();
}

void inflights::reset() {
  items_.clear();
  bytes_ = 0;
}

void progress::become_probe() {
  // Coming back from a snapshot, resume after it: the follower has at
  // least the snapshot once it acknowledged it.
  if (state_ == progress_state::snapshot)
    next_ = std::max(match_ + 1, pending_snapshot_ + 1);
  else
    next_ = match_ + 1;
  state_ = progress_state::probe;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  transfer_ = snapshot_transfer{};
  inflights_.reset();
}

void progress::become_replicate() {
  state_ = progress_state::replicate;
  next_ = match_ + 1;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  transfer_ = snapshot_transfer{};
  inflights_.reset();
}

void progress::become_snapshot(uint64_t snapshot_index, std::shared_ptr<const raft::snapshot> snap) {
  state_ = progress_state::snapshot;
  probe_sent_ = false;
  pending_snapshot_ = snapshot_index;
  transfer_ = snapshot_transfer{std::move(snap), 0, 0};
  inflights_.reset();
}

bool progress::maybe_update(uint64_t index) {
  bool updated = false;
  if (match_ < index) {
    match_ = index;
    updated = true;
    probe_sent_ = false;
  }
  next_ = std::max(next_, index + 1);
  return updated;
}

bool progress::maybe_decrease_to(uint64_t rejected, uint64_t hint_next) {
  if (state_ == progress_state::snapshot)
    return false; // the transfer decides; appends resume after it
  if (state_ == progress_state::replicate) {
    if (rejected <= match_)
      return false; // stale: that position is known to match
    become_probe();
    next_ = std::max(match_ + 1, std::min(rejected, hint_next));
    return true;
  }
  // Probe: only the answer to the one outstanding probe counts.
  if (next_ - 1 != rejected)
    return false;
  next_ = std::max(match_ + 1, std::min(rejected, hint_next));
  probe_sent_ = false;
  return true;
}

void progress::sent_entries(uint64_t last_index, uint64_t count, uint64_t bytes) {
  switch (state_) {
    case progress_state::replicate:
      if (count > 0) {
        next_ = last_index + 1;
        inflights_.add(last_index, bytes);
      }
      break;
    case progress_state::probe:
      probe_sent_ = true;
      break;
    case progress_state::snapshot:
      break;
  }
}

bool progress::is_paused() const {
  switch (state_) {
    case progress_state::probe: return probe_sent_;
    case progress_state::replicate: return inflights_.full();
    case progress_state::snapshot: return true;
  }
  return true;
}

} // namespace dsync::raft
