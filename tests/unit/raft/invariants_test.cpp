// The simulation's invariant checker (tests/sim/raft_invariants.hpp) must be
// able to fail: feed it deliberately broken histories.
#include <doctest/doctest.h>

#include "tests/sim/raft_invariants.hpp"

using dsync::sim::raft_checker;

TEST_CASE("checker: two leaders in one term violate election safety (Raft paper Figure 3)") {
  raft_checker c;
  c.on_leader("n1", 3);
  c.on_leader("n1", 3); // the same leader observed twice is fine
  CHECK(c.ok());
  c.on_leader("n2", 3);
  REQUIRE_FALSE(c.ok());
  CHECK(c.violation().find("two leaders in term 3") != std::string::npos);
}

TEST_CASE("checker: a term or commit index that decreases is reported") {
  raft_checker c;
  c.on_term("n1", 0, 5);
  c.on_term("n1", 1, 2); // a new incarnation starts from what it loaded...
  CHECK(c.ok());
  c.on_term("n1", 1, 1); // ...but never goes back within one
  CHECK_FALSE(c.ok());

  raft_checker d;
  d.on_persisted("n1", 4, 10);
  d.on_persisted("n1", 4, 9); // durable commit went back
  CHECK_FALSE(d.ok());

  raft_checker e;
  e.on_persisted("n1", 4, 10);
  e.on_restart("n1", 3, 10); // restarted below its durable term
  CHECK_FALSE(e.ok());
}

TEST_CASE("checker: log matching: one (index, term) names one entry with one predecessor (§5.3)") {
  raft_checker c;
  c.on_entry("n1", 7, 2, 2, 100);
  c.on_entry("n2", 7, 2, 2, 100);
  CHECK(c.ok());
  c.on_entry("n3", 7, 2, 2, 101);
  CHECK_FALSE(c.ok());

  raft_checker d;
  d.on_entry("n1", 7, 2, 1, 100);
  d.on_entry("n2", 7, 2, 2, 100);
  CHECK_FALSE(d.ok());
}

TEST_CASE("checker: a committed entry that changes is a lost commit; leaders must hold commits (§5.4)") {
  raft_checker c;
  CHECK(c.on_committed("n1", 4, 1, 10));
  CHECK_FALSE(c.on_committed("n2", 4, 1, 10)); // seen before, same: fine
  CHECK(c.ok());
  c.on_committed("n3", 4, 2, 20);
  CHECK_FALSE(c.ok());

  raft_checker d;
  d.on_leader_holds("n2", 5, 4, false);
  CHECK_FALSE(d.ok());

  raft_checker e;
  e.on_commit_durability(4, 1, 3);
  CHECK_FALSE(e.ok());
  raft_checker f;
  f.on_commit_durability(4, 2, 3);
  CHECK(f.ok());
}

TEST_CASE("checker: state machine safety: same entry and state at each index, applied in order (§5.4.3)") {
  raft_checker c;
  c.on_committed("n1", 1, 1, 10);
  c.on_applied("n1", 1, 1, 10, 0, 77);
  c.on_applied("n2", 1, 1, 10, 0, 77);
  CHECK(c.ok());
  c.on_applied("n3", 1, 1, 10, 0, 78); // other resulting state
  CHECK_FALSE(c.ok());

  raft_checker d;
  d.on_committed("n1", 1, 1, 10);
  d.on_applied("n2", 1, 2, 10, 0, 1); // not the committed entry
  CHECK_FALSE(d.ok());

  raft_checker e;
  e.on_applied("n1", 3, 1, 10, 1, 5); // skipped index 2
  CHECK_FALSE(e.ok());
}

TEST_CASE("checker: a read served below a commit known when it was issued is not linearizable (§6.4)") {
  raft_checker c;
  c.on_committed("n1", 9, 2, 1);
  c.on_read_issued("n2", 1);
  c.on_read_served("n2", 1, 9);
  CHECK(c.ok());
  c.on_read_issued("n2", 2);
  c.on_read_served("n2", 2, 8);
  CHECK_FALSE(c.ok());
}
