#include "protocols/wal/recovery.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace dsync;
using namespace dsync::wal;

namespace {

snapshot_file_info file(uint64_t index, uint64_t term) {
  snapshot_file_info f;
  f.name = snapshot_file_name(index);
  f.metadata.index = index;
  f.metadata.term = term;
  return f;
}

snapshot_reference ref(uint64_t index, uint64_t term, bool checkpoint = false) {
  snapshot_reference r;
  r.index = index;
  r.term = term;
  r.from_checkpoint = checkpoint;
  r.where = "seg offset " + std::to_string(index);
  if (checkpoint)
    r.config.voters = {"a", "b", "c"};
  return r;
}

record entries(uint64_t first, uint64_t last, uint64_t term) {
  record r;
  r.type = record_type::entries;
  for (uint64_t i = first; i <= last; ++i) {
    raft::entry e;
    e.index = i;
    e.term = term;
    e.data = "t" + std::to_string(term) + "i" + std::to_string(i);
    r.entries.push_back(e);
  }
  return r;
}

record snap(uint64_t index, uint64_t term, snapshot_kind kind) {
  record r;
  r.type = record_type::snapshot;
  r.snapshot.index = index;
  r.snapshot.term = term;
  r.kind = kind;
  return r;
}

record hard(uint64_t term, const char* vote, uint64_t commit) {
  record r;
  r.type = record_type::hard_state;
  r.hard.term = term;
  r.hard.vote = vote;
  r.hard.commit = commit;
  return r;
}

record checkpoint(uint64_t snap_index, uint64_t snap_term) {
  record r;
  r.type = record_type::checkpoint;
  r.snapshot.index = snap_index;
  r.snapshot.term = snap_term;
  return r;
}

// "index:term index:term ..." of the replayed entries.
std::string log_of(replayer& r) {
  std::string out;
  for (const auto& e : r.entries())
    out += (out.empty() ? "" : " ") + std::to_string(e.index) + ":" + std::to_string(e.term);
  return out;
}

raft::snapshot_metadata base(uint64_t index, uint64_t term) {
  raft::snapshot_metadata m;
  m.index = index;
  m.term = term;
  return m;
}

} // namespace

TEST_CASE("wal recovery: the newest snapshot file the log names is chosen") {
  std::vector<snapshot_file_info> files = {file(10, 2), file(20, 3), file(30, 4)};
  // 30 has no record (the crash came before the log was synced): ignored.
  auto c = choose_snapshot(files, {ref(0, 0, true), ref(10, 2), ref(20, 3, true), ref(20, 3)});
  REQUIRE_MESSAGE(c.ok, c.error);
  CHECK(c.chosen == 1);
  CHECK(c.ignored == std::vector<size_t>{2});
}

TEST_CASE("wal recovery: a snapshot named by the log whose file is missing is refused") {
  auto c = choose_snapshot({file(10, 2)}, {ref(10, 2), ref(20, 3)});
  CHECK_FALSE(c.ok);
  CHECK(c.error.find("names snapshot 20") != std::string::npos);
  CHECK(c.error.find("missing") != std::string::npos);
  // ... also when it is named only by a checkpoint.
  c = choose_snapshot({file(10, 2)}, {ref(10, 2), ref(20, 3, true)});
  CHECK_FALSE(c.ok);
}

TEST_CASE("wal recovery: file and log disagreeing on the term is refused") {
  auto c = choose_snapshot({file(10, 2)}, {ref(10, 5)});
  CHECK_FALSE(c.ok);
  CHECK(c.error.find("term") != std::string::npos);
}

TEST_CASE("wal recovery: without snapshot files the implicit snapshot 0 of a checkpoint is used") {
  auto c = choose_snapshot({}, {ref(0, 0, true)});
  REQUIRE(c.ok);
  CHECK(c.chosen == -1);
  CHECK(c.bootstrap.index == 0);
  CHECK(c.bootstrap.config.voters == std::vector<std::string>{"a", "b", "c"});

  // A log that moved past snapshot 0 cannot fall back to it.
  c = choose_snapshot({}, {ref(15, 2, true)});
  CHECK_FALSE(c.ok);
  c = choose_snapshot({file(40, 9)}, {ref(15, 2, true)});
  CHECK_FALSE(c.ok);
  CHECK(c.error.find("no snapshot file matches") != std::string::npos);
}

