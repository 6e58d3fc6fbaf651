// Leader election: Raft paper §5.2 and §5.4.1, dissertation §3.4, §4.2.3
// (leader stickiness), §6.2 (check-quorum), §9.3 (randomized timeouts),
// §9.6 (pre-vote).
#include <doctest/doctest.h>

#include <set>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

namespace {

auto no_pre_vote = [](config& c) { c.pre_vote = false; };
auto no_pre_vote_no_check_quorum = [](config& c) {
  c.pre_vote = false;
  c.check_quorum = false;
};

} // namespace

TEST_CASE("§9.3: the election timeout is randomized in [election_ticks, 2*election_ticks)") {
  memory_storage store(voters({"n1", "n2", "n3"}));
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    core c(make_config("n1", seed), store);
    auto t = c.randomized_election_ticks();
    CHECK(t >= 10);
    CHECK(t < 20);
    seen.insert(t);
  }
  CHECK(seen.size() > 5); // actually spread out
}

TEST_CASE("§5.2: a follower that hears nothing for its timeout campaigns and wins a majority") {
  network net({"n1", "n2", "n3"});
  auto timeout = net["n1"].randomized_election_ticks();
  net.tick("n1", timeout - 1);
  CHECK(net["n1"].state() == role::follower);
  net.tick("n1");
  // Pre-vote is on by default: the first step does not touch the term.
  CHECK(net["n1"].state() == role::pre_candidate);
  CHECK(net["n1"].term() == 0);
  net.stabilize();
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].term() == 1);
  for (auto id : {"n2", "n3"}) {
    CHECK(net[id].state() == role::follower);
    CHECK(net[id].leader() == "n1");
    CHECK(net[id].term() == 1);
  }
}

TEST_CASE("§5.2: a node grants at most one vote per term, and the vote is durable before it is sent") {
  memory_storage store(voters({"n1", "n2", "n3"}));
  core n1(make_config("n1"), store);
  auto req = msg(message_type::request_vote, "n2", "n1", 1);
  n1.step(req);
  auto rd = n1.ready();
  REQUIRE(rd.has_hard_state);
  CHECK(rd.hard.term == 1);
  CHECK(rd.hard.vote == "n2");
  CHECK(rd.must_sync);
  CHECK(rd.messages.empty());
  REQUIRE(rd.messages_after_append.size() == 1);
  CHECK(rd.messages_after_append[0].type == message_type::request_vote_response);
  CHECK_FALSE(rd.messages_after_append[0].reject);
  persist_ready(store, rd);
  n1.advance(rd);

  auto other = msg(message_type::request_vote, "n3", "n1", 1);
  n1.step(other);
  rd = n1.ready();
  REQUIRE(rd.messages_after_append.size() == 1);
  CHECK(rd.messages_after_append[0].reject);
  n1.advance(rd);

  // A retransmitted request from the same candidate is granted again.
  n1.step(req);
  rd = n1.ready();
  REQUIRE(rd.messages_after_append.size() == 1);
  CHECK_FALSE(rd.messages_after_append[0].reject);
  n1.advance(rd);
}

TEST_CASE("§5.4.1: votes go only to candidates whose log is at least as up-to-date") {
  memory_storage store(voters({"n1", "n2", "n3"}));
  store.append(ents_with_terms(1, {1, 2, 2}));
  store.set_hard_state(hard_state{2, "", 0});
  struct candidate_log {
    uint64_t last_index, last_term;
    bool granted;
  };
  for (auto c : {candidate_log{3, 1, false}, candidate_log{2, 2, false},
                 candidate_log{3, 2, true}, candidate_log{1, 3, true}}) {
    CAPTURE(c.last_index);
    CAPTURE(c.last_term);
    core n1(make_config("n1"), store);
    auto req = msg(message_type::request_vote, "n2", "n1", 3);
    req.index = c.last_index;
    req.log_term = c.last_term;
    n1.step(req);
    auto rd = n1.ready();
    REQUIRE(rd.messages_after_append.size() == 1);
    CHECK(rd.messages_after_append[0].reject == !c.granted);
    CHECK(n1.term() == 3);
  }
}

