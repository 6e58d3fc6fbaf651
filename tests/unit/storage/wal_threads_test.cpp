// The documented thread use of wal_storage: one writer thread, sync() from a
// storage thread at the same time, and reads from a third thread.
#include "actors/storage/wal_storage.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/storage/wal_test_util.hpp"

using namespace dsync;
using namespace dsync::storage;
using namespace dsync::storage::test;

TEST_CASE("wal threads: writes, concurrent sync() and concurrent reads") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  wal_options opts;
  opts.segment_size_bytes = 16 << 10; // rolls and deletions happen during the run
  opts.bootstrap = three_voters();
  raft::memory_storage model{three_voters()};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> syncs{0};
  {
    wal_storage w{dir, opts};

    std::thread syncer([&] {
      while (!done.load()) {
        w.sync();
        syncs.fetch_add(1);
      }
    });
    std::thread reader([&] {
      std::vector<raft::entry> out;
      while (!done.load()) {
        // Each call is answered from one consistent view.
        uint64_t first = w.first_index();
        auto code = w.entries(first, first + 50, UINT64_MAX, out);
        if (code == raft::storage_errc::ok) {
          for (size_t i = 0; i < out.size(); ++i)
            if (out[i].index != first + i || (i > 0 && out[i].term < out[i - 1].term))
              read_errors.fetch_add(1);
        } else if (code != raft::storage_errc::compacted
                   && code != raft::storage_errc::unavailable) {
          read_errors.fetch_add(1);
        }
        uint64_t t = 0;
        auto tc = w.term(w.last_index(), t);
        if (tc != raft::storage_errc::ok && tc != raft::storage_errc::unavailable
            && tc != raft::storage_errc::compacted)
          read_errors.fetch_add(1);
        std::shared_ptr<const raft::snapshot> snap;
        w.snapshot(snap);
        if (snap == nullptr)
          read_errors.fetch_add(1);
        (void)w.stats();
        reads.fetch_add(1);
      }
    });

    // The writer: the Raft actor's role.
    uint64_t term = 1;
    for (uint64_t round = 1; round <= 1500; ++round) {
      uint64_t last = model.last_index();
      std::vector<raft::entry> batch;
      uint64_t start = last + 1;
      if (round % 97 == 0 && last > model.first_index() + 3) {
        start = last - 2; // a new leader overwrites a suffix
        ++term;
      }
      for (uint64_t i = 0; i < 1 + round % 4; ++i)
        batch.push_back(make_entry(start + i, term, std::string(40 + round % 50, 'w')));
      REQUIRE(model.append(batch) == raft::storage_errc::ok);
      REQUIRE(w.append(batch) == raft::storage_errc::ok);
      if (round % 10 == 0) {
        raft::hard_state hs{term, "node-1", model.last_index() - 1};
        model.set_hard_state(hs);
        w.set_hard_state(hs);
      }
      if (round % 250 == 0) {
        auto s = make_snapshot(model.last_index() - 5, term);
        REQUIRE(model.compact(s) == raft::storage_errc::ok);
        REQUIRE(w.compact(s) == raft::storage_errc::ok);
      }
    }
    done.store(true);
    syncer.join();
    reader.join();
    w.sync();
    CHECK(diff(model, w) == "");
    auto st = w.stats();
    CHECK(st.records_synced == st.records_written);
    CHECK(st.segments_deleted > 0);
    MESSAGE("syncs: ", st.syncs, ", records per sync (mean): ",
            st.syncs ? st.records_synced / st.syncs : 0, ", max: ", st.max_sync_records,
            ", reads: ", reads.load());
  }
  CHECK(read_errors.load() == 0);
  CHECK(reads.load() > 0);
  CHECK(syncs.load() > 0);
  wal_storage reopened{dir, opts};
  CHECK(diff(model, reopened) == "");
}
