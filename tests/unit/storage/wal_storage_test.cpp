// wal_storage on real files, one temporary directory per test.
#include "actors/storage/wal_storage.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "protocols/wal/format.hpp"
#include "tests/unit/storage/wal_test_util.hpp"

using namespace dsync;
using namespace dsync::storage;
using namespace dsync::storage::test;

namespace {

wal_options small_segments(uint64_t bytes = 4096) {
  wal_options o;
  o.segment_size_bytes = bytes;
  o.bootstrap = three_voters();
  return o;
}

// Message of the storage_error thrown by opening `dir`, or "" if it opened.
std::string open_error(const std::string& dir, wal_options opts = small_segments()) {
  try {
    wal_storage w{dir, opts};
  } catch (const storage_error& e) {
    return e.what();
  }
  return {};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A log with a few of everything, written to both storages and synced.
void write_history(raft::memory_storage& m, wal_storage& w) {
  auto both_append = [&](const std::vector<raft::entry>& es) {
    REQUIRE(m.append(es) == raft::storage_errc::ok);
    REQUIRE(w.append(es) == raft::storage_errc::ok);
  };
  raft::hard_state hs{1, "node-1", 0};
  m.set_hard_state(hs);
  w.set_hard_state(hs);
  both_append(make_entries(1, 10, 1));
  both_append(make_entries(8, 12, 2)); // overwrite 8..10
  hs = raft::hard_state{2, "node-2", 9};
  m.set_hard_state(hs);
  w.set_hard_state(hs);
  REQUIRE(m.compact(make_snapshot(5, 1)) == raft::storage_errc::ok);
  REQUIRE(w.compact(make_snapshot(5, 1)) == raft::storage_errc::ok);
  both_append(make_entries(13, 20, 2));
  w.sync();
}

} // namespace

TEST_CASE("wal_storage: a new directory starts an empty log with the bootstrap configuration") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  {
    wal_storage w{dir, small_segments()};
    CHECK(w.recovery().created);
    auto init = w.load_initial_state();
    CHECK(init.snapshot.index == 0);
    CHECK(init.snapshot.config == three_voters());
    CHECK(init.hard == raft::hard_state{});
    CHECK(w.first_index() == 1);
    CHECK(w.last_index() == 0);
    uint64_t t = 99;
    CHECK(w.term(0, t) == raft::storage_errc::ok);
    CHECK(t == 0);
    CHECK(diff(raft::memory_storage{three_voters()}, w).empty());
  }
  CHECK(segments_in(dir) == std::vector<std::string>{wal::segment_file_name(1, 1)});
  CHECK(snapshots_in(dir).empty());
  wal_options other = small_segments();
  other.bootstrap.voters = {"someone-else"}; // ignored: the directory holds a log
  wal_storage w{dir, other};
  CHECK_FALSE(w.recovery().created);
  CHECK(w.load_initial_state().snapshot.config == three_voters());
  CHECK(w.recovery().notes.empty());
}

TEST_CASE("wal_storage: every write round-trips through close and reopen") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, small_segments()};
    write_history(m, w);
    CHECK(diff(m, w) == "");
  }
  {
    wal_storage w{dir, small_segments()};
    CHECK(diff(m, w) == "");
    CHECK(w.recovery().notes.empty());
    CHECK(w.recovery().snapshot_index == 5);
    CHECK(w.recovery().entries == 15);
    // A received snapshot replaces the log; a later append goes on from it.
    auto s = make_snapshot(40, 3, "big state");
    REQUIRE(m.apply_snapshot(s) == raft::storage_errc::ok);
    REQUIRE(w.apply_snapshot(s) == raft::storage_errc::ok);
    REQUIRE(m.append(make_entries(41, 45, 3)) == raft::storage_errc::ok);
    REQUIRE(w.append(make_entries(41, 45, 3)) == raft::storage_errc::ok);
    w.sync();
    CHECK(diff(m, w) == "");
  }
  wal_storage w{dir, small_segments()};
  CHECK(diff(m, w) == "");
  std::shared_ptr<const raft::snapshot> snap;
  w.snapshot(snap);
  CHECK(snap->data == "big state");
  CHECK(snapshots_in(dir) == std::vector<std::string>{wal::snapshot_file_name(40)});
}

