// wal_storage: the durable raft::storage. A write-ahead log of segment files
// plus snapshot files in one directory (format: protocols/wal/format.hpp;
// recovery rules: protocols/wal/recovery.hpp).
//
// ---- Durability points ----------------------------------------------------------
//   * set_hard_state / append / apply_snapshot / compact write to the OS (page
//     cache) and return; they mirror memory_storage's write API and its return
//     codes. Nothing they write to the log is durable until sync().
//   * sync() makes durable every write that returned before sync() was
//     called: one fdatasync of the current segment however many records and
//     batches were written (group commit). The caller writes a whole ready
//     batch (or several), calls sync() once, and only then sends
//     messages_after_append and calls core::advance().
//   * apply_snapshot / compact also write the snapshot file, and that file is
//     durable when they return (temp file, fsync, rename, fsync of the
//     directory) because recovery must be able to trust that a snapshot named
//     by the log exists. The log record that names it becomes durable with
//     the next sync(). These two calls therefore fsync; they are rare.
//   * Rolling to a new segment (at segment_size_bytes) fsyncs the finished
//     segment and creates the next one durably; a write that rolls pays for it.
//   * Old segments and snapshot files are deleted by sync() once a newer
//     snapshot's record is durable and covers them. Destruction closes the
//     files without syncing: call sync() first if you mean to keep writes.
//
// ---- Reads and memory --------------------------------------------------------------
// Reads (term, entries, ...) are served from memory and never touch the disk.
// They reflect every write that returned, synced or not, exactly as
// memory_storage would; after sync() that is also what is on disk. Memory:
// the entries after the newest snapshot (each entry's data plus ~80 bytes of
// bookkeeping), plus the newest snapshot's data, as memory_storage holds
// them. The caller bounds it by compacting (core's compaction policy).
//
// ---- Threads -------------------------------------------------------------------------
//   * Reads (load_initial_state, first_index, last_index, term, entries,
//     snapshot, get_hard_state, stats, recovery, dir): any thread, concurrently
//     with each other, with writes and with sync().
//   * Writes (set_hard_state, append, apply_snapshot, compact): one thread,
//     in the order of the ready batch. (They are serialized internally, so a
//     second writer would not corrupt anything, but the order would be
//     arbitrary.)
//   * sync(): any thread, concurrently with reads and writes; concurrent
//     sync() calls are serialized. A write running concurrently with a sync()
//     is made durable by that sync() or by the next one.
// Two setups that fit: (a) the Raft actor writes each ready batch and a
// storage thread calls sync() and then reports back; (b) a storage actor does
// writes and sync() while the Raft actor reads.
//
// ---- Errors --------------------------------------------------------------------------
//   * Construction (recovery) throws storage_error when the directory cannot
//     be trusted: a corrupt record followed by valid ones, a torn record in a
//     segment that is not the last, a missing segment in the sequence, a
//     snapshot file whose checksum fails, a snapshot named by the log whose
//     file is missing, a gap in the entries. The message names the file, the
//     offset and what is wrong. It never drops durable data silently; what it
//     drops (a torn tail, a snapshot file the log does not name) is listed in
//     recovery().notes.
//   * Any I/O error (ENOSPC on write, EIO on fsync, ...) throws storage_error
//     and puts the object in a failed state: every later write and sync()
//     throws, naming the first error. The node must stop: after a failed
//     fsync the OS may have dropped the dirty pages, so retrying would lie.
//     Reads keep answering from memory.
//   * Programming errors (non-contiguous entries, an entry larger than
//     max_record_payload_bytes) throw std::invalid_argument and write nothing.
//   * Expected refusals are returned as storage_errc, as memory_storage does.
//
// ---- Recovery (construction) --------------------------------------------------------
// Rules and why they are safe: protocols/wal/recovery.hpp. In short: every
// snapshot file must verify; the newest one the log names is loaded (one the
// log does not name was written just before a crash and is removed); the
// segments must form an unbroken sequence; each segment is scanned
// (protocols/wal/format.hpp) and only the last may end in a torn record,
// which is cut off; the records are replayed from the newest segment that
// starts at or before the snapshot's index + 1 (older ones are covered and
// are deleted by the next sync()); the entries must be contiguous.
//
// ---- Directory layout -------------------------------------------------------------
//   wal-<seq>-<first index>.log   segments, seq 1, 2, 3, ... without gaps
//   snap-<index>.snap             snapshot files (normally one; two between a
//                                 compaction and the sync() that retires the old one)
//   *.tmp                         being written; removed by recovery
// The directory belongs to one wal_storage at a time (no lock file is taken).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "actors/storage/file_system.hpp"
#include "protocols/wal/format.hpp"
#include "protocols/raft/storage.hpp"

