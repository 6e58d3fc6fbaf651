// An in-memory file_system that models what survives a crash, for crash
// tests of the WAL (and for the cluster simulation, which can crash a node
// that uses a real wal_storage). Deterministic: randomness comes from the
// seed passed to crash().
//
// Durability model (the POSIX minimum, as ext4/xfs provide it):
//   * file data is durable up to the length at the file's last sync();
//     appends after it may be lost, or kept in part (a torn write);
//   * creations, renames and removals in a directory are durable after
//     sync_dir() of that directory; later ones may be lost, or a prefix of
//     them kept (journaled file systems apply metadata changes in order);
//   * create_dir() is durable at once.
// crash() applies the model: with tear = false exactly the durable state
// survives; with tear = true each file also keeps a random prefix of its
// unsynced bytes (sometimes with zeros in place of the last part, like a
// size update that reached the disk before the data) and each directory a
// random prefix of its unsynced changes.
// Not modelled: a later unsynced page surviving while an earlier one is lost.
//
// Handles opened before a crash throw on use. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "actors/storage/file_system.hpp"

namespace dsync::storage {

enum class sim_op : uint8_t { append, sync, sync_dir, rename, remove, create, truncate };

class sim_file_system final : public file_system,
                              public std::enable_shared_from_this<sim_file_system> {
 public:
  // file_system
  void create_dir(const std::string& dir) override;
  std::vector<std::string> list_dir(const std::string& dir) override;
  std::unique_ptr<writable_file> create_file(const std::string& path) override;
  std::unique_ptr<writable_file> open_for_append(const std::string& path) override;
  std::string read_file(const std::string& path) override;
  void rename(const std::string& from, const std::string& to) override;
  void remove(const std::string& path) override;
  void truncate(const std::string& path, uint64_t size) override;
  void sync_dir(const std::string& dir) override;

  // Loses what was not durable (see above).
  void crash(uint64_t seed, bool tear);

  // The (skip+1)-th next call of `op` fails with `err` (e.g. EIO, ENOSPC).
  // A failing append first writes half of its bytes, like a short write.
  void inject_fault(sim_op op, int err, unsigned skip = 0);

  // ---- inspection and tampering, for tests ----
  bool exists(const std::string& path) const;
  // Overwrites a file's contents (durably), creating it if needed.
  void set_contents(const std::string& path, const std::string& bytes);
  // Bytes appended to `path` since its last sync.
  uint64_t unsynced_bytes(const std::string& path) const;
  // Number of sync() calls on files (not directories) so far.
  uint64_t file_syncs() const;

 private:
  struct inode {
    std::string data;
    size_t synced = 0;
  };
  struct dir_change {
    std::string removed; // name removed (or renamed away), may be empty
    std::string added;   // name added (or renamed to), may be empty
    std::shared_ptr<inode> node;
  };
  class handle;

  void check_fault(sim_op op, const std::string& path); // mu_ held
  std::shared_ptr<inode> find(const std::string& path) const; // mu_ held; throws ENOENT
  void record_change(const std::string& dir, dir_change c);  // mu_ held

  mutable std::mutex mu_;
  std::set<std::string> dirs_;
  std::map<std::string, std::shared_ptr<inode>> live_;    // path -> file, as seen now
  std::map<std::string, std::shared_ptr<inode>> durable_; // path -> file, after a crash
  std::map<std::string, std::vector<dir_change>> pending_; // dir -> unsynced changes, in order
  struct fault {
    sim_op op;
    int err;
    unsigned skip;
  };
  std::vector<fault> faults_;
  uint64_t generation_ = 0;
  uint64_t file_syncs_ = 0;
};

} // namespace dsync::storage