TEST_CASE("wal replay: appends, overwrites of a suffix, and the last hard state") {
  replayer r{base(0, 0)};
  CHECK(r.apply(entries(1, 5, 1)).empty());
  CHECK(r.apply(hard(1, "a", 3)).empty());
  CHECK(r.apply(entries(4, 6, 2)).empty()); // a new leader overwrites 4 and 5
  CHECK(r.apply(hard(2, "b", 4)).empty());
  CHECK(log_of(r) == "1:1 2:1 3:1 4:2 5:2 6:2");
  CHECK(r.hard().term == 2);
  CHECK(r.hard().vote == "b");
  CHECK(r.hard().commit == 4);
  CHECK(r.apply(entries(2, 2, 3)).empty()); // overwrite down to index 2
  CHECK(log_of(r) == "1:1 2:3");
}

TEST_CASE("wal replay: entries at or below the snapshot are skipped") {
  replayer r{base(10, 3)};
  CHECK(r.apply(entries(1, 8, 1)).empty());
  CHECK(r.entries().empty());
  CHECK(r.apply(entries(5, 12, 3)).empty());
  CHECK(log_of(r) == "11:3 12:3");
  CHECK(r.last_index() == 12);
}

TEST_CASE("wal replay: an overwrite at or below the loaded snapshot still cuts the log above it") {
  // Found by the property test: the log held 236..245 with snapshot 235,
  // a new leader overwrote from 237 to 239, then a compaction at 239 was
  // loaded. The overwrite removed 240..245 although all its entries are <= 239.
  replayer r{base(239, 14)};
  CHECK(r.apply(checkpoint(235, 13)).empty());
  CHECK(r.apply(entries(236, 245, 14)).empty());
  CHECK(log_of(r) == "240:14 241:14 242:14 243:14 244:14 245:14");
  CHECK(r.apply(entries(237, 239, 15)).empty());
  CHECK(r.entries().empty());
  CHECK(r.apply(snap(239, 15, snapshot_kind::compacted)).empty());
  CHECK(r.entries().empty());
  CHECK(r.last_index() == 239);
}

TEST_CASE("wal replay: entries skipped by the snapshot of their time cut nothing") {
  // memory_storage::append ignores entries at or below its snapshot: an
  // append of only such entries changes nothing.
  replayer r{base(20, 3)};
  CHECK(r.apply(checkpoint(20, 3)).empty());
  CHECK(r.apply(entries(21, 25, 3)).empty());
  CHECK(r.apply(entries(18, 20, 3)).empty());
  CHECK(log_of(r) == "21:3 22:3 23:3 24:3 25:3");
}

TEST_CASE("wal replay: a gap in the entries is refused") {
  replayer r{base(10, 3)};
  CHECK(r.apply(entries(11, 12, 3)).empty());
  auto error = r.apply(entries(14, 15, 3));
  CHECK(error.find("entries are missing") != std::string::npos);
  replayer r2{base(10, 3)};
  CHECK_FALSE(r2.apply(entries(12, 13, 3)).empty());
}

TEST_CASE("wal replay: snapshot records") {
  SUBCASE("the loaded snapshot, installed: the old log is dropped") {
    replayer r{base(100, 5)};
    CHECK(r.apply(entries(1, 120, 1)).empty()); // old log, conflicting after 100
    CHECK(r.entries().size() == 20);
    CHECK(r.apply(snap(100, 5, snapshot_kind::installed)).empty());
    CHECK(r.entries().empty());
    CHECK(r.apply(entries(101, 102, 5)).empty());
    CHECK(log_of(r) == "101:5 102:5");
  }
  SUBCASE("the loaded snapshot, compacted: later entries stay") {
    replayer r{base(100, 5)};
    CHECK(r.apply(entries(90, 110, 5)).empty());
    CHECK(r.apply(snap(100, 5, snapshot_kind::compacted)).empty());
    CHECK(r.entries().size() == 10);
  }
  SUBCASE("an older installed snapshot drops what came before it") {
    replayer r{base(100, 5)};
    CHECK(r.apply(entries(90, 110, 1)).empty());
    CHECK(r.apply(snap(50, 4, snapshot_kind::installed)).empty());
    CHECK(r.entries().empty());
  }
  SUBCASE("a snapshot newer than the loaded one is refused") {
    replayer r{base(100, 5)};
    CHECK_FALSE(r.apply(snap(101, 5, snapshot_kind::compacted)).empty());
  }
}
