// The few file operations the WAL needs, behind an interface so that tests
// can swap the real (POSIX) file system for sim_file_system, which models
// what a crash keeps and injects I/O errors.
//
// Errors: every operation throws storage_error (with the path, the call and
// strerror) when the OS reports one; nothing is retried. After a failed
// sync() the state of the file's pages is unknown (Linux may already have
// dropped the dirty pages and cleared the error), so callers must not retry
// and carry on: wal_storage turns any error into a permanent failure.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dsync::storage {

class storage_error : public std::runtime_error {
 public:
  // sys_errno: the errno of the failing call, 0 for a refusal to open
  // (corruption, missing file) or a failure reported earlier.
  explicit storage_error(const std::string& what, int sys_errno = 0)
      : std::runtime_error(what), errno_(sys_errno) {}
  int sys_errno() const { return errno_; }

 private:
  int errno_;
};

// A file open for appending. append() and sync() may run concurrently from
// two threads (sync covers at least what append()s that returned before it
// began); size() is for the appending thread.
class writable_file {
 public:
  virtual ~writable_file() = default;
  virtual void append(std::string_view bytes) = 0;
  // fdatasync(2): the data, and the size, reach stable storage.
  virtual void sync() = 0;
  // Bytes in the file: its size when opened plus everything appended.
  virtual uint64_t size() const = 0;
};

class file_system {
 public:
  virtual ~file_system() = default;
  // Creates `dir` (one level) if missing; the new entry is made durable.
  virtual void create_dir(const std::string& dir) = 0;
  // Names (not paths) of the entries in `dir`, without "." and "..".
  virtual std::vector<std::string> list_dir(const std::string& dir) = 0;
  // Creates or truncates `path` and opens it for appending.
  virtual std::unique_ptr<writable_file> create_file(const std::string& path) = 0;
  // Opens an existing file for appending at its end.
  virtual std::unique_ptr<writable_file> open_for_append(const std::string& path) = 0;
  virtual std::string read_file(const std::string& path) = 0;
  // rename(2): atomically replaces `to`. Durable after sync_dir().
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // unlink(2). Durable after sync_dir().
  virtual void remove(const std::string& path) = 0;
  // Cuts `path` to `size` bytes and syncs it.
  virtual void truncate(const std::string& path, uint64_t size) = 0;
  // fsync(2) of the directory: creations, renames and removals in it become durable.
  virtual void sync_dir(const std::string& dir) = 0;
};

// The real file system (POSIX calls). Shared and stateless.
std::shared_ptr<file_system> posix_file_system();

// The directory part of a path ("." for a bare name, "/" for a file at the root).
std::string parent_of(const std::string& path);

} // namespace dsync::storage
