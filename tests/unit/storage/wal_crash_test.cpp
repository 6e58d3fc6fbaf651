// wal_storage over sim_file_system: what survives a crash, and I/O errors.
// The simulated disk keeps exactly what was synced (plus, with tearing, a
// random prefix of the unsynced bytes and directory changes), which a real
// file system cannot be made to do on demand in a unit test.
#include "actors/storage/wal_storage.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "actors/storage/sim_file_system.hpp"
#include "protocols/wal/format.hpp"
#include "tests/unit/storage/wal_test_util.hpp"

using namespace dsync;
using namespace dsync::storage;
using namespace dsync::storage::test;

namespace {

const std::string wal_dir = "/sim/wal";

wal_options sim_options(const std::shared_ptr<sim_file_system>& sim, uint64_t segment = 4096) {
  wal_options o;
  o.segment_size_bytes = segment;
  o.bootstrap = three_voters();
  o.fs = sim;
  return o;
}

// The only segment while segments are large.
const std::string first_segment = wal_dir + "/" + wal::segment_file_name(1, 1);

// True if `got` is `before` with a non-empty strict prefix of an append that
// led to `after` (a torn multi-record append).
bool is_partial_append(const raft::memory_storage& before, const raft::memory_storage& after,
                       const raft::storage& got) {
  auto ib = before.load_initial_state();
  auto ig = got.load_initial_state();
  if (ib.hard != ig.hard || ib.snapshot.index != ig.snapshot.index
      || ib.snapshot.term != ig.snapshot.term || got.last_index() >= after.last_index())
    return false;
  if (after.first_index() != got.first_index() || got.last_index() < got.first_index())
    return false;
  // Every entry the WAL holds must be the one `after` holds ...
  std::vector<raft::entry> eg;
  std::vector<raft::entry> ea;
  got.entries(got.first_index(), got.last_index() + 1, UINT64_MAX, eg);
  after.entries(got.first_index(), got.last_index() + 1, UINT64_MAX, ea);
  if (eg != ea)
    return false;
  // ... and it must hold at least the first entry the append changed: an
  // append never drops entries without putting new ones in their place.
  std::vector<raft::entry> eb;
  before.entries(before.first_index(), before.last_index() + 1, UINT64_MAX, eb);
  uint64_t diverge = after.first_index();
  for (const auto& e : ea) {
    if (e.index - before.first_index() >= eb.size() || eb[e.index - before.first_index()] != e)
      break;
    diverge = e.index + 1;
  }
  return got.last_index() >= diverge;
}

} // namespace

TEST_CASE("wal crash: sync() is what makes writes durable") {
  auto sim = std::make_shared<sim_file_system>();
  raft::memory_storage synced{three_voters()};
  {
    wal_storage w{wal_dir, sim_options(sim, 64 << 20)};
    REQUIRE(w.append(make_entries(1, 5, 1)) == raft::storage_errc::ok);
    REQUIRE(synced.append(make_entries(1, 5, 1)) == raft::storage_errc::ok);
    w.set_hard_state(raft::hard_state{1, "node-2", 3});
    synced.set_hard_state(raft::hard_state{1, "node-2", 3});
    CHECK(sim->unsynced_bytes(first_segment) > 0);
    w.sync();
    CHECK(sim->unsynced_bytes(first_segment) == 0);
    // Written but never synced: the OS has it, the disk does not.
    REQUIRE(w.append(make_entries(6, 8, 1)) == raft::storage_errc::ok);
    w.set_hard_state(raft::hard_state{2, "node-3", 5});
    CHECK(w.last_index() == 8);
    CHECK(sim->unsynced_bytes(first_segment) > 0);
  }
  sim->crash(1, /*tear=*/false);
  {
    wal_storage w{wal_dir, sim_options(sim, 64 << 20)};
    CHECK(diff(synced, w) == "");
    CHECK(w.last_index() == 5);
    CHECK(w.get_hard_state().term == 1);
    // Now the same writes, synced, survive.
    REQUIRE(w.append(make_entries(6, 8, 1)) == raft::storage_errc::ok);
    REQUIRE(synced.append(make_entries(6, 8, 1)) == raft::storage_errc::ok);
    w.set_hard_state(raft::hard_state{2, "node-3", 5});
    synced.set_hard_state(raft::hard_state{2, "node-3", 5});
    w.sync();
  }
  sim->crash(2, /*tear=*/false);
  wal_storage w{wal_dir, sim_options(sim, 64 << 20)};
  CHECK(diff(synced, w) == "");
}

