// The durable log_store: a write-ahead log directory per Raft group (wal_storage).
#pragma once

#include <stdexcept>
#include <string>

#include "actors/raft/log_store.hpp"
#include "actors/storage/wal_storage.hpp"

namespace dsync {

class wal_log_store final : public log_store {
 public:
  // Opens (recovering) or creates the log in `dir`; throws dsync::storage::storage_error when the
  // directory cannot be trusted (the message names the file and offset).
  wal_log_store(const std::string& dir, const raft::configuration& bootstrap)
    : wal_(dir, dsync::storage::wal_options{64ull << 20, bootstrap, nullptr}) {}

  raft::initial_state load_initial_state() const override { return wal_.load_initial_state(); }
  uint64_t first_index() const override { return wal_.first_index(); }
  uint64_t last_index() const override { return wal_.last_index(); }
  raft::storage_errc term(uint64_t index, uint64_t& out) const override { return wal_.term(index, out); }
  raft::storage_errc entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                             std::vector<raft::entry>& out) const override {
    return wal_.entries(lo, hi, max_bytes, out);
  }
  raft::storage_errc snapshot(std::shared_ptr<const raft::snapshot>& out) const override {
    return wal_.snapshot(out);
  }

  // The order of storage.hpp: received snapshot, entries, hard state, local compaction.
  void write(const raft::ready& rd) override {
    if (rd.has_snapshot) expect(wal_.apply_snapshot(rd.snapshot), "installing a snapshot");
    if (!rd.entries.empty()) expect(wal_.append(rd.entries), "appending entries");
    if (rd.has_hard_state) wal_.set_hard_state(rd.hard);
    if (rd.has_compaction) expect(wal_.compact(rd.compaction), "compacting the log");
  }
  void sync() override { wal_.sync(); }

  const dsync::storage::recovery_report& recovery() const { return wal_.recovery(); }

 private:
  static void expect(raft::storage_errc e, const char* what) {
    if (e != raft::storage_errc::ok) throw std::logic_error(std::string{what} + " failed: " + raft::to_string(e));
  }
  dsync::storage::wal_storage wal_;
};

}  // namespace dsync
