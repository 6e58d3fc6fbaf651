// memory_storage: the reference behaviour of the storage contract
// (protocols/raft/storage.hpp) that the WAL must also follow. (Not named
// storage_test.cpp: CTest selects files by suffix and would also run
// tests/unit/storage/wal_storage_test.cpp.)
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

#include "protocols/raft/storage.hpp"

using namespace dsync::raft;

namespace {
const auto ents = dsync::raft::test::ents_with_terms;
} // namespace

TEST_CASE("storage: an empty storage has the snapshot position 0 and no entries") {
  memory_storage s;
  CHECK(s.first_index() == 1);
  CHECK(s.last_index() == 0);
  uint64_t t = 99;
  CHECK(s.term(0, t) == storage_errc::ok);
  CHECK(t == 0);
  CHECK(s.term(1, t) == storage_errc::unavailable);
  auto init = s.load_initial_state();
  CHECK(init.snapshot.config.empty());
  memory_storage boot(configuration{{"a", "b"}, {}});
  CHECK(boot.load_initial_state().snapshot.config.voters.size() == 2);
}

TEST_CASE("storage: append overwrites the suffix from the first new index") {
  memory_storage s;
  REQUIRE(s.append(ents(1, {1, 1, 2, 2})) == storage_errc::ok);
  REQUIRE(s.append(ents(3, {3})) == storage_errc::ok);
  CHECK(s.last_index() == 3);
  uint64_t t = 0;
  s.term(3, t);
  CHECK(t == 3);
  CHECK(s.append(ents(5, {3})) == storage_errc::unavailable); // gap
}

TEST_CASE("storage: entries() honours the byte limit but returns at least one entry") {
  memory_storage s;
  s.append(ents(1, {1, 1, 1, 1}));
  std::vector<entry> out;
  REQUIRE(s.entries(1, 5, 0, out) == storage_errc::ok);
  CHECK(out.size() == 1);
  REQUIRE(s.entries(1, 5, 2 * entry_size_bytes(out[0]), out) == storage_errc::ok);
  CHECK(out.size() == 2);
  CHECK(s.entries(2, 6, 1000, out) == storage_errc::unavailable);
}

TEST_CASE("storage: compact keeps later entries; apply_snapshot replaces the log") {
  memory_storage s;
  s.append(ents(1, {1, 1, 2, 2, 2}));
  snapshot snap{snapshot_metadata{3, 2, configuration{{"a"}, {}}}, "state"};
  REQUIRE(s.compact(snap) == storage_errc::ok);
  CHECK(s.first_index() == 4);
  CHECK(s.last_index() == 5);
  uint64_t t = 0;
  CHECK(s.term(3, t) == storage_errc::ok);
  CHECK(t == 2);
  CHECK(s.term(2, t) == storage_errc::compacted);
  std::vector<entry> out;
  CHECK(s.entries(3, 5, 1000, out) == storage_errc::compacted);
  CHECK(s.compact(snap) == storage_errc::out_of_date);
  snapshot beyond{snapshot_metadata{9, 3, {}}, ""};
  CHECK(s.compact(beyond) == storage_errc::unavailable);

  REQUIRE(s.apply_snapshot(beyond) == storage_errc::ok);
  CHECK(s.first_index() == 10);
  CHECK(s.last_index() == 9);
  CHECK(s.load_initial_state().snapshot.index == 9);
  CHECK(s.apply_snapshot(snap) == storage_errc::out_of_date);
  // Appending right after the snapshot works; entries it covers are skipped.
  REQUIRE(s.append(ents(8, {3, 3, 4})) == storage_errc::ok);
  CHECK(s.last_index() == 10);
}
