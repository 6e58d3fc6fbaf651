#include "actors/storage/sim_file_system.hpp"

#include <cerrno>
#include <cstring>
#include <random>

namespace dsync::storage {

namespace {

[[noreturn]] void fail(const char* call, const std::string& path, int err) {
  throw storage_error(std::string(call) + "(" + path + ") failed: " + std::strerror(err)
                        + " (simulated)",
                      err);
}

} // namespace

class sim_file_system::handle final : public writable_file {
 public:
  handle(std::shared_ptr<sim_file_system> fs, std::shared_ptr<inode> node, std::string path)
      : fs_(std::move(fs)), node_(std::move(node)), path_(std::move(path)),
        generation_(fs_->generation_) {}

  void append(std::string_view bytes) override {
    std::lock_guard<std::mutex> guard{fs_->mu_};
    check_alive();
    try {
      fs_->check_fault(sim_op::append, path_);
    } catch (...) {
      node_->data.append(bytes.data(), bytes.size() / 2);
      throw;
    }
    node_->data.append(bytes.data(), bytes.size());
  }

  void sync() override {
    std::lock_guard<std::mutex> guard{fs_->mu_};
    check_alive();
    fs_->check_fault(sim_op::sync, path_);
    node_->synced = node_->data.size();
    ++fs_->file_syncs_;
  }

  uint64_t size() const override {
    std::lock_guard<std::mutex> guard{fs_->mu_};
    return node_->data.size();
  }

 private:
  void check_alive() const {
    if (generation_ != fs_->generation_)
      throw storage_error("file handle of " + path_ + " used after a simulated crash", EBADF);
  }

  std::shared_ptr<sim_file_system> fs_;
  std::shared_ptr<inode> node_;
  std::string path_;
  uint64_t generation_;
};

void sim_file_system::check_fault(sim_op op, const std::string& path) {
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->op != op)
      continue;
    if (it->skip > 0) {
      --it->skip;
      continue;
    }
    int err = it->err;
    faults_.erase(it);
    static const char* names[] = {"write", "fdatasync", "fsync", "rename", "unlink", "open",
                                  "ftruncate"};
    fail(names[static_cast<int>(op)], path, err);
  }
}

std::shared_ptr<sim_file_system::inode> sim_file_system::find(const std::string& path) const {
  auto it = live_.find(path);
  if (it == live_.end())
    fail("open", path, ENOENT);
  return it->second;
}

void sim_file_system::record_change(const std::string& dir, dir_change c) {
  pending_[dir].push_back(std::move(c));
}

void sim_file_system::create_dir(const std::string& dir) {
  std::lock_guard<std::mutex> guard{mu_};
  dirs_.insert(dir);
}

std::vector<std::string> sim_file_system::list_dir(const std::string& dir) {
  std::lock_guard<std::mutex> guard{mu_};
  if (dirs_.count(dir) == 0)
    fail("opendir", dir, ENOENT);
  std::vector<std::string> out;
  for (const auto& [path, node] : live_)
    if (parent_of(path) == dir)
      out.push_back(path.substr(dir.size() + 1));
  return out;
}

std::unique_ptr<writable_file> sim_file_system::create_file(const std::string& path) {
  std::lock_guard<std::mutex> guard{mu_};
  auto dir = parent_of(path);
  if (dirs_.count(dir) == 0)
    fail("open", path, ENOENT);
  check_fault(sim_op::create, path);
  auto it = live_.find(path);
  std::shared_ptr<inode> node;
  if (it != live_.end()) {
    node = it->second;
    node->data.clear();
    node->synced = 0;
  } else {
    node = std::make_shared<inode>();
    live_[path] = node;
    record_change(dir, dir_change{"", path, node});
  }
  return std::make_unique<handle>(shared_from_this(), node, path);
}

std::unique_ptr<writable_file> sim_file_system::open_for_append(const std::string& path) {
  std::lock_guard<std::mutex> guard{mu_};
  return std::make_unique<handle>(shared_from_this(), find(path), path);
}

std::string sim_file_system::read_file(const std::string& path) {
  std::lock_guard<std::mutex> guard{mu_};
  return find(path)->data;
}

void sim_file_system::rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> guard{mu_};
  auto node = find(from);
  check_fault(sim_op::rename, from);
  if (parent_of(from) != parent_of(to))
    fail("rename", from + " -> " + to, EXDEV); // not needed by the WAL
  live_.erase(from);
  live_[to] = node;
  record_change(parent_of(to), dir_change{from, to, node});
}

void sim_file_system::remove(const std::string& path) {
  std::lock_guard<std::mutex> guard{mu_};
  auto node = find(path);
  check_fault(sim_op::remove, path);
  live_.erase(path);
  record_change(parent_of(path), dir_change{path, "", node});
}

void sim_file_system::truncate(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> guard{mu_};
  auto node = find(path);
  check_fault(sim_op::truncate, path);
  node->data.resize(static_cast<size_t>(size));
  node->synced = node->data.size();
}

void sim_file_system::sync_dir(const std::string& dir) {
  std::lock_guard<std::mutex> guard{mu_};
  if (dirs_.count(dir) == 0)
    fail("open", dir, ENOENT);
  check_fault(sim_op::sync_dir, dir);
  for (auto it = durable_.begin(); it != durable_.end();)
    it = parent_of(it->first) == dir ? durable_.erase(it) : std::next(it);
  for (const auto& [path, node] : live_)
    if (parent_of(path) == dir)
      durable_[path] = node;
  pending_.erase(dir);
}

void sim_file_system::crash(uint64_t seed, bool tear) {
  std::lock_guard<std::mutex> guard{mu_};
  std::mt19937_64 rng{seed};
  auto below = [&rng](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  if (tear) {
    for (auto& [dir, changes] : pending_) {
      auto keep = below(changes.size() + 1);
      for (size_t i = 0; i < keep; ++i) {
        const auto& c = changes[i];
        if (!c.removed.empty())
          durable_.erase(c.removed);
        if (!c.added.empty())
          durable_[c.added] = c.node;
      }
    }
  }
  pending_.clear();
  live_ = durable_;
  for (auto& [path, node] : live_) {
    size_t unsynced = node->data.size() - node->synced;
    size_t kept = tear ? static_cast<size_t>(below(unsynced + 1)) : 0;
    node->data.resize(node->synced + kept);
    if (kept > 0 && below(4) == 0) {
      size_t zeros = static_cast<size_t>(below(kept) + 1);
      std::memset(node->data.data() + node->data.size() - zeros, 0, zeros);
    }
    node->synced = node->data.size();
  }
  faults_.clear();
  ++generation_;
}

void sim_file_system::inject_fault(sim_op op, int err, unsigned skip) {
  std::lock_guard<std::mutex> guard{mu_};
  faults_.push_back(fault{op, err, skip});
}

bool sim_file_system::exists(const std::string& path) const {
  std::lock_guard<std::mutex> guard{mu_};
  return live_.count(path) != 0;
}

void sim_file_system::set_contents(const std::string& path, const std::string& bytes) {
  std::lock_guard<std::mutex> guard{mu_};
  auto& node = live_[path];
  if (!node)
    node = std::make_shared<inode>();
  node->data = bytes;
  node->synced = bytes.size();
  durable_[path] = node;
}

uint64_t sim_file_system::unsynced_bytes(const std::string& path) const {
  std::lock_guard<std::mutex> guard{mu_};
  auto node = find(path);
  return node->data.size() - node->synced;
}

uint64_t sim_file_system::file_syncs() const {
  std::lock_guard<std::mutex> guard{mu_};
  return file_syncs_;
}

} // namespace dsync::storage
