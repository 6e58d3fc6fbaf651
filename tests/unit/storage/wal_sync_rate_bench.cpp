// A measurement, not a test: how many appends + syncs per second this
// machine's disk gives, with and without group commit. Skipped by default;
// `ctest -L perf -R wal_sync_rate` runs it, or from a Release build:
//   dsync-unit-tests -tc='wal sync rate*' --no-skip
#include "actors/storage/wal_storage.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "tests/unit/storage/wal_test_util.hpp"

using namespace dsync;
using namespace dsync::storage;
using namespace dsync::storage::test;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

} // namespace

TEST_CASE("wal sync rate: appends and syncs per second" * doctest::skip()) {
  constexpr uint64_t n = 1000;
  const std::string payload(100, 'p');
  temp_dir tmp;

  { // One single-entry batch per sync: no group commit.
    wal_storage w{tmp.sub("a"), wal_options{}};
    auto t0 = clock_type::now();
    for (uint64_t i = 1; i <= n; ++i) {
      REQUIRE(w.append({make_entry(i, 1, payload)}) == raft::storage_errc::ok);
      w.sync();
    }
    double s = seconds_since(t0);
    MESSAGE(n, " x (append 1 entry + sync): ", s, " s = ", n / s, " syncs/s, ",
            s * 1e6 / n, " us per sync");
  }
  { // Ten single-entry batches per sync (a Ready batch of 10).
    wal_storage w{tmp.sub("b"), wal_options{}};
    auto t0 = clock_type::now();
    for (uint64_t i = 1; i <= n; ++i) {
      REQUIRE(w.append({make_entry(i, 1, payload)}) == raft::storage_errc::ok);
      if (i % 10 == 0)
        w.sync();
    }
    double s = seconds_since(t0);
    MESSAGE(n, " appends, sync every 10: ", s, " s = ", n / s, " entries/s");
  }
  { // Every append, then one sync: group commit of the whole run.
    wal_storage w{tmp.sub("c"), wal_options{}};
    auto t0 = clock_type::now();
    for (uint64_t i = 1; i <= n; ++i)
      REQUIRE(w.append({make_entry(i, 1, payload)}) == raft::storage_errc::ok);
    w.sync();
    double s = seconds_since(t0);
    MESSAGE(n, " appends (one call each) + 1 sync: ", s, " s = ", n / s, " entries/s");
  }
  { // One batch of n entries, one sync.
    wal_storage w{tmp.sub("d"), wal_options{}};
    std::vector<raft::entry> batch;
    for (uint64_t i = 1; i <= n; ++i)
      batch.push_back(make_entry(i, 1, payload));
    auto t0 = clock_type::now();
    REQUIRE(w.append(batch) == raft::storage_errc::ok);
    w.sync();
    double s = seconds_since(t0);
    MESSAGE("1 append of ", n, " entries + 1 sync: ", s, " s = ", n / s, " entries/s");
  }
  { // Recovery speed: reopen a log of 100k entries.
    auto dir = tmp.sub("e");
    {
      wal_storage w{dir, wal_options{}};
      std::vector<raft::entry> batch;
      for (uint64_t i = 1; i <= 100000; ++i) {
        batch.push_back(make_entry(i, 1, payload));
        if (batch.size() == 1000) {
          REQUIRE(w.append(batch) == raft::storage_errc::ok);
          batch.clear();
        }
      }
      w.sync();
    }
    auto t0 = clock_type::now();
    wal_storage w{dir, wal_options{}};
    double s = seconds_since(t0);
    CHECK(w.last_index() == 100000);
    MESSAGE("reopen with 100000 entries (", w.recovery().segments, " segment(s)): ", s, " s");
  }
}
