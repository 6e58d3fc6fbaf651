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

}  // namespace dsync