TEST_CASE("wal crash: a compaction is durable only with the sync after it") {
  auto sim = std::make_shared<sim_file_system>();
  raft::memory_storage before{three_voters()};
  {
    wal_storage w{wal_dir, sim_options(sim)};
    REQUIRE(w.append(make_entries(1, 30, 1)) == raft::storage_errc::ok);
    REQUIRE(before.append(make_entries(1, 30, 1)) == raft::storage_errc::ok);
    w.sync();
    REQUIRE(w.compact(make_snapshot(20, 1)) == raft::storage_errc::ok);
    CHECK(sim->exists(wal_dir + "/" + wal::snapshot_file_name(20))); // the file is durable ...
  }
  sim->crash(3, /*tear=*/false); // ... its record in the log is not
  {
    wal_storage w{wal_dir, sim_options(sim)};
    CHECK(diff(before, w) == "");
    CHECK(w.recovery().snapshot_index == 0);
    CHECK_FALSE(sim->exists(wal_dir + "/" + wal::snapshot_file_name(20)));
    REQUIRE(w.compact(make_snapshot(20, 1)) == raft::storage_errc::ok);
    REQUIRE(before.compact(make_snapshot(20, 1)) == raft::storage_errc::ok);
    w.sync();
  }
  sim->crash(4, /*tear=*/false);
  wal_storage w{wal_dir, sim_options(sim)};
  CHECK(diff(before, w) == "");
  CHECK(w.recovery().snapshot_index == 20);
}

TEST_CASE("wal crash: random writes, syncs, faults and torn crashes recover a prefix") {
  // Property test: after a crash the log must equal the state after some
  // write between the last completed sync() and the crash (a prefix of the
  // write sequence that includes everything synced), or that plus part of
  // one multi-record append. Crashes come at random, and right after any
  // injected I/O error.
  int crashes = 0;
  int torn_tails = 0;
  int partial_appends = 0;
  int ignored_snapshots = 0;
  int covered_segments = 0;
  int failed_recoveries = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    auto sim = std::make_shared<sim_file_system>();
    auto opts = sim_options(sim);
    workload load{seed};
    raft::memory_storage model{three_voters()};
    // candidates[0]: the state at the last completed sync; then one per write.
    std::vector<raft::memory_storage> candidates{model};
    std::vector<bool> was_append{false};
    auto w = std::make_unique<wal_storage>(wal_dir, opts);
    for (int step = 0; step < 300; ++step) {
      if (load.below(40) == 0) {
        static const sim_op ops[] = {sim_op::append, sim_op::sync, sim_op::sync_dir, sim_op::rename,
                                     sim_op::create, sim_op::remove};
        sim->inject_fault(ops[load.below(6)], load.below(2) ? EIO : ENOSPC,
                          static_cast<unsigned>(load.below(3)));
      }
      bool failed = false;
      std::string op;
      try {
        op = load.step(model, *w);
        candidates.push_back(model);
        was_append.push_back(op.rfind("append", 0) == 0);
        if (load.below(8) == 0) {
          w->sync();
          candidates = {model};
          was_append = {false};
        }
      } catch (const storage_error&) {
        // The write that failed may or may not have reached the disk.
        candidates.push_back(model);
        was_append.push_back(true);
        failed = true;
      }
      if (!failed && load.below(25) != 0)
        continue;
      w.reset();
      sim->crash(seed * 1000 + static_cast<uint64_t>(step), load.below(3) != 0);
      ++crashes;
      bool opened = false;
      if (load.below(8) == 0) {
        // An I/O error during recovery's own clean-up (cutting the torn tail,
        // removing files), then another crash: recovery must be restartable.
        // (A fault that does not fire here fails a later write instead.)
        static const sim_op recovery_ops[] = {sim_op::truncate, sim_op::remove, sim_op::sync_dir};
        sim->inject_fault(recovery_ops[load.below(3)], EIO);
        try {
          w = std::make_unique<wal_storage>(wal_dir, opts);
          opened = true;
        } catch (const storage_error& e) {
          CHECK(e.sys_errno() == EIO);
          ++failed_recoveries;
          sim->crash(seed * 1000 + static_cast<uint64_t>(step) + 500, load.below(2) != 0);
        }
      }
      if (!opened) {
        try {
          w = std::make_unique<wal_storage>(wal_dir, opts);
        } catch (const storage_error& e) {
          FAIL("recovery refused after a crash at step ", step, ": ", std::string(e.what()));
        }
      }
      if (w->recovery().dropped_bytes > 0)
        ++torn_tails;
      for (const auto& note : w->recovery().notes) {
        if (note.find("holds no record of it") != std::string::npos)
          ++ignored_snapshots;
        if (note.find("covered by snapshot") != std::string::npos)
          ++covered_segments;
      }
      int match = -1;
      for (size_t k = candidates.size(); k-- > 0;)
        if (diff(candidates[k], *w).empty()) {
          match = static_cast<int>(k);
          break;
        }
      if (match >= 0) {
        model = candidates[static_cast<size_t>(match)];
      } else {
        bool partial = false;
        for (size_t k = 1; k < candidates.size() && !partial; ++k)
          if (was_append[k] && is_partial_append(candidates[k - 1], candidates[k], *w)) {
            partial = true;
            model = candidates[k - 1];
            std::vector<raft::entry> kept;
            REQUIRE(w->entries(w->first_index(), w->last_index() + 1, UINT64_MAX, kept)
                    == raft::storage_errc::ok);
            REQUIRE(model.append(kept) == raft::storage_errc::ok);
          }
        std::string closest = diff(candidates.back(), *w);
        REQUIRE_MESSAGE(partial, "step ", step, " op '", op, "': recovered state matches no prefix; vs latest: ",
                        closest, "; vs synced: ", diff(candidates.front(), *w));
        ++partial_appends;
        REQUIRE(diff(model, *w) == "");
      }
      candidates = {model};
      was_append = {false};
    }
  }
  MESSAGE("crashes: ", crashes, ", torn tails cut: ", torn_tails, ", partial appends: ",
          partial_appends, ", snapshot files without a record: ", ignored_snapshots,
          ", covered segments skipped: ", covered_segments,
          ", recoveries failed by an I/O error and redone: ", failed_recoveries);
  // The seeds reach every recovery path.
  CHECK(crashes > 100);
  CHECK(torn_tails > 10);
  CHECK(partial_appends > 0);
  CHECK(ignored_snapshots > 0);
  CHECK(covered_segments > 0);
  CHECK(failed_recoveries > 0);
}