TEST_CASE("§3.4: a candidate counts its own vote only after it is durable") {
  network net({"n1", "n2", "n3"}, no_pre_vote);
  net["n1"].campaign();
  CHECK(net["n1"].state() == role::candidate);
  CHECK(net["n1"].term() == 1);
  // n2's grant arrives before n1 persisted its own vote: one vote of three.
  auto grant = msg(message_type::request_vote_response, "n2", "n1", 1);
  net["n1"].step(grant);
  CHECK(net["n1"].state() == role::candidate);
  // Persisting the batch (term 1, vote n1) makes the self-vote count.
  auto rd = net.process("n1");
  CHECK(rd.hard.vote == "n1");
  CHECK(net["n1"].state() == role::leader);
}

TEST_CASE("§5.2: a candidate that hears from a leader of its term becomes its follower") {
  network net({"n1", "n2", "n3"}, no_pre_vote);
  net["n1"].campaign();
  auto app = msg(message_type::append_entries, "n2", "n1", 1);
  net["n1"].step(app);
  CHECK(net["n1"].state() == role::follower);
  CHECK(net["n1"].leader() == "n2");
  CHECK(net["n1"].term() == 1);
}

TEST_CASE("§5.2: a candidate rejected by a majority returns to follower") {
  network net({"n1", "n2", "n3"}, no_pre_vote);
  net["n1"].campaign();
  net.process("n1");
  for (auto from : {"n2", "n3"}) {
    auto no = msg(message_type::request_vote_response, from, "n1", 1);
    no.reject = true;
    net["n1"].step(no);
  }
  CHECK(net["n1"].state() == role::follower);
  CHECK(net["n1"].term() == 1);
}

TEST_CASE("§9.6: pre-vote keeps a partitioned node's term, so it does not disrupt on return") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  REQUIRE(net["n1"].state() == role::leader);
  net.isolate("n3");
  for (int i = 0; i < 100; ++i) {
    net.tick_all();
  }
  // n3 kept trying pre-elections that nobody answered: its term never moved.
  CHECK(net["n3"].term() == 1);
  CHECK(net["n3"].state() != role::leader);
  net.heal();
  net.tick_all(5);
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].term() == 1);
  CHECK(net["n3"].leader() == "n1");
}

TEST_CASE("§9.6: without pre-vote (and without stickiness) a returning node bumps the term") {
  network net({"n1", "n2", "n3"}, no_pre_vote_no_check_quorum);
  net.elect("n1");
  net.isolate("n3");
  net.tick_all(50);
  CHECK(net["n3"].term() > 1);
  net.heal();
  net.tick_all(50);
  // The cluster moved to n3's higher term: the old leadership was disrupted.
  CHECK(net["n1"].term() > 1);
}

TEST_CASE("§9.6: a pre-vote is granted without changing the voter's term or vote") {
  memory_storage store(voters({"n1", "n2", "n3"}));
  store.set_hard_state(hard_state{1, "n3", 0});
  core n1(make_config("n1"), store);
  auto pre = msg(message_type::request_pre_vote, "n2", "n1", 2);
  n1.step(pre);
  auto rd = n1.ready();
  REQUIRE(rd.messages_after_append.size() == 1);
  const auto& r = rd.messages_after_append[0];
  CHECK(r.type == message_type::request_pre_vote_response);
  CHECK_FALSE(r.reject);
  CHECK(r.term == 2); // the future term asked about
  CHECK(n1.term() == 1);
  CHECK(n1.vote() == "n3");
  CHECK_FALSE(rd.has_hard_state);
}

TEST_CASE("§9.6: a pre-candidate rejected with a higher term adopts it as follower") {
  memory_storage store(voters({"n1", "n2", "n3"}));
  core n1(make_config("n1"), store);
  n1.campaign();
  REQUIRE(n1.state() == role::pre_candidate);
  auto no = msg(message_type::request_pre_vote_response, "n2", "n1", 5);
  no.reject = true;
  n1.step(no);
  CHECK(n1.state() == role::follower);
  CHECK(n1.term() == 5);
}

TEST_CASE("§6.2: check-quorum: a leader that does not hear from a majority steps down") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n1");
  // One election timeout to notice that nobody answered in the last round,
  // at most one more for the round itself.
  for (int i = 0; i < 30 && net["n1"].state() == role::leader; ++i)
    net.tick_all();
  CHECK(net["n1"].state() == role::follower);
  CHECK(net["n1"].leader().empty());
}