TEST_CASE("wal_storage: refusals match memory_storage and write nothing") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  wal_storage w{dir, small_segments()};
  write_history(m, w);
  auto bytes_before = w.stats().wal_bytes_written;
  CHECK(w.append(make_entries(22, 23, 2)) == raft::storage_errc::unavailable);
  CHECK(w.append(make_entries(1, 4, 1)) == raft::storage_errc::ok); // all below the snapshot
  CHECK(w.compact(make_snapshot(5, 1)) == raft::storage_errc::out_of_date);
  CHECK(w.compact(make_snapshot(21, 2)) == raft::storage_errc::unavailable);
  CHECK(w.apply_snapshot(make_snapshot(3, 1)) == raft::storage_errc::out_of_date);
  w.set_hard_state(w.get_hard_state()); // unchanged: nothing to write
  CHECK(w.stats().wal_bytes_written == bytes_before);
  std::vector<raft::entry> gap = {make_entry(21, 2), make_entry(23, 2)};
  CHECK_THROWS_AS(w.append(gap), std::invalid_argument);
  CHECK(w.stats().wal_bytes_written == bytes_before);
  CHECK(diff(m, w) == "");
}

TEST_CASE("wal_storage: same reads as memory_storage over random writes, reopens included") {
  // Property test: seeded random write sequences (appends, suffix
  // overwrites, hard states, received snapshots, compactions), compared
  // after every write and after every reopen. Reopening without sync() is
  // fine here: no crash, so the OS still has every write.
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    CAPTURE(seed);
    temp_dir tmp;
    auto dir = tmp.sub("wal");
    raft::memory_storage model{three_voters()};
    workload load{seed};
    auto w = std::make_unique<wal_storage>(dir, small_segments());
    for (int step = 0; step < 250; ++step) {
      auto op = load.step(model, *w);
      CAPTURE(op);
      auto d = diff(model, *w);
      REQUIRE_MESSAGE(d.empty(), "after step ", step, ": ", d);
      if (load.below(12) == 0)
        w->sync();
      if (load.below(40) == 0) {
        bool synced = load.below(2) == 0;
        if (synced)
          w->sync();
        w.reset();
        w = std::make_unique<wal_storage>(dir, small_segments());
        d = diff(model, *w);
        REQUIRE_MESSAGE(d.empty(), "after reopen at step ", step, ": ", d);
        CHECK(w->recovery().dropped_bytes == 0);
      }
    }
    w->sync();
    w.reset();
    wal_storage reopened{dir, small_segments()};
    CHECK(diff(model, reopened) == "");
    CHECK(reopened.recovery().notes.empty());
  }
}

TEST_CASE("wal_storage: segments roll at the size limit and are deleted after a covering snapshot") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  wal_storage w{dir, small_segments(4096)};
  for (uint64_t i = 1; i <= 200; ++i) {
    auto e = make_entries(i, i, 1);
    e[0].data = std::string(100, char('a' + i % 26));
    REQUIRE(m.append(e) == raft::storage_errc::ok);
    REQUIRE(w.append(e) == raft::storage_errc::ok);
  }
  w.sync();
  auto segs = segments_in(dir);
  REQUIRE(segs.size() >= 5);
  uint64_t prev_first = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    uint64_t seq = 0;
    uint64_t first = 0;
    REQUIRE(wal::parse_segment_file_name(segs[i], seq, first));
    CHECK(seq == i + 1);
    CHECK(first > prev_first);
    prev_first = first;
    // No segment grows past the limit by more than one record.
    CHECK(fs::file_size(dir + "/" + segs[i]) <= 4096 + 200);
  }
  CHECK(w.stats().segments_created == segs.size());

  // Compacting at 120 retires the segments whose entries are all <= 120,
  // once the snapshot's record is durable (sync), not before.
  REQUIRE(m.compact(make_snapshot(120, 1)) == raft::storage_errc::ok);
  REQUIRE(w.compact(make_snapshot(120, 1)) == raft::storage_errc::ok);
  CHECK(segments_in(dir) == segs);
  w.sync();
  auto left = segments_in(dir);
  CHECK(left.size() < segs.size());
  uint64_t seq = 0;
  uint64_t first = 0;
  REQUIRE(wal::parse_segment_file_name(left.front(), seq, first));
  CHECK(first <= 121);
  CHECK(w.stats().segments_deleted == segs.size() - left.size());
  CHECK(snapshots_in(dir) == std::vector<std::string>{wal::snapshot_file_name(120)});

  // A newer compaction retires the older snapshot file.
  REQUIRE(m.compact(make_snapshot(150, 1)) == raft::storage_errc::ok);
  REQUIRE(w.compact(make_snapshot(150, 1)) == raft::storage_errc::ok);
  CHECK(snapshots_in(dir).size() == 2);
  w.sync();
  CHECK(snapshots_in(dir) == std::vector<std::string>{wal::snapshot_file_name(150)});
  CHECK(w.stats().snapshots_deleted == 1);

  wal_storage reopened{dir, small_segments(4096)};
  CHECK(diff(m, reopened) == "");
  CHECK(reopened.recovery().segments == segments_in(dir).size());
}

