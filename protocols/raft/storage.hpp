// The narrow interface through which the Raft core reads stable state, and
// memory_storage, its in-memory implementation (tests, simulation).
//
// Division of labour (the etcd Storage / NuRaft log_store shape):
//   * The core only READS through `storage`. It never writes: every write
//     reaches the caller as part of a `ready` batch (core.hpp), and the caller
//     writes it to its storage implementation, then calls core::advance().
//   * Everything a storage returns must already be durable. The core treats
//     what `storage` returns as the stable prefix of its log and answers
//     peers on that basis (votes, append acknowledgements).
//
// Contract for an implementation (e.g. the WAL):
//   * Write order for one ready batch: (1) a received snapshot, which replaces
//     the whole log; (2) the entries, which overwrite any existing entries at
//     the same and higher indices (drop the old suffix first); (3) the hard
//     state; (4) a local compaction snapshot, which drops entries up to its
//     index but keeps the ones after it. When ready::must_sync is true, all of
//     this must be on disk (fsync) before any message in
//     ready::messages_after_append is sent and before advance().
//   * Crash atomicity: after a crash, storage must reflect a prefix of the
//     write sequence above (a torn tail entry is dropped, never half read).
//     Entries must be persisted no later than a hard state whose commit
//     covers them.
//   * Indices: entries are contiguous. first_index() = snapshot index + 1;
//     last_index() = index of the last entry, or the snapshot index if there
//     are none. The entry at first_index() - 1 is represented by the snapshot:
//     term(first_index() - 1) must return the snapshot's term.
//   * Errors are returned, never thrown, for the expected cases below; an
//     implementation that cannot read its own durable data (I/O error,
//     corruption) may throw, and the core lets the exception propagate: the
//     node must stop.
//   * Single-threaded use: the core calls it from one thread; a WAL that
//     writes from another thread must make reads see only completed writes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "protocols/raft/types.hpp"

namespace dsync::raft {

enum class storage_errc : uint8_t {
  ok = 0,
  compacted = 1,   // the index lies at or before the snapshot: read the snapshot instead
  unavailable = 2, // the index lies after last_index()
  snapshot_temporarily_unavailable = 3, // snapshot being produced; the core retries later
  out_of_date = 4, // (writes) snapshot older than what is stored
};
const char* to_string(storage_errc x);

// What a (re)starting core loads.
struct initial_state {
  hard_state hard;
  // Metadata of the newest snapshot: its index/term and the configuration in
  // force at that index. Index 0 / term 0 when no snapshot was ever taken;
  // then `config` is the bootstrap configuration (empty for a node that joins
  // an existing cluster and learns the membership from the leader).
  snapshot_metadata snapshot;
};

class storage {
 public:
  virtual ~storage() = default;

  virtual initial_state load_initial_state() const = 0;

  virtual uint64_t first_index() const = 0;
  virtual uint64_t last_index() const = 0;

  // Term of the entry at `index`, for index in [first_index() - 1, last_index()].
  // compacted if index < first_index() - 1, unavailable if index > last_index().
  virtual storage_errc term(uint64_t index, uint64_t& out) const = 0;

  // Entries [lo, hi), lo >= first_index(), hi <= last_index() + 1, stopping
  // early once `max_bytes` (entry_size_bytes) would be exceeded but always
  // returning at least one entry when lo < hi. `out` is cleared first.
  virtual storage_errc entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                               std::vector<entry>& out) const = 0;

  // The newest snapshot (metadata and data). Shared so that a snapshot being
  // sent to a follower in chunks stays alive and unchanged during the transfer.
  virtual storage_errc snapshot(std::shared_ptr<const raft::snapshot>& out) const = 0;
};

// In-memory storage. "Durable" here means "written into this object": the
// simulation models a crash by discarding the core and keeping this object.
// Not thread-safe.
class memory_storage final : public storage {
 public:
  // Empty storage with no configuration: a node that will join a cluster.
  memory_storage();
  // Bootstrap storage: the snapshot at index 0 carries the initial configuration.
  explicit memory_storage(configuration bootstrap);

  initial_state load_initial_state() const override;
  uint64_t first_index() const override;
  uint64_t last_index() const override;
  storage_errc term(uint64_t index, uint64_t& out) const override;
  storage_errc entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                       std::vector<entry>& out) const override;
  storage_errc snapshot(std::shared_ptr<const raft::snapshot>& out) const override;

  // ---- writes (called by the owner while handling a ready batch) ----

  void set_hard_state(const hard_state& hs);
  const hard_state& get_hard_state() const { return hard_; }

  // Appends contiguous entries; existing entries at entries.front().index and
  // above are replaced. Entries at or below the snapshot index are skipped.
  // Precondition: entries.front().index <= last_index() + 1 (else unavailable).
  storage_errc append(const std::vector<entry>& entries);

  // Installs a snapshot received from the leader: the whole log is replaced.
  // out_of_date if it is not newer than the stored snapshot.
  storage_errc apply_snapshot(raft::snapshot snap);

  // Local compaction: stores `snap` and drops entries up to snap.metadata.index,
  // keeping later entries. out_of_date if not newer than the stored snapshot,
  // unavailable if snap.metadata.index > last_index().
  storage_errc compact(raft::snapshot snap);

  // Every entry currently held (for checkers and tests).
  const std::vector<entry>& held_entries() const { return entries_; }

 private:
  hard_state hard_;
  std::shared_ptr<const raft::snapshot> snapshot_;
  std::vector<entry> entries_; // entries_[k].index == snapshot index + 1 + k
};

} // namespace dsync::raft
