// raft_log: stable entries from storage plus the unstable tail.
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

#include <stdexcept>

#include "protocols/raft/log.hpp"

using namespace dsync::raft;

namespace {
const auto ents = dsync::raft::test::ents_with_terms;
} // namespace

TEST_CASE("log: reads span storage and the unstable tail") {
  memory_storage s;
  s.append(ents(1, {1, 1}));
  raft_log log(s);
  CHECK(log.last_index() == 2);
  log.truncate_and_append(ents(3, {2, 2}));
  CHECK(log.last_index() == 4);
  CHECK(log.term(4) == 2u);
  CHECK(log.term(0) == 0u);
  CHECK_FALSE(log.term(5).has_value());
  std::vector<entry> out;
  REQUIRE(log.slice(1, 5, UINT64_MAX, UINT64_MAX, out));
  CHECK(out.size() == 4);
  REQUIRE(log.slice(2, 5, UINT64_MAX, 2, out)); // count limit
  CHECK(out.size() == 2);
  CHECK(out.back().index == 3);
  CHECK(log.unstable_entries().size() == 2);
}

TEST_CASE("§5.4.1: is_up_to_date compares last term, then last index") {
  memory_storage s;
  s.append(ents(1, {1, 2, 2}));
  raft_log log(s);
  CHECK(log.is_up_to_date(3, 2));
  CHECK(log.is_up_to_date(1, 3));
  CHECK_FALSE(log.is_up_to_date(2, 2));
  CHECK_FALSE(log.is_up_to_date(9, 1));
}

TEST_CASE("§5.3: find_conflict and truncate_and_append replace a diverging suffix") {
  memory_storage s;
  s.append(ents(1, {1, 1, 2, 2}));
  raft_log log(s);
  log.set_committed(2);
  CHECK(log.find_conflict(ents(2, {1, 2})) == 0);      // all match
  CHECK(log.find_conflict(ents(3, {2, 2, 3})) == 5);   // new entry
  CHECK(log.find_conflict(ents(3, {3, 3})) == 3);      // term differs
  log.truncate_and_append(ents(3, {3, 3}));
  CHECK(log.last_index() == 4);
  CHECK(log.term(3) == 3u);
  // Storage still holds the stale entries until the tail is persisted.
  uint64_t t = 0;
  s.term(3, t);
  CHECK(t == 2);
  CHECK_THROWS_AS(log.truncate_and_append(ents(2, {9})), std::logic_error); // below commit
}

TEST_CASE("log: stable_to ignores an acknowledgement for entries replaced meanwhile") {
  memory_storage s;
  raft_log log(s);
  log.truncate_and_append(ents(1, {1, 1, 1}));
  auto handed_out = log.unstable_entries(); // ready() copies them
  log.truncate_and_append(ents(2, {2}));      // conflict before advance()
  s.append(handed_out);
  log.stable_to(3, 1); // the old entry 3 is gone
  CHECK(log.unstable_entries().size() == 2);
  log.stable_to(1, 1);
  CHECK(log.unstable_entries().size() == 1);
  CHECK(log.stable_last_index() == 1);
}

TEST_CASE("log: committed entries are handed out from applied+1, bounded by bytes") {
  memory_storage s;
  s.append(ents(1, {1, 1, 1, 1}));
  raft_log log(s);
  log.commit_to(3);
  auto next = log.next_committed_entries(UINT64_MAX);
  CHECK(next.size() == 3);
  CHECK(log.next_committed_entries(1).size() == 1);
  log.applied_to(2);
  next = log.next_committed_entries(UINT64_MAX);
  REQUIRE(next.size() == 1);
  CHECK(next[0].index == 3);
  CHECK_THROWS_AS(log.commit_to(9), std::logic_error);
  CHECK_THROWS_AS(log.applied_to(4), std::logic_error);
}

TEST_CASE("§7: restore replaces the log with a pending snapshot") {
  memory_storage s;
  s.append(ents(1, {1, 1}));
  raft_log log(s);
  log.restore(snapshot{snapshot_metadata{10, 3, {}}, "data"});
  CHECK(log.first_index() == 11);
  CHECK(log.last_index() == 10);
  CHECK(log.term(10) == 3u);
  CHECK_FALSE(log.term(2).has_value());
  CHECK(log.committed() == 10);
  CHECK(log.pending_snapshot() != nullptr);
  CHECK_FALSE(log.has_next_committed_entries()); // the snapshot goes first
  log.truncate_and_append(ents(11, {3}));
  CHECK(log.last_index() == 11);
}