TEST_CASE("wal errors: a failed fsync stops the storage for good") {
  auto sim = std::make_shared<sim_file_system>();
  wal_storage w{wal_dir, sim_options(sim)};
  REQUIRE(w.append(make_entries(1, 5, 1)) == raft::storage_errc::ok);
  sim->inject_fault(sim_op::sync, EIO);
  try {
    w.sync();
    FAIL("sync() did not throw");
  } catch (const storage_error& e) {
    CHECK(e.sys_errno() == EIO);
    CHECK(std::string(e.what()).find("fdatasync") != std::string::npos);
  }
  // No retry that would pretend the data is safe: everything after fails.
  CHECK_THROWS_AS(w.sync(), storage_error);
  CHECK_THROWS_AS(w.append(make_entries(6, 6, 1)), storage_error);
  CHECK_THROWS_AS(w.set_hard_state(raft::hard_state{3, "", 0}), storage_error);
  try {
    w.sync();
  } catch (const storage_error& e) {
    CHECK(std::string(e.what()).find("failed earlier") != std::string::npos);
    CHECK(std::string(e.what()).find("Input/output error") != std::string::npos);
  }
  // Reads still answer from memory.
  CHECK(w.last_index() == 5);
}

TEST_CASE("wal errors: a full disk mid-write fails the write; reopening drops the torn record") {
  auto sim = std::make_shared<sim_file_system>();
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{wal_dir, sim_options(sim, 64 << 20)};
    REQUIRE(w.append(make_entries(1, 5, 1)) == raft::storage_errc::ok);
    REQUIRE(m.append(make_entries(1, 5, 1)) == raft::storage_errc::ok);
    w.sync();
    sim->inject_fault(sim_op::append, ENOSPC);
    try {
      (void)w.append(make_entries(6, 9, 1));
      FAIL("append did not throw");
    } catch (const storage_error& e) {
      CHECK(e.sys_errno() == ENOSPC);
    }
    CHECK(w.last_index() == 5); // the view never shows a write that failed
    CHECK_THROWS_AS(w.compact(make_snapshot(3, 1)), storage_error);
  }
  wal_storage w{wal_dir, sim_options(sim, 64 << 20)}; // no crash: the half record is still there
  CHECK(diff(m, w) == "");
  CHECK(w.recovery().dropped_bytes > 0);
}

TEST_CASE("wal errors: a failure while writing a snapshot leaves the previous state") {
  for (auto op : {sim_op::create, sim_op::append, sim_op::sync, sim_op::rename, sim_op::sync_dir}) {
    CAPTURE(static_cast<int>(op));
    auto sim = std::make_shared<sim_file_system>();
    raft::memory_storage m{three_voters()};
    {
      wal_storage w{wal_dir, sim_options(sim)};
      REQUIRE(w.append(make_entries(1, 10, 1)) == raft::storage_errc::ok);
      REQUIRE(m.append(make_entries(1, 10, 1)) == raft::storage_errc::ok);
      w.sync();
      sim->inject_fault(op, EIO);
      CHECK_THROWS_AS(w.compact(make_snapshot(8, 1)), storage_error);
      CHECK(w.first_index() == 1);
    }
    sim->crash(9, /*tear=*/true);
    wal_storage w{wal_dir, sim_options(sim)};
    CHECK(diff(m, w) == "");
  }
}
