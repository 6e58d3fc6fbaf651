// The recovery rules of the WAL as pure functions: which snapshot to start
// from, and how the records of the retained segments rebuild the log on top
// of it. wal_storage (actors/storage/) reads the files and applies the plan.
//
// Why these rules are safe rests on the write discipline of wal_storage:
//   (W1) A snapshot file is durable (temp file, fsync, rename, fsync of the
//        directory) before its snapshot record is appended to the WAL. So a
//        snapshot record (or a checkpoint naming a snapshot) whose file is
//        missing means the file was lost: refuse.
//   (W2) The snapshot record may be lost in a crash (it is not synced with
//        the file). A snapshot file without a record in the log is the
//        unfinished tail of the write sequence: ignore it.
//   (W3) Older snapshot files and segments are deleted only once a newer
//        snapshot's record is durable, so the snapshot to fall back on in
//        (W2) still exists.
//   (W4) Segment k is deleted only once segment k+1 starts at or before
//        snapshot index + 1 (so every entry the log held when k+1 was created
//        is covered), oldest first. Replay therefore starts at the newest
//        segment that starts at or before the chosen snapshot's index + 1;
//        older ones (not yet deleted, or brought back by a crash that undid
//        their unlink) are covered by the snapshot. That segment's checkpoint
//        carries the hard state and the snapshot index of its time; the chosen
//        snapshot's record is in it or later, or its checkpoint names it.
//
// Replay invariant: with loaded snapshot s, the replayed entries are exactly
// the log's entries with index > s at every point of the record sequence.
// An entries record is replayed as memory_storage::append would have run it
// when it was written, i.e. against the snapshot of that moment (named by the
// segment's checkpoint and by later snapshot records, always <= s): entries
// at or below that snapshot are skipped, the first kept one cuts the log
// there (even if it is <= s), and of the result only entries > s are kept.
// A first kept index beyond the end of the log means entries are missing:
// refuse.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "protocols/raft/types.hpp"
#include "protocols/wal/format.hpp"

namespace dsync::wal {

// A snapshot named by the log: by a snapshot record or by a checkpoint.
struct snapshot_reference {
  uint64_t index = 0;
  uint64_t term = 0;
  bool from_checkpoint = false;
  raft::configuration config; // checkpoints only
  std::string where;          // "file offset N", for messages
};

// A snapshot file that decoded and verified.
struct snapshot_file_info {
  std::string name;
  raft::snapshot_metadata metadata;
};

struct snapshot_choice {
  bool ok = false;
  std::string error;
  // Index into `files` of the snapshot to load, or -1 for the implicit
  // snapshot at index 0 (no snapshot taken yet) whose configuration is the
  // bootstrap configuration recorded in a checkpoint: `bootstrap`.
  int chosen = -1;
  raft::snapshot_metadata bootstrap;
  // Indices into `files` that have no reference in the log (rule W2), newest first.
  std::vector<size_t> ignored;
};

// Picks the newest snapshot file that the log references with the same term.
// Fails if a reference and a file disagree on the term, if the log references
// a snapshot newer than the chosen one (its file is missing, rule W1), or if
// no snapshot at all matches the log.
snapshot_choice choose_snapshot(const std::vector<snapshot_file_info>& files,
                                const std::vector<snapshot_reference>& refs);

// Rebuilds hard state and entries from the records of the retained segments,
// in order, on top of the chosen snapshot.
class replayer {
 public:
  explicit replayer(raft::snapshot_metadata base);

  // Applies one record; returns an empty string, or what is inconsistent
  // (the caller prefixes the file and offset).
  std::string apply(const record& r);

  const raft::hard_state& hard() const { return hard_; }
  const raft::snapshot_metadata& base() const { return base_; }
  // Entries with index > base().index, contiguous from base().index + 1.
  std::deque<raft::entry>& entries() { return entries_; }
  uint64_t last_index() const { return base_.index + entries_.size(); }

 private:
  raft::snapshot_metadata base_;
  uint64_t current_base_; // the snapshot index when the record being replayed was written
  raft::hard_state hard_;
  std::deque<raft::entry> entries_;
};

} // namespace dsync::wal
