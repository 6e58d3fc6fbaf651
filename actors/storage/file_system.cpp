#include "actors/storage/file_system.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dsync::storage {

namespace {

[[noreturn]] void fail(const std::string& call, const std::string& path, int err) {
  throw storage_error(call + "(" + path + ") failed: " + std::strerror(err), err);
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

class posix_file final : public writable_file {
 public:
  posix_file(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~posix_file() override { ::close(fd_); }

  void append(std::string_view bytes) override {
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        fail("write", path_, errno);
      }
      // A short write (e.g. the disk filled up mid-way) is retried: the
      // next call reports the error.
      p += n;
      left -= static_cast<size_t>(n);
      size_ += static_cast<uint64_t>(n);
    }
  }

  void sync() override {
    if (::fdatasync(fd_) != 0)
      fail("fdatasync", path_, errno);
  }

  uint64_t size() const override { return size_; }

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
};

class posix_fs final : public file_system {
 public:
  void create_dir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) == 0) {
      sync_dir(parent_of(dir));
      return;
    }
    if (errno != EEXIST)
      fail("mkdir", dir, errno);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
      fail("stat", dir, errno);
    if (!S_ISDIR(st.st_mode))
      throw storage_error(dir + " exists and is not a directory", ENOTDIR);
  }

  std::vector<std::string> list_dir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
      fail("opendir", dir, errno);
    std::vector<std::string> out;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..")
        out.push_back(std::move(name));
      errno = 0;
    }
    int err = errno;
    ::closedir(d);
    if (err != 0)
      fail("readdir", dir, err);
    return out;
  }

  std::unique_ptr<writable_file> create_file(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
      fail("open", path, errno);
    return std::make_unique<posix_file>(path, fd, 0);
  }

  std::unique_ptr<writable_file> open_for_append(const std::string& path) override {
    fd_guard fd{::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC)};
    if (fd.get() < 0)
      fail("open", path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      fail("fstat", path, errno);
    return std::make_unique<posix_file>(path, fd.release(), static_cast<uint64_t>(st.st_size));
  }

  std::string read_file(const std::string& path) override {
    fd_guard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (fd.get() < 0)
      fail("open", path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      fail("fstat", path, errno);
    std::string out;
    out.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (true) {
      if (got == out.size())
        out.resize(out.size() + 65536); // the file may have grown since fstat
      ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        fail("read", path, errno);
      }
      if (n == 0)
        break;
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  void rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      fail("rename", from + " -> " + to, errno);
  }

  void remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0)
      fail("unlink", path, errno);
  }

  void truncate(const std::string& path, uint64_t size) override {
    fd_guard fd{::open(path.c_str(), O_WRONLY | O_CLOEXEC)};
    if (fd.get() < 0)
      fail("open", path, errno);
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
      fail("ftruncate", path, errno);
    if (::fsync(fd.get()) != 0)
      fail("fsync", path, errno);
  }

  void sync_dir(const std::string& dir) override {
    fd_guard fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (fd.get() < 0)
      fail("open", dir, errno);
    if (::fsync(fd.get()) != 0)
      fail("fsync", dir, errno);
  }
};

} // namespace

std::string parent_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

std::shared_ptr<file_system> posix_file_system() {
  static auto fs = std::make_shared<posix_fs>();
  return fs;
}

} // namespace dsync::storage