TEST_CASE("§6.2: without check-quorum an isolated leader keeps believing it leads") {
  network net({"n1", "n2", "n3"}, [](config& c) { c.check_quorum = false; });
  net.elect("n1");
  net.isolate("n1");
  net.tick("n1", 50);
  CHECK(net["n1"].state() == role::leader);
}

TEST_CASE("§4.2.3: leader stickiness: a follower in contact with its leader ignores vote requests") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.tick_all(2); // n2 heard a heartbeat recently
  for (auto type : {message_type::request_vote, message_type::request_pre_vote}) {
    auto req = msg(type, "n3", "n2", 2);
    req.index = net["n3"].log().last_index();
    req.log_term = net["n3"].log().last_term();
    net["n2"].step(req);
    CHECK(net["n2"].term() == 1);
    CHECK(net["n2"].vote() == "n1");
    CHECK(net.take_messages().empty()); // not even a rejection
  }

  // Once the lease ran out (no leader contact for election_ticks) it answers.
  net.isolate("n2");
  net.tick("n2", 10);
  auto pre = msg(message_type::request_pre_vote, "n3", "n2", 2);
  pre.index = net["n3"].log().last_index();
  pre.log_term = net["n3"].log().last_term();
  net["n2"].step(pre);
  auto rd = net["n2"].ready();
  bool granted = false;
  for (const auto& m : rd.messages_after_append)
    if (m.type == message_type::request_pre_vote_response && m.to == "n3" && !m.reject)
      granted = true;
  CHECK(granted);
  net["n2"].advance(rd);
}

TEST_CASE("§4.2.3: a leader in its lease also ignores a disruptive vote request") {
  network net({"n1", "n2", "n3"}, no_pre_vote);
  net.elect("n1");
  auto req = msg(message_type::request_vote, "n3", "n1", 5);
  req.index = 100;
  req.log_term = 100;
  net["n1"].step(req);
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].term() == 1);
}

TEST_CASE("§3.6: a node with a higher term tells a stale leader, which steps down") {
  // Without check-quorum the isolated leader keeps its role (and stickiness
  // is off, so n3 can vote for n2 right away).
  network net({"n1", "n2", "n3"}, [](config& c) { c.check_quorum = false; });
  net.elect("n1");
  net.isolate("n1");
  // n2 leads term 2 while n1 is away.
  net.elect("n2");
  REQUIRE(net["n2"].state() == role::leader);
  REQUIRE(net["n2"].term() == 2);
  net.heal();
  // n1 (still believing it leads term 1) sends a heartbeat; n3 answers with term 2.
  net.tick("n1");
  net.stabilize();
  CHECK(net["n1"].state() == role::follower);
  CHECK(net["n1"].term() == 2);
  CHECK(net["n2"].state() == role::leader);
}

TEST_CASE("§4.2.1: learners and non-members never campaign") {
  memory_storage store(voters({"n1", "n2"}, {"n3"}));
  core n3(make_config("n3"), store);
  for (int i = 0; i < 100; ++i)
    n3.tick();
  n3.campaign();
  CHECK(n3.state() == role::follower);
  CHECK(n3.term() == 0);

  memory_storage empty;
  core joiner(make_config("n9"), empty);
  for (int i = 0; i < 100; ++i)
    joiner.tick();
  CHECK(joiner.state() == role::follower);
}

TEST_CASE("a single voter elects itself once its vote is durable") {
  network net({"n1"});
  net.tick("n1", net["n1"].randomized_election_ticks());
  CHECK(net["n1"].state() == role::candidate); // pre-vote won alone at once
  net.stabilize();
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].commit_index() == 1); // its no-op
}

TEST_CASE("ready reports soft-state changes (role and leader) for the actor layer") {
  network net({"n1", "n2", "n3"});
  net["n2"].campaign();
  auto rd = net["n2"].ready();
  CHECK(rd.soft_state_changed);
  CHECK(rd.soft.state == role::pre_candidate);
  net["n2"].advance(rd);
  bool changed_again = net["n2"].has_ready() && net["n2"].ready().soft_state_changed;
  CHECK_FALSE(changed_again);
}
