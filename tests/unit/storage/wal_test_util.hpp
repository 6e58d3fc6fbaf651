// Helpers for the wal_storage tests: a temporary directory per test, entry
// builders, a comparison of two raft::storage views, and a random workload
// that drives memory_storage and wal_storage with the same writes.
#pragma once

#include <doctest/doctest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/storage/wal_storage.hpp"
#include "protocols/raft/storage.hpp"
#include "protocols/wal/format.hpp"

namespace dsync::storage::test {

namespace fs = std::filesystem;

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at the end.
class temp_dir {
 public:
  temp_dir() {
    auto pattern = (fs::temp_directory_path() / "dsync-wal-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  // A subdirectory name (not created) for a WAL directory.
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// File names in `dir` matching a predicate, sorted.
inline std::vector<std::string> files_in(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0)
      out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<std::string> segments_in(const std::string& dir) { return files_in(dir, "wal-"); }
inline std::vector<std::string> snapshots_in(const std::string& dir) { return files_in(dir, "snap-"); }

inline raft::entry make_entry(uint64_t index, uint64_t term, std::string data = {}) {
  raft::entry e;
  e.index = index;
  e.term = term;
  e.data = data.empty() ? "cmd-" + std::to_string(index) + "-t" + std::to_string(term) : data;
  return e;
}

inline std::vector<raft::entry> make_entries(uint64_t first, uint64_t last, uint64_t term) {
  std::vector<raft::entry> out;
  for (uint64_t i = first; i <= last; ++i)
    out.push_back(make_entry(i, term));
  return out;
}

inline raft::configuration three_voters() {
  raft::configuration c;
  c.voters = {"node-1", "node-2", "node-3"};
  return c;
}

inline raft::snapshot make_snapshot(uint64_t index, uint64_t term, std::string data = {}) {
  raft::snapshot s;
  s.metadata.index = index;
  s.metadata.term = term;
  s.metadata.config = three_voters();
  s.data = data.empty() ? "state@" + std::to_string(index) : data;
  return s;
}

// Empty string if `a` and `b` answer every read the same, else the first difference.
inline std::string diff(const raft::storage& a, const raft::storage& b) {
  auto ia = a.load_initial_state();
  auto ib = b.load_initial_state();
  if (ia.hard != ib.hard)
    return "hard state: term " + std::to_string(ia.hard.term) + "/" + std::to_string(ib.hard.term)
           + " vote '" + ia.hard.vote + "'/'" + ib.hard.vote + "' commit "
           + std::to_string(ia.hard.commit) + "/" + std::to_string(ib.hard.commit);
  if (ia.snapshot.index != ib.snapshot.index || ia.snapshot.term != ib.snapshot.term
      || ia.snapshot.config != ib.snapshot.config)
    return "snapshot metadata: index " + std::to_string(ia.snapshot.index) + "/"
           + std::to_string(ib.snapshot.index);
  if (a.first_index() != b.first_index() || a.last_index() != b.last_index())
    return "index range [" + std::to_string(a.first_index()) + ", " + std::to_string(a.last_index())
           + "] vs [" + std::to_string(b.first_index()) + ", " + std::to_string(b.last_index()) + "]";
  std::shared_ptr<const raft::snapshot> sa;
  std::shared_ptr<const raft::snapshot> sb;
  a.snapshot(sa);
  b.snapshot(sb);
  if (sa->data != sb->data)
    return "snapshot data";
  uint64_t first = a.first_index();
  uint64_t last = a.last_index();
  for (uint64_t i = (first >= 3 ? first - 3 : 0); i <= last + 2; ++i) {
    uint64_t ta = 0;
    uint64_t tb = 0;
    auto ca = a.term(i, ta);
    auto cb = b.term(i, tb);
    if (ca != cb || (ca == raft::storage_errc::ok && ta != tb))
      return "term(" + std::to_string(i) + ")";
  }
  std::vector<raft::entry> ea;
  std::vector<raft::entry> eb;
  if (a.entries(first, last + 1, UINT64_MAX, ea) != b.entries(first, last + 1, UINT64_MAX, eb)
      || ea != eb)
    return "entries [" + std::to_string(first) + ", " + std::to_string(last + 1) + ")";
  for (uint64_t max_bytes : {uint64_t{0}, uint64_t{100}}) {
    auto ca = a.entries(first, last + 1, max_bytes, ea);
    auto cb = b.entries(first, last + 1, max_bytes, eb);
    if (ca != cb || ea != eb)
      return "entries with max_bytes " + std::to_string(max_bytes);
  }
  if (first > 1 && a.entries(first - 1, last + 1, UINT64_MAX, ea) != b.entries(first - 1, last + 1, UINT64_MAX, eb))
    return "entries below first_index";
  if (a.entries(first, last + 2, UINT64_MAX, ea) != b.entries(first, last + 2, UINT64_MAX, eb))
    return "entries beyond last_index";
  return {};
}

// One random write, applied to both storages (memory first; the wal must
// return the same code). Covers: appends at the end, overwrites of a suffix,
// appends that start at or below the snapshot, appends past the end
// (refused), hard states, received snapshots, local compactions, and
// refused (out of date / unavailable) snapshots.
class workload {
 public:
  explicit workload(uint64_t seed) : rng_(seed) {}

  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // Applies one random write to `model` and the same call to `wal`;
  // returns a description of the op.
  template <class Wal>
  std::string step(raft::memory_storage& model, Wal&& wal) {
    uint64_t first = model.first_index();
    uint64_t last = model.last_index();
    auto roll = below(100);
    if (roll < 55) {
      // Append: mostly at the end, sometimes overwriting a suffix, sometimes
      // starting below the snapshot, rarely past the end.
      uint64_t start = last + 1;
      auto kind = below(10);
      if (kind < 3 && last >= first)
        start = first + below(last - first + 1);
      else if (kind == 3 && first > 2)
        start = first - 1 - below(std::min<uint64_t>(first - 1, 3));
      else if (kind == 4 && below(4) == 0)
        start = last + 2;
      if (start == 0)
        start = 1;
      uint64_t n = 1 + below(below(4) == 0 ? 40 : 4);
      if (term_ < 1 || below(6) == 0)
        ++term_;
      std::vector<raft::entry> es;
      for (uint64_t i = 0; i < n; ++i) {
        std::string data(below(4) == 0 ? below(600) : below(40), '\0');
        for (auto& c : data)
          c = static_cast<char>(rng_());
        es.push_back(make_entry(start + i, term_, data.empty() ? "x" : data));
      }
      auto expect = model.append(es);
      auto got = wal.append(es);
      CHECK(expect == got);
      return "append [" + std::to_string(start) + ", " + std::to_string(start + n) + ") t"
             + std::to_string(term_);
    }
    if (roll < 80) {
      raft::hard_state hs;
      hs.term = term_ + below(2);
      hs.vote = below(3) == 0 ? "" : "node-" + std::to_string(1 + below(3));
      hs.commit = below(last + 1);
      model.set_hard_state(hs);
      wal.set_hard_state(hs);
      return "hard state t" + std::to_string(hs.term);
    }
    if (roll < 92) {
      uint64_t snap = model.first_index() - 1;
      uint64_t index = last > snap ? snap + 1 + below(last - snap) : snap + below(2);
      if (below(8) == 0)
        index = snap; // out of date
      uint64_t t = 0;
      if (model.term(index, t) != raft::storage_errc::ok)
        t = term_;
      auto s = make_snapshot(index, t, "compacted@" + std::to_string(index) + std::string(below(300), 'z'));
      auto expect = model.compact(s);
      auto got = wal.compact(s);
      CHECK(expect == got);
      return "compact " + std::to_string(index);
    }
    uint64_t snap = model.first_index() - 1;
    // Usually ahead of the log (a follower far behind), sometimes inside it,
    // sometimes out of date.
    uint64_t index = last + 1 + below(30);
    if (below(3) == 0)
      index = snap + below(last - snap + 1);
    ++term_;
    auto s = make_snapshot(index, term_, "installed@" + std::to_string(index));
    auto expect = model.apply_snapshot(s);
    auto got = wal.apply_snapshot(s);
    CHECK(expect == got);
    return "apply_snapshot " + std::to_string(index);
  }

 private:
  std::mt19937_64 rng_;
  uint64_t term_ = 0;
};

} // namespace dsync::storage::test
