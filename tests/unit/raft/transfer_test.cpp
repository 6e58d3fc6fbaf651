// Leadership transfer: dissertation §3.10 (catch the target up, then
// TimeoutNow; stop accepting proposals; abort after an election timeout).
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

namespace {

bool sent_type(const peer& p, message_type t, const node_id& to) {
  for (const auto& m : p.sent)
    if (m.type == t && m.to == to)
      return true;
  return false;
}

} // namespace

TEST_CASE("§3.10: transfer to an up-to-date voter: TimeoutNow, and it wins at once") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  REQUIRE(net["n1"].transfer_leadership("n2").ok());
  net.stabilize(); // no ticks: nobody waits for an election timeout
  CHECK(sent_type(net.at("n1"), message_type::timeout_now, "n2"));
  CHECK(net["n2"].state() == role::leader);
  CHECK(net["n2"].term() == 2);
  CHECK(net["n1"].state() == role::follower);
  CHECK(net["n1"].leader() == "n2");
  // The target skipped pre-vote and marked its requests, so that voters still
  // in n1's lease (leader stickiness) answered.
  bool transfer_flag = false;
  for (const auto& m : net.at("n2").sent)
    if (m.type == message_type::request_vote)
      transfer_flag = m.transfer;
  CHECK(transfer_flag);
}

TEST_CASE("§3.10: a lagging target is caught up before it gets TimeoutNow") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n2");
  for (int i = 0; i < 3; ++i)
    net["n1"].propose("x");
  net.stabilize();
  net.heal();
  REQUIRE(net["n1"].transfer_leadership("n2").ok());
  net.process("n1");
  CHECK(net.queued(message_type::timeout_now).empty());
  CHECK_FALSE(net.queued(message_type::append_entries).empty());
  net.stabilize();
  CHECK(net["n2"].state() == role::leader);
  CHECK(net["n2"].log().last_index() == 5); // no-op, three entries, its own no-op
}

TEST_CASE("§3.10: proposals are refused during a transfer, which is aborted after an election timeout") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n2");
  net["n1"].propose("x");
  net.stabilize();
  REQUIRE(net["n1"].transfer_leadership("n2").ok());
  CHECK(net["n1"].transfer_target() == "n2");
  auto r = net["n1"].propose("y");
  CHECK(r.code == errc::leader_transfer_in_progress);
  CHECK(r.leader_hint == "n1");
  CHECK(net["n1"].propose_conf_change(conf_change{conf_change_type::add_learner, "n4"}).code
        == errc::leader_transfer_in_progress);
  net.tick_all(10);
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].transfer_target().empty());
  CHECK(net["n1"].propose("y").ok());
}

TEST_CASE("§3.10: only a voter can be the target; only the leader transfers") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.add("n4", std::make_unique<memory_storage>(), 4);
  net["n1"].propose_conf_change(conf_change{conf_change_type::add_learner, "n4"});
  net.stabilize();
  CHECK(net["n1"].transfer_leadership("n9").code == errc::unknown_node);
  CHECK(net["n1"].transfer_leadership("n4").code == errc::unknown_node);
  CHECK(net["n2"].transfer_leadership("n3").code == errc::not_leader);
  CHECK(net["n1"].transfer_leadership("n1").ok()); // already there
  CHECK(net["n1"].transfer_target().empty());
  // A learner that receives TimeoutNow ignores it.
  net["n4"].step(msg(message_type::timeout_now, "n1", "n4", 1));
  CHECK(net["n4"].state() == role::follower);
}
