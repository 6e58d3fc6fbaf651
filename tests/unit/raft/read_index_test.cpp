// Linearizable reads with ReadIndex: dissertation §6.4.
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

TEST_CASE("§6.4: the leader answers a read at its commit index after a heartbeat round") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("x");
  net.stabilize();
  REQUIRE(net["n1"].read_index(42).ok());
  auto rd = net.process("n1");
  CHECK(rd.read_states.empty()); // leadership not confirmed yet
  auto hbs = net.queued(message_type::heartbeat);
  REQUIRE(hbs.size() == 2);
  CHECK(hbs[0].context == 1);
  net.stabilize();
  REQUIRE(net.at("n1").reads.size() == 1);
  CHECK(net.at("n1").reads[0].request_id == 42);
  CHECK(net.at("n1").reads[0].index == 2);
  CHECK(net.at("n1").reads[0].ok);
}

TEST_CASE("§6.4: one heartbeat round answers every read registered before it") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].read_index(1);
  net["n1"].read_index(2);
  net.stabilize();
  REQUIRE(net.at("n1").reads.size() == 2);
  CHECK(net.at("n1").reads[0].request_id == 1);
  CHECK(net.at("n1").reads[1].request_id == 2);
  // Only one extra heartbeat broadcast was needed for both.
  size_t heartbeats = 0;
  for (const auto& m : net.at("n1").sent)
    heartbeats += m.type == message_type::heartbeat ? 1 : 0;
  CHECK(heartbeats == 2);
}

TEST_CASE("§6.4: heartbeat answers from before the read was registered do not confirm it") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].read_index(1); // round 1
  for (const auto& m : net.take_messages())
    net.deliver(m);
  auto round1_answers = net.take_messages();
  REQUIRE(round1_answers.size() == 2);
  CHECK(round1_answers[0].context == 1);
  net["n1"].read_index(2); // registered after round 1 went out
  for (const auto& m : round1_answers)
    net.deliver(m);
  net.process("n1");
  REQUIRE(net.at("n1").reads.size() == 1);
  CHECK(net.at("n1").reads[0].request_id == 1);
  net.stabilize(); // round 2 confirms read 2
  REQUIRE(net.at("n1").reads.size() == 2);
  CHECK(net.at("n1").reads[1].request_id == 2);
}

TEST_CASE("§6.4: a new leader serves reads only after committing an entry of its term") {
  network net({"n1", "n2", "n3"});
  net.set_drop([](const message& m) { return m.type == message_type::append_entries_response; });
  net.elect("n1");
  REQUIRE(net["n1"].state() == role::leader);
  REQUIRE(net["n1"].read_index(7).ok());
  net.tick_all(3);
  CHECK(net.at("n1").reads.empty());
  net.set_drop({});
  net.tick_all(2);
  REQUIRE(net.at("n1").reads.size() == 1);
  CHECK(net.at("n1").reads[0].ok);
  CHECK(net.at("n1").reads[0].index == 1); // the no-op of its term
}

TEST_CASE("§6.4: a leader cut off from the majority never confirms a read; it is dropped on step-down") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n1");
  REQUIRE(net["n1"].read_index(5).ok());
  for (int i = 0; i < 30 && net["n1"].state() == role::leader; ++i)
    net.tick_all();
  REQUIRE(net["n1"].state() == role::follower);
  net.process("n1");
  REQUIRE(net.at("n1").reads.size() == 1);
  CHECK(net.at("n1").reads[0].request_id == 5);
  CHECK_FALSE(net.at("n1").reads[0].ok);
}

TEST_CASE("§6.4: a single voter answers reads at once; followers refuse with the leader's id") {
  network single({"n1"});
  single.elect("n1");
  single["n1"].read_index(3);
  single.stabilize();
  REQUIRE(single.at("n1").reads.size() == 1);
  CHECK(single.at("n1").reads[0].index == 1);

  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto r = net["n2"].read_index(3);
  CHECK(r.code == errc::not_leader);
  CHECK(r.leader_hint == "n1");
}

TEST_CASE("bounds: pending reads are limited") {
  network net({"n1", "n2", "n3"}, [](config& c) { c.max_pending_reads = 2; });
  net.elect("n1");
  net.isolate("n1");
  CHECK(net["n1"].read_index(1).ok());
  CHECK(net["n1"].read_index(2).ok());
  CHECK(net["n1"].read_index(3).code == errc::too_many_pending_reads);
}
