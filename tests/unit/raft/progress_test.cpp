// Per-follower progress and flow control (etcd's Progress / Inflights shape).
#include <doctest/doctest.h>

#include "protocols/raft/progress.hpp"

using namespace dsync::raft;

TEST_CASE("inflights: bounded by messages and by bytes; freed in order") {
  inflights w(3, 100);
  w.add(5, 10);
  w.add(7, 10);
  CHECK_FALSE(w.full());
  w.add(9, 10);
  CHECK(w.full()); // 3 messages
  w.free_le(7);
  CHECK(w.count() == 1);
  CHECK(w.bytes() == 10);
  w.add(12, 95);
  CHECK(w.full()); // 105 bytes
  w.free_first();
  CHECK(w.count() == 1);
}

TEST_CASE("progress: probe sends one message at a time") {
  progress pr(5, 10, 1000, false);
  CHECK(pr.state() == progress_state::probe);
  CHECK_FALSE(pr.is_paused());
  pr.sent_entries(7, 3, 30);
  CHECK(pr.is_paused());
  CHECK(pr.next() == 5); // probe does not advance next optimistically
  pr.resume_probe();
  CHECK_FALSE(pr.is_paused());
}

TEST_CASE("progress: replicate advances next optimistically and pauses on a full window") {
  progress pr(5, 2, 1000, false);
  pr.maybe_update(4);
  pr.become_replicate();
  CHECK(pr.next() == 5);
  pr.sent_entries(6, 2, 20);
  CHECK(pr.next() == 7);
  pr.sent_entries(8, 2, 20);
  CHECK(pr.is_paused());
  CHECK(pr.maybe_update(6));
  pr.window_free_le(6);
  CHECK_FALSE(pr.is_paused());
  CHECK_FALSE(pr.maybe_update(5)); // stale
  CHECK(pr.match() == 6);
}

TEST_CASE("progress: rejections move next back to the hint, never below match+1; stale ones are ignored") {
  progress pr(10, 10, 1000, false);
  // Probe: only the answer to the outstanding probe (prev = next-1 = 9) counts.
  CHECK_FALSE(pr.maybe_decrease_to(5, 3));
  CHECK(pr.maybe_decrease_to(9, 4));
  CHECK(pr.next() == 4);
  pr.maybe_update(3);
  pr.become_replicate();
  pr.sent_entries(8, 5, 50);
  CHECK_FALSE(pr.maybe_decrease_to(2, 1)); // at or below match: stale
  CHECK(pr.maybe_decrease_to(6, 1));       // hint below match+1 is clamped
  CHECK(pr.state() == progress_state::probe);
  CHECK(pr.next() == 4);
}

TEST_CASE("progress: after a snapshot, probing resumes after the snapshot index") {
  progress pr(2, 10, 1000, false);
  pr.become_snapshot(20, nullptr);
  CHECK(pr.is_paused());
  CHECK_FALSE(pr.maybe_decrease_to(1, 1)); // the transfer decides
  pr.maybe_update(20);
  pr.become_probe();
  CHECK(pr.next() == 21);
  CHECK(pr.pending_snapshot() == 0);
}