namespace dsync::storage {

struct wal_options {
  // A segment is closed and the next one started once a write would take it
  // past this size (a single record larger than it gets a segment of its
  // own). At least 4096.
  uint64_t segment_size_bytes = 64ull << 20;
  // Written into the first segment of an empty directory: the configuration
  // of the implicit snapshot at index 0 (empty for a node that joins an
  // existing cluster). Ignored when the directory already holds a log.
  raft::configuration bootstrap;
  // Null: the real file system.
  std::shared_ptr<file_system> fs;
};

// What recovery found and did.
struct recovery_report {
  bool created = false;      // the directory held no log; a new one was started
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  uint64_t segments = 0;     // segments replayed
  uint64_t records = 0;      // records replayed
  uint64_t entries = 0;      // entries held after recovery
  uint64_t dropped_bytes = 0; // torn tail cut off the last segment
  // One line per thing dropped, removed or ignored, e.g.
  // "wal-...log: dropped 37 bytes at offset 4096 (torn tail: incomplete record ...)".
  std::vector<std::string> notes;
};

// Counters since construction, for metrics. Consistent with each other only
// roughly (read without stopping writers).
struct wal_stats {
  uint64_t wal_bytes_written = 0;      // record bytes appended to segments
  uint64_t snapshot_bytes_written = 0; // snapshot file bytes
  uint64_t records_written = 0;
  uint64_t syncs = 0;                  // sync() calls that had something to sync
  uint64_t records_synced = 0;         // records made durable by those syncs
  uint64_t last_sync_records = 0;      // records made durable by the latest one
  uint64_t max_sync_records = 0;       // most records made durable by one sync()
  uint64_t fsyncs = 0;                 // every fsync/fdatasync, including rolls, snapshots, dirs
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
  uint64_t snapshots_written = 0;
  uint64_t snapshots_deleted = 0;
};

class wal_storage final : public raft::storage {
 public:
  // Opens (recovering) or creates the log in `dir`, creating `dir` itself
  // (one level) if missing. Throws storage_error (see Errors above) and
  // std::invalid_argument for bad options.
  explicit wal_storage(std::string dir, wal_options opts = {});
  ~wal_storage() override;
  wal_storage(const wal_storage&) = delete;
  wal_storage& operator=(const wal_storage&) = delete;

  // ---- raft::storage (reads, any thread) ----
  raft::initial_state load_initial_state() const override;
  uint64_t first_index() const override;
  uint64_t last_index() const override;
  raft::storage_errc term(uint64_t index, uint64_t& out) const override;
  raft::storage_errc entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                             std::vector<raft::entry>& out) const override;
  raft::storage_errc snapshot(std::shared_ptr<const raft::snapshot>& out) const override;
  raft::hard_state get_hard_state() const; // a copy (memory_storage returns a reference)

  // ---- writes (one thread; semantics and return codes of memory_storage) ----

  // Writes nothing if `hs` equals the current hard state.
  void set_hard_state(const raft::hard_state& hs);
  // Entries must be contiguous; those at or below the snapshot index are
  // skipped; the rest replace the log from their first index on.
  // unavailable if entries.front().index > last_index() + 1.
  raft::storage_errc append(const std::vector<raft::entry>& entries);
  // A snapshot received from the leader: replaces the whole log.
  // out_of_date if not newer than the stored snapshot.
  raft::storage_errc apply_snapshot(raft::snapshot snap);
  // A local snapshot: drops entries up to its index, keeps the later ones.
  // out_of_date if not newer than the stored snapshot; unavailable if its
  // index is beyond last_index().
  raft::storage_errc compact(raft::snapshot snap);

  // ---- durability (any thread) ----
  void sync();

  // ---- introspection (any thread) ----
  const recovery_report& recovery() const { return report_; }
  wal_stats stats() const;
  const std::string& dir() const { return dir_; }

 private:
  struct segment_info {
    uint64_t seq = 0;
    uint64_t first_index = 0;
    std::string name;
  };

  void recover();
  void start_new_log();
  [[noreturn]] void refuse(const std::string& what) const;
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Writer side (write_mutex_ held).
  void check_failed() const;
  [[noreturn]] void fail(const storage_error& e);
  // Queues a record, first rolling to a new segment if it would overfill
  // the current one; last_index_before is the log's last index before it.
  void emit(std::string&& record, uint64_t last_index_before);
  // Hands the queued records to the OS (one write).
  void flush();
  void roll(uint64_t next_first_index);
  std::shared_ptr<writable_file> create_segment(uint64_t seq, uint64_t first_index,
                                                const raft::hard_state& hard,
                                                const raft::snapshot_metadata& snap);
  void write_snapshot_file(const raft::snapshot& s);
  // Writes the snapshot file and its log record (writer side, write_mutex_ held), then
  // makes it the view's snapshot, dropping the first `dropped_entries` entries.
  void log_snapshot(raft::snapshot snap, wal::snapshot_kind kind, uint64_t dropped_entries);

  const std::string dir_;
  const wal_options opts_;
  const std::shared_ptr<file_system> fs_;
  recovery_report report_;

  // The in-memory view. Readers take view_mutex_ shared. Writers hold
  // write_mutex_ and read these freely (they are the only ones to change
  // them), and take view_mutex_ exclusively to change them.
  mutable std::shared_mutex view_mutex_;
  raft::hard_state hard_;
  std::shared_ptr<const raft::snapshot> snapshot_;
  std::deque<raft::entry> entries_; // entries_[k].index == snapshot index + 1 + k

  // Serializes writers (whole calls).
  std::mutex write_mutex_;
  // Records written but not yet handed to the OS: collected during one write
  // call so that it costs one write(2) per segment.
  std::string pending_;
  size_t pending_records_ = 0;
  uint64_t segment_data_records_ = 0; // records after the checkpoint in the current segment
  uint64_t next_seq_ = 1;             // seq of the next segment

  // State shared by the writer and sync(), under io_mutex_ (never held
  // across an fsync that sync() does).
  mutable std::mutex io_mutex_;
  std::vector<segment_info> segments_; // oldest first; back() is being written
  std::shared_ptr<writable_file> current_;
  std::vector<uint64_t> snapshot_files_; // indices of snapshot files on disk, ascending
  uint64_t logged_snapshot_index_ = 0;  // newest snapshot whose record is in the log
  std::string failure_;                 // first error; non-empty = failed
  wal_stats stats_;

  // Serializes sync() calls.
  std::mutex sync_mutex_;
  uint64_t synced_records_ = 0; // stats_.records_written covered by syncs (sync_mutex_)
};

} // namespace dsync::storage