TEST_CASE("wal_storage: a batch larger than a segment spreads over several") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, small_segments(4096)};
    std::vector<raft::entry> batch;
    for (uint64_t i = 1; i <= 100; ++i)
      batch.push_back(make_entry(i, 1, std::string(300, 'q')));
    batch.push_back(make_entry(101, 1, std::string(10000, 'L'))); // larger than a segment
    batch.push_back(make_entry(102, 1, "after"));
    REQUIRE(m.append(batch) == raft::storage_errc::ok);
    REQUIRE(w.append(batch) == raft::storage_errc::ok);
    w.sync();
    CHECK(segments_in(dir).size() >= 8);
  }
  wal_storage w{dir, small_segments(4096)};
  CHECK(diff(m, w) == "");
}

TEST_CASE("wal_storage: crash truncating the last record at every byte offset drops exactly it") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  raft::memory_storage before_last{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
    before_last = m;
    std::vector<raft::entry> last = {make_entry(21, 2, "the last record")};
    REQUIRE(m.append(last) == raft::storage_errc::ok);
    REQUIRE(w.append(last) == raft::storage_errc::ok);
    w.sync();
  }
  auto segs = segments_in(dir);
  REQUIRE(segs.size() == 1);
  auto seg_path = dir + "/" + segs.back();
  const auto original = read_bytes(seg_path);
  auto scan = wal::scan_segment(original);
  REQUIRE(scan.end == wal::scan_end::clean);
  const size_t start = scan.records.back().offset;
  REQUIRE(scan.records.back().rec.type == wal::record_type::entries);
  for (size_t cut = start; cut < original.size(); ++cut) {
    CAPTURE(cut);
    write_bytes(seg_path, original.substr(0, cut));
    {
      wal_storage w{dir, wal_options{}};
      CHECK(diff(before_last, w) == "");
      CHECK(w.recovery().dropped_bytes == cut - start);
      if (cut > start) {
        REQUIRE(w.recovery().notes.size() == 1);
        CHECK(contains(w.recovery().notes[0], "dropped " + std::to_string(cut - start)
                                                  + " bytes at offset " + std::to_string(start)));
      }
    }
    CHECK(fs::file_size(seg_path) == start); // the torn tail is cut off on disk
  }
  // The intact file still holds the record.
  write_bytes(seg_path, original);
  wal_storage w{dir, wal_options{}};
  CHECK(diff(m, w) == "");
}

TEST_CASE("wal_storage: garbage after the last record is a torn tail too") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
  }
  auto seg_path = dir + "/" + segments_in(dir).back();
  auto original = read_bytes(seg_path);
  write_bytes(seg_path, original + std::string(5000, '\0'));
  {
    wal_storage w{dir, wal_options{}};
    CHECK(diff(m, w) == "");
    CHECK(w.recovery().dropped_bytes == 5000);
  }
  write_bytes(seg_path, original + "\x13\x00\x00\x00\x03garbage that is not a record");
  wal_storage w{dir, wal_options{}};
  CHECK(diff(m, w) == "");
  CHECK(read_bytes(seg_path) == original);
}

TEST_CASE("wal_storage: a flipped byte in a middle record refuses to open, naming file and offset") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
  }
  auto name = segments_in(dir).back();
  auto seg_path = dir + "/" + name;
  const auto original = read_bytes(seg_path);
  auto scan = wal::scan_segment(original);
  REQUIRE(scan.records.size() >= 5);
  for (size_t k = 1; k + 1 < scan.records.size(); ++k) {
    size_t start = scan.records[k].offset;
    size_t end = scan.records[k + 1].offset;
    for (size_t i : {start, start + 4, start + 9, (start + end) / 2, end - 1}) {
      CAPTURE(k);
      CAPTURE(i);
      auto bytes = original;
      bytes[i] = static_cast<char>(bytes[i] ^ 0x20);
      write_bytes(seg_path, bytes);
      auto error = open_error(dir, wal_options{});
      CHECK(contains(error, seg_path));
      CHECK(contains(error, "offset " + std::to_string(start)));
      CHECK(contains(error, "corruption in the middle"));
      CHECK(read_bytes(seg_path) == bytes); // nothing was "repaired"
    }
  }
  write_bytes(seg_path, original);
  wal_storage w{dir, wal_options{}};
  CHECK(diff(m, w) == "");
}

