// The durable side of a Raft group: the core reads through raft::storage; the group
// actor writes each ready batch with write() on its own thread and makes it durable
// with sync(), which runs on a storage thread so that fsync never stalls message
// handling. sync() may run concurrently with reads (term, entries, ...) but never with
// write(): the actor takes no new ready batch while a sync is in flight.
#pragma once

#include "protocols/raft/core.hpp"
#include "protocols/raft/storage.hpp"

namespace dsync {

class log_store : public raft::storage {
 public:
  // Writes what `rd` asks to persist, in the order storage.hpp prescribes, without fsync.
  virtual void write(const raft::ready& rd) = 0;
  // Makes everything written so far durable. Throws on an I/O error: the node must stop.
  virtual void sync() = 0;
};

// memory_storage behind the log_store interface: for tests and DATA_DIR-less runs.
class memory_log_store final : public log_store {
 public:
  explicit memory_log_store(raft::configuration bootstrap) : mem_(std::move(bootstrap)) {}
  raft::initial_state load_initial_state() const override { return mem_.load_initial_state(); }
  uint64_t first_index() const override { return mem_.first_index(); }
  uint64_t last_index() const override { return mem_.last_index(); }
  raft::storage_errc term(uint64_t index, uint64_t& out) const override { return mem_.term(index, out); }
  raft::storage_errc entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                             std::vector<raft::entry>& out) const override {
    return mem_.entries(lo, hi, max_bytes, out);
  }
  raft::storage_errc snapshot(std::shared_ptr<const raft::snapshot>& out) const override {
    return mem_.snapshot(out);
  }
  void write(const raft::ready& rd) override { raft::persist_ready(mem_, rd); }
  void sync() override {}

 private:
  raft::memory_storage mem_;
};

}  // namespace dsync
