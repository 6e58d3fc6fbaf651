// The core's view of the Raft log: the stable part read through `storage`,
// plus the unstable tail (entries, or a snapshot received from the leader)
// that has been accepted but not yet acknowledged as persisted through
// core::advance(). Mirrors etcd's raftLog + unstable, including its
// "in progress" marks: entries and committed entries already handed out in a
// ready batch that is not yet acknowledged, so that the next batch carries
// only what is new (several batches may be in flight).
//
// Indices: first_index() .. last_index() are readable; first_index() - 1 is
// the snapshot position (its term is known, its entry is not).
#pragma once

#include <cstdint>
#include <algorithm>
#include <optional>
#include <vector>

#include "protocols/raft/storage.hpp"
#include "protocols/raft/types.hpp"

namespace dsync::raft {

class raft_log {
 public:
  // Starts with everything in `store` as stable. `store` must outlive this.
  explicit raft_log(const storage& store);

  uint64_t first_index() const;
  uint64_t last_index() const;
  // Term of the entry at `index`; nullopt if compacted (below first_index() - 1)
  // or beyond last_index(). term(0) is 0.
  std::optional<uint64_t> term(uint64_t index) const;
  uint64_t last_term() const;
  bool match_term(uint64_t index, uint64_t term) const;
  // Election restriction (Raft paper §5.4.1): is a log ending at
  // (last_index, last_term) at least as up-to-date as ours?
  bool is_up_to_date(uint64_t last_index, uint64_t last_term) const;

  // Index of the first entry of `ents` whose term differs from ours (or that
  // we do not have); 0 if all of them match. Entries we compacted count as
  // matching: they were committed.
  uint64_t find_conflict(const std::vector<entry>& ents) const;

  // Appends entries, dropping our entries at ents.front().index and above.
  // Precondition: contiguous, ents.front().index in (committed, last_index()+1].
  void truncate_and_append(const std::vector<entry>& ents);

  // Entries [lo, hi) limited to max_bytes (at least one entry) and max_count.
  // False if lo is compacted (the caller needs a snapshot instead).
  bool slice(uint64_t lo, uint64_t hi, uint64_t max_bytes, uint64_t max_count,
             std::vector<entry>& out) const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  // Precondition: index <= last_index(); commit never decreases (no-op if lower).
  void commit_to(uint64_t index);
  void applied_to(uint64_t index);
  // Used on start-up only.
  void set_committed(uint64_t index) { committed_ = index; }
  void set_applied(uint64_t index) { applied_ = index; }

  // Committed entries neither applied nor handed out for applying, at most
  // max_bytes (at least one). Empty while a received snapshot is pending: that
  // snapshot must be applied first.
  std::vector<entry> next_committed_entries(uint64_t max_bytes) const;
  bool has_next_committed_entries() const;
  // Committed entries up to `index` have been handed out for applying.
  void accept_applying(uint64_t index) { applying_ = std::max(applying_, index); }

  // ---- unstable tail ----
  const std::vector<entry>& unstable_entries() const { return unstable_; }
  // The unstable entries not yet handed out for persisting.
  std::vector<entry> entries_to_persist() const;
  bool has_entries_to_persist() const;
  // All unstable entries have been handed out for persisting.
  void accept_persisting() { persisting_ = unstable_offset_ + unstable_.size() - 1; }
  const raft::snapshot* pending_snapshot() const {
    return pending_snapshot_ ? &*pending_snapshot_ : nullptr;
  }
  // Entries up to (index, term) are now on storage. Ignored if the unstable
  // tail no longer holds that exact entry (it was replaced meanwhile).
  void stable_to(uint64_t index, uint64_t term);
  // The pending snapshot at `index` is now on storage.
  void stable_snapshot_to(uint64_t index);
  // Last index known to be on storage (leaders count their own match with it).
  uint64_t stable_last_index() const { return unstable_offset_ - 1; }

  // Replaces the whole log with a snapshot received from the leader.
  void restore(raft::snapshot snap);

 private:
  const storage& store_;
  std::optional<raft::snapshot> pending_snapshot_;
  std::vector<entry> unstable_; // unstable_[k].index == unstable_offset_ + k
  uint64_t unstable_offset_ = 1;
  uint64_t persisting_ = 0; // last entry handed out for persisting (unstable or not)
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t applying_ = 0;   // last committed entry handed out for applying
};

} // namespace dsync::raft