TEST_CASE("wal_storage: a torn record in a segment that is not the last refuses to open") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, small_segments()};
    for (uint64_t i = 1; i <= 300; ++i)
      REQUIRE(w.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
    w.sync();
  }
  auto segs = segments_in(dir);
  REQUIRE(segs.size() >= 3);
  auto victim = dir + "/" + segs[1];
  auto bytes = read_bytes(victim);
  write_bytes(victim, bytes.substr(0, bytes.size() - 3));
  auto error = open_error(dir);
  CHECK(contains(error, victim));
  CHECK(contains(error, "not the last"));
}

TEST_CASE("wal_storage: a missing middle segment refuses to open") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  {
    wal_storage w{dir, small_segments()};
    for (uint64_t i = 1; i <= 300; ++i)
      REQUIRE(w.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
    w.sync();
  }
  auto segs = segments_in(dir);
  REQUIRE(segs.size() >= 3);
  fs::remove(dir + "/" + segs[1]);
  auto error = open_error(dir);
  CHECK(contains(error, "sequence number 2 is missing"));
  CHECK(contains(error, segs[0]));
  CHECK(contains(error, segs[2]));
}

TEST_CASE("wal_storage: a missing first segment is caught by the gap in the entries") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  {
    wal_storage w{dir, small_segments()};
    for (uint64_t i = 1; i <= 300; ++i)
      REQUIRE(w.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
    w.sync();
  }
  auto segs = segments_in(dir);
  fs::remove(dir + "/" + segs[0]);
  auto error = open_error(dir);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, segs[1]));
  CHECK(contains(error, "the entries in between are missing"));
}

TEST_CASE("wal_storage: an old segment brought back by a crash (undone unlink) is skipped") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  auto saved = tmp.sub("saved");
  fs::create_directory(saved);
  raft::memory_storage m{three_voters()};
  wal_storage w{dir, small_segments()};
  for (uint64_t i = 1; i <= 300; ++i) {
    REQUIRE(m.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
    REQUIRE(w.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
  }
  // Entries 250.. are overwritten by a new leader: the old segments hold a
  // stale suffix that no longer matches the log.
  REQUIRE(m.append(make_entries(250, 260, 2)) == raft::storage_errc::ok);
  REQUIRE(w.append(make_entries(250, 260, 2)) == raft::storage_errc::ok);
  w.sync();
  auto before = segments_in(dir);
  for (const auto& name : before)
    fs::copy_file(dir + "/" + name, saved + "/" + name);
  REQUIRE(m.compact(make_snapshot(255, 2)) == raft::storage_errc::ok);
  REQUIRE(w.compact(make_snapshot(255, 2)) == raft::storage_errc::ok);
  w.sync();
  auto after = segments_in(dir);
  REQUIRE(after.size() < before.size());
  // Bring the deleted segments back, as a crash between unlink and the
  // directory's fsync could.
  for (const auto& name : before)
    if (!fs::exists(dir + "/" + name))
      fs::copy_file(saved + "/" + name, dir + "/" + name);
  {
    wal_storage r{dir, small_segments()};
    CHECK(diff(m, r) == "");
    REQUIRE(r.recovery().notes.size() == 1);
    CHECK(contains(r.recovery().notes[0], "covered by snapshot 255"));
    r.sync(); // deletes them again
    CHECK(segments_in(dir) == after);
  }
  wal_storage r{dir, small_segments()};
  CHECK(diff(m, r) == "");
  CHECK(r.recovery().notes.empty());
}

TEST_CASE("wal_storage: a half-written snapshot temp file is ignored and removed") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
  }
  auto full = wal::encode_snapshot_file(make_snapshot(18, 2, std::string(1000, 's')));
  auto temp_name = wal::snapshot_file_name(18) + ".tmp";
  write_bytes(dir + "/" + temp_name, full.substr(0, full.size() / 2));
  auto seg_temp = wal::segment_file_name(2, 21) + ".tmp";
  write_bytes(dir + "/" + seg_temp, "DSYNCW");
  {
    wal_storage w{dir, wal_options{}};
    CHECK(diff(m, w) == "");
    CHECK(w.recovery().notes.size() == 2);
  }
  CHECK_FALSE(fs::exists(dir + "/" + temp_name));
  CHECK_FALSE(fs::exists(dir + "/" + seg_temp));
}

TEST_CASE("wal_storage: a snapshot file whose checksum fails refuses to open") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
  }
  auto snap_path = dir + "/" + wal::snapshot_file_name(5);
  auto bytes = read_bytes(snap_path);
  bytes[40] = static_cast<char>(bytes[40] ^ 1);
  write_bytes(snap_path, bytes);
  auto error = open_error(dir, wal_options{});
  CHECK(contains(error, snap_path));
  CHECK(contains(error, "checksum mismatch at offset " + std::to_string(bytes.size() - 4)));
}

TEST_CASE("wal_storage: a snapshot named by the log but missing refuses to open") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  raft::memory_storage m{three_voters()};
  {
    wal_storage w{dir, wal_options{}};
    write_history(m, w);
  }
  fs::remove(dir + "/" + wal::snapshot_file_name(5));
  auto error = open_error(dir, wal_options{});
  CHECK(contains(error, "names snapshot 5"));
  CHECK(contains(error, "missing"));
}

TEST_CASE("wal_storage: a snapshot file the log does not name is dropped (crash before sync)") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  auto copy = tmp.sub("copy");
  raft::memory_storage m{three_voters()};
  wal_storage w{dir, wal_options{}};
  write_history(m, w);
  fs::copy(dir, copy); // the disk as it was before the compaction below
  REQUIRE(w.compact(make_snapshot(15, 2)) == raft::storage_errc::ok);
  // The snapshot file is durable, its record in the log is not (no sync):
  // model the crash by giving the old directory the new snapshot file only.
  fs::copy_file(dir + "/" + wal::snapshot_file_name(15), copy + "/" + wal::snapshot_file_name(15));
  wal_storage r{copy, wal_options{}};
  CHECK(diff(m, r) == "");
  CHECK(r.recovery().snapshot_index == 5);
  REQUIRE(r.recovery().notes.size() == 1);
  CHECK(contains(r.recovery().notes[0], wal::snapshot_file_name(15)));
  CHECK_FALSE(fs::exists(copy + "/" + wal::snapshot_file_name(15)));
}

TEST_CASE("wal_storage: unknown files are left alone; snapshots without a log are refused") {
  temp_dir tmp;
  auto dir = tmp.sub("wal");
  {
    wal_storage w{dir, wal_options{}};
    w.append(make_entries(1, 3, 1));
    w.sync();
  }
  write_bytes(dir + "/README", "operator notes");
  {
    wal_storage w{dir, wal_options{}};
    CHECK(w.last_index() == 3);
    REQUIRE(w.recovery().notes.size() == 1);
    CHECK(contains(w.recovery().notes[0], "README"));
  }
  CHECK(fs::exists(dir + "/README"));

  auto lonely = tmp.sub("lonely");
  fs::create_directory(lonely);
  write_bytes(lonely + "/" + wal::snapshot_file_name(9), wal::encode_snapshot_file(make_snapshot(9, 1)));
  CHECK(contains(open_error(lonely), "there is no log segment"));
}

TEST_CASE("wal_storage: group commit counters") {
  temp_dir tmp;
  wal_storage w{tmp.sub("wal"), wal_options{}};
  for (uint64_t i = 1; i <= 10; ++i)
    REQUIRE(w.append(make_entries(i, i, 1)) == raft::storage_errc::ok);
  w.set_hard_state(raft::hard_state{1, "node-1", 10});
  auto before = w.stats();
  CHECK(before.records_written == 11);
  CHECK(before.syncs == 0);
  w.sync();
  auto after = w.stats();
  CHECK(after.syncs == 1);
  CHECK(after.records_synced == 11);
  CHECK(after.last_sync_records == 11);
  CHECK(after.max_sync_records == 11);
  CHECK(after.fsyncs == before.fsyncs + 1);
  w.sync(); // nothing new: no fsync
  CHECK(w.stats().syncs == 1);
  CHECK(w.stats().fsyncs == after.fsyncs);
  CHECK(after.wal_bytes_written > 10 * wal::frame_header_bytes);
}

TEST_CASE("wal_storage: bad options are refused") {
  temp_dir tmp;
  wal_options o;
  o.segment_size_bytes = 100;
  CHECK_THROWS_AS(wal_storage(tmp.sub("wal"), o), std::invalid_argument);
  CHECK_THROWS_AS(wal_storage("", wal_options{}), std::invalid_argument);
  write_bytes(tmp.sub("file"), "x");
  CHECK_THROWS_AS(wal_storage(tmp.sub("file"), wal_options{}), storage_error);
}
