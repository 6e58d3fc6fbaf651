// Log replication: Raft paper §5.3 (log matching, conflict resolution),
// §5.4.2 (commit rule, Figure 8), dissertation §10.2 (batching and
// pipelining), §6.4 (no-op of a new leader), flow control and bounds.
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

namespace {

std::vector<entry> log_of(core& c) {
  std::vector<entry> out;
  c.log().slice(c.log().first_index(), c.log().last_index() + 1, UINT64_MAX, UINT64_MAX, out);
  return out;
}

std::vector<uint64_t> terms_of(core& c) {
  std::vector<uint64_t> out;
  for (const auto& e : log_of(c))
    out.push_back(e.term);
  return out;
}

std::vector<message> appends_to(const std::vector<message>& msgs, const node_id& to) {
  std::vector<message> out;
  for (const auto& m : msgs)
    if (m.type == message_type::append_entries && m.to == to)
      out.push_back(m);
  return out;
}

} // namespace

TEST_CASE("§6.4: a new leader appends a no-op entry of its term and commits it") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto log = log_of(net["n1"]);
  REQUIRE(log.size() == 1);
  CHECK(log[0].type == entry_type::noop);
  CHECK(log[0].term == 1);
  for (auto id : {"n1", "n2", "n3"})
    CHECK(net[id].commit_index() == 1);
}

TEST_CASE("§5.3: a proposal is replicated, committed by a majority and applied everywhere") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto r = net["n1"].propose("x=1");
  REQUIRE(r.ok());
  CHECK(r.index == 2);
  CHECK(r.term == 1);
  net.stabilize();
  for (auto id : {"n1", "n2", "n3"}) {
    CHECK(net[id].commit_index() == 2);
    CHECK(applied_data(net.at(id)) == std::vector<std::string>{"x=1"});
  }
}

TEST_CASE("§5.3: a majority suffices: one follower down does not block commitment") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n3");
  net["n1"].propose("a");
  net.stabilize();
  CHECK(net["n1"].commit_index() == 2);
  CHECK(net["n3"].commit_index() == 1);
  net.isolate("n2");
  net["n1"].propose("b");
  net.stabilize();
  CHECK(net["n1"].commit_index() == 2); // only the leader has "b": no majority
}

TEST_CASE("a follower refuses proposals and names the leader (the actor forwards them)") {
  network net({"n1", "n2", "n3"});
  auto before = net["n2"].propose("x");
  CHECK(before.code == errc::not_leader);
  CHECK(before.leader_hint.empty()); // no leader known yet
  net.elect("n1");
  auto r = net["n2"].propose("x");
  CHECK(r.code == errc::not_leader);
  CHECK(r.leader_hint == "n1");
  CHECK(net["n2"].read_index(1).code == errc::not_leader);
}

TEST_CASE("acknowledgements are released only after the entries are persisted") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("a");
  auto msgs = net.take_messages();
  auto to_n2 = appends_to(msgs, "n2");
  REQUIRE(to_n2.size() == 1);
  net["n2"].step(to_n2[0]);
  auto rd = net["n2"].ready();
  CHECK(rd.entries.size() == 1);
  CHECK(rd.must_sync);
  CHECK(rd.messages.empty());
  REQUIRE(rd.messages_after_append.size() == 1);
  CHECK(rd.messages_after_append[0].type == message_type::append_entries_response);
  CHECK(rd.messages_after_append[0].index == 2);
  net["n2"].advance(rd);
}

TEST_CASE("§5.3 Figure 7: conflicting follower entries are overwritten, with fast back-off") {
  // Leader log of Figure 7 (terms by index) and follower (f).
  std::vector<uint64_t> leader_terms{1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  std::vector<uint64_t> f_terms{1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
  auto conf = voters({"n1", "n2", "n3"});
  auto s1 = std::make_unique<memory_storage>(conf);
  auto s2 = std::make_unique<memory_storage>(conf);
  auto s3 = std::make_unique<memory_storage>(conf);
  s1->append(ents_with_terms(1, leader_terms));
  s3->append(ents_with_terms(1, leader_terms));
  s2->append(ents_with_terms(1, f_terms));
  for (auto* s : {s1.get(), s2.get(), s3.get()})
    s->set_hard_state(hard_state{7, "", 0});
  network net({});
  net.add("n1", std::move(s1), 1);
  net.add("n2", std::move(s2), 2);
  net.add("n3", std::move(s3), 3);
  net.elect("n1");
  REQUIRE(net["n1"].state() == role::leader);
  CHECK(net["n1"].term() == 8);
  auto expected = leader_terms;
  expected.push_back(8); // the no-op
  CHECK(terms_of(net["n2"]) == expected);
  CHECK(net["n2"].commit_index() == 11);
  // The conflict hint skips a whole term per round trip: 2 rejections, not 8.
  size_t rejections = 0;
  for (const auto& m : net.at("n2").sent)
    if (m.type == message_type::append_entries_response && m.reject)
      ++rejections;
  CHECK(rejections == 2);
}

TEST_CASE("§5.3: a follower missing entries reports its end, and the leader jumps there") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n3");
  for (int i = 0; i < 20; ++i)
    net["n1"].propose("e" + std::to_string(i));
  net.stabilize();
  net.heal();
  net.tick("n1");
  net.stabilize();
  CHECK(net["n3"].log().last_index() == 21);
  size_t rejections = 0;
  for (const auto& m : net.at("n3").sent)
    if (m.type == message_type::append_entries_response && m.reject) {
      ++rejections;
      CHECK(m.hint_term == 0);
      CHECK(m.hint_index == 2);
    }
  CHECK(rejections == 1);
}

TEST_CASE("§5.3: duplicated and reordered appends are idempotent") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("a");
  auto first = appends_to(net.take_messages(), "n2");
  net["n1"].propose("b");
  auto second = appends_to(net.take_messages(), "n2");
  REQUIRE(first.size() == 1);
  REQUIRE(second.size() == 1);
  net.deliver(second[0]); // arrives first: gap, rejected
  net.deliver(first[0]);
  net.deliver(first[0]);  // duplicate
  net.deliver(second[0]);
  net.deliver(first[0]);  // stale, after the newer one: must not truncate
  net.process("n2");
  CHECK(net["n2"].log().last_index() == 3);
  net.queue().clear();
  net.stabilize();
  CHECK(terms_of(net["n2"]) == std::vector<uint64_t>{1, 1, 1});
}

TEST_CASE("§5.3: a follower commits no further than the entries this append verified") {
  // n2 holds a stale entry 3 (term 1) past what the leader's message covers:
  // a commit index of 3 from the leader must not commit that stale entry.
  memory_storage store(voters({"n1", "n2", "n3"}));
  store.append(ents_with_terms(1, {1, 1, 1}));
  store.set_hard_state(hard_state{2, "", 1});
  core n2(make_config("n2"), store);
  auto app = msg(message_type::append_entries, "n1", "n2", 2);
  app.index = 1;
  app.log_term = 1;
  app.entries = ents_with_terms(2, {1}); // matches n2's entry 2
  app.commit = 3;                        // the leader's entry 3 is another one
  n2.step(app);
  CHECK(n2.commit_index() == 2);
  CHECK(n2.log().last_index() == 3); // the unverified entry stays, uncommitted
}

TEST_CASE("§5.4.2 Figure 8: a leader does not commit an entry of an older term by counting replicas") {
  // s1 led term 2 and wrote index 2; now it leads term 4 (its no-op is index 3).
  auto conf = voters({"s1", "s2", "s3", "s4", "s5"});
  memory_storage store(conf);
  store.append(ents_with_terms(1, {1, 2}));
  store.set_hard_state(hard_state{3, "", 1});
  core s1(make_config("s1"), store);
  auto drain = [&] {
    auto rd = s1.ready();
    persist_ready(store, rd);
    s1.advance(rd);
    return rd;
  };
  s1.campaign();
  for (auto from : {"s2", "s3"})
    s1.step(msg(message_type::request_pre_vote_response, from, "s1", 4));
  REQUIRE(s1.state() == role::candidate);
  drain(); // own vote durable
  for (auto from : {"s2", "s3"})
    s1.step(msg(message_type::request_vote_response, from, "s1", 4));
  REQUIRE(s1.state() == role::leader);
  drain(); // no-op durable: s1's match is 3
  REQUIRE(s1.log().last_index() == 3);

  // s2 and s3 acknowledge index 2 (term 2): it is on a majority (s1, s2, s3).
  for (auto from : {"s2", "s3"}) {
    auto ack = msg(message_type::append_entries_response, from, "s1", 4);
    ack.index = 2;
    s1.step(ack);
  }
  CHECK(s1.progress_of("s2")->match() == 2);
  CHECK(s1.progress_of("s3")->match() == 2);
  CHECK(s1.commit_index() == 1); // not of term 4: not committed by counting

  // Once the no-op of term 4 is on a majority, it commits, and index 2 with it.
  for (auto from : {"s2", "s3"}) {
    auto ack = msg(message_type::append_entries_response, from, "s1", 4);
    ack.index = 3;
    s1.step(ack);
  }
  CHECK(s1.commit_index() == 3);
}

TEST_CASE("§5.4.2 Figure 8: why: an old-term entry on a majority can still be overwritten") {
  // Index 2 from term 2 is on s1, s2, s3 (a majority); s5 holds index 2 from
  // term 3. With s1 gone, s5 (last term 3) wins votes from s2, s3, s4 and
  // replaces index 2 everywhere. Had s1 committed it by counting, a
  // committed entry would have been lost.
  auto conf = voters({"s1", "s2", "s3", "s4", "s5"});
  std::map<node_id, std::vector<uint64_t>> logs{
    {"s1", {1, 2}}, {"s2", {1, 2}}, {"s3", {1, 2}}, {"s4", {1}}, {"s5", {1, 3}}};
  network net({});
  uint64_t seed = 1;
  for (auto& [id, terms] : logs) {
    auto s = std::make_unique<memory_storage>(conf);
    s->append(ents_with_terms(1, terms));
    s->set_hard_state(hard_state{4, "", 1});
    net.add(id, std::move(s), seed++);
  }
  net.isolate("s1");
  net.elect("s5");
  REQUIRE(net["s5"].state() == role::leader);
  net.stabilize();
  for (auto id : {"s2", "s3", "s4", "s5"}) {
    CAPTURE(id);
    CHECK(net[id].log().match_term(2, 3));
    CHECK(net[id].commit_index() == 3);
  }
}

TEST_CASE("§5.4.2: an older-term entry is committed indirectly with the current term's no-op") {
  auto conf = voters({"n1", "n2", "n3"});
  network net({});
  uint64_t seed = 1;
  for (auto id : {"n1", "n2", "n3"}) {
    auto s = std::make_unique<memory_storage>(conf);
    s->append(ents_with_terms(1, std::string(id) == "n3" ? std::vector<uint64_t>{1}
                                                          : std::vector<uint64_t>{1, 2}));
    s->set_hard_state(hard_state{2, "", 1});
    net.add(id, std::move(s), seed++);
  }
  net.elect("n1");
  CHECK(net["n1"].term() == 3);
  CHECK(net["n1"].commit_index() == 3);
  CHECK(net["n3"].log().match_term(2, 2));
}

TEST_CASE("§10.2: replicate state pipelines up to max_inflight_msgs appends, then pauses") {
  network net({"n1", "n2", "n3"}, [](config& c) {
    c.max_inflight_msgs = 2;
    c.max_entries_per_msg = 1;
  });
  net.elect("n1");
  REQUIRE(net["n1"].progress_of("n2")->state() == progress_state::replicate);
  for (int i = 0; i < 5; ++i)
    REQUIRE(net["n1"].propose("p" + std::to_string(i)).ok());
  auto msgs = net.take_messages();
  auto to_n2 = appends_to(msgs, "n2");
  REQUIRE(to_n2.size() == 2); // the window, not the 5 entries
  CHECK(to_n2[0].entries.size() == 1);
  CHECK(to_n2[0].entries[0].index == 2);
  CHECK(to_n2[1].entries[0].index == 3);
  // Pipelined: the second was sent before the first was acknowledged.
  CHECK(to_n2[1].index == 2);
  const auto* pr = net["n1"].progress_of("n2");
  CHECK(pr->window().count() == 2);
  CHECK(pr->is_paused());
  CHECK(pr->next() == 4);

  // One acknowledgement frees one slot: exactly one more append goes out.
  net.deliver(to_n2[0]);
  auto acks = net.take_messages();
  for (const auto& m : acks)
    if (m.to == "n1")
      net.deliver(m);
  auto more = appends_to(net.take_messages(), "n2");
  REQUIRE(more.size() == 1);
  CHECK(more[0].entries[0].index == 4);
}

TEST_CASE("§10.2: batching: one append carries many entries, bounded by max_msg_bytes") {
  network net({"n1", "n2", "n3"}, [](config& c) { c.max_msg_bytes = 100; });
  net.elect("n1");
  // entry_size_bytes = 24 + payload: two 20-byte payloads fit, a third does not.
  for (int i = 0; i < 5; ++i)
    net["n1"].propose(std::string(20, static_cast<char>('a' + i)));
  auto to_n2 = appends_to(net.take_messages(), "n2");
  REQUIRE(to_n2.size() == 3);
  CHECK(to_n2[0].entries.size() == 2);
  CHECK(to_n2[1].entries.size() == 2);
  CHECK(to_n2[2].entries.size() == 1);
  // An entry above the message limit still travels, alone.
  net["n1"].propose(std::string(500, 'z'));
  to_n2 = appends_to(net.take_messages(), "n2");
  REQUIRE(to_n2.size() == 1);
  CHECK(to_n2[0].entries.size() == 1);
}

TEST_CASE("§10.2: max_entries_per_msg bounds the entries of one append") {
  network net({"n1", "n2", "n3"}, [](config& c) { c.max_entries_per_msg = 3; });
  net.elect("n1");
  for (int i = 0; i < 7; ++i)
    net["n1"].propose("x");
  auto to_n2 = appends_to(net.take_messages(), "n2");
  REQUIRE(to_n2.size() == 3);
  CHECK(to_n2[0].entries.size() == 3);
  CHECK(to_n2[1].entries.size() == 3);
  CHECK(to_n2[2].entries.size() == 1);
}

TEST_CASE("probe state: one append at a time until the follower answers or a heartbeat returns") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].report_unreachable("n2");
  CHECK(net["n1"].progress_of("n2")->state() == progress_state::probe);
  net["n1"].propose("a");
  CHECK(appends_to(net.take_messages(), "n2").size() == 1);
  net["n1"].propose("b");
  auto msgs = net.take_messages();
  CHECK(appends_to(msgs, "n2").empty()); // paused
  CHECK(appends_to(msgs, "n3").size() == 1);
  // A heartbeat response lets the next probe out.
  auto hb = msg(message_type::heartbeat_response, "n2", "n1", 1);
  net["n1"].step(hb);
  CHECK(appends_to(net.take_messages(), "n2").size() == 1);
}

TEST_CASE("probe state: a probe answered at the known match returns the follower to replicate") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].report_unreachable("n2"); // n2 is in fact fully caught up
  REQUIRE(net["n1"].progress_of("n2")->state() == progress_state::probe);
  net.tick_all(1); // heartbeat response -> empty probe -> answer at match
  CHECK(net["n1"].progress_of("n2")->state() == progress_state::replicate);
}

TEST_CASE("bounds: proposals are refused while the uncommitted tail is full (entries)") {
  network net({"n1", "n2", "n3"}, [](config& c) { c.max_uncommitted_entries = 5; });
  net.elect("n1");
  net.isolate("n1");
  for (int i = 0; i < 5; ++i)
    CHECK(net["n1"].propose("x").ok());
  auto r = net["n1"].propose("x");
  CHECK(r.code == errc::too_many_uncommitted);
  net.heal();
  net.tick_all(3);
  CHECK(net["n1"].commit_index() == 6);
  CHECK(net["n1"].propose("x").ok());
}

TEST_CASE("bounds: proposals are refused while the uncommitted tail is full (bytes)") {
  network net({"n1", "n2", "n3"}, [](config& c) {
    c.max_uncommitted_bytes = 200;
    c.max_entry_bytes = 150;
  });
  net.elect("n1");
  net.isolate("n1");
  CHECK(net["n1"].propose(std::string(150, 'a')).ok()); // always one entry
  CHECK(net["n1"].uncommitted_bytes() == 174);
  CHECK(net["n1"].propose(std::string(10, 'b')).code == errc::too_many_uncommitted);
  CHECK(net["n1"].propose(std::string(151, 'c')).code == errc::entry_too_large);
  net.heal();
  net.tick_all(3);
  CHECK(net["n1"].uncommitted_bytes() == 0);
  CHECK(net["n1"].propose(std::string(10, 'b')).ok());
}

TEST_CASE("§5.3: heartbeats carry the commit index, never beyond the follower's match") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n3");
  net["n1"].propose("a");
  net.stabilize();
  REQUIRE(net["n1"].commit_index() == 2);
  net.tick("n1");
  net.process("n1");
  auto hbs = net.queued(message_type::heartbeat);
  REQUIRE(hbs.size() == 2);
  for (const auto& m : hbs)
    CHECK(m.commit == (m.to == "n2" ? 2u : 1u));
}

TEST_CASE("messages carry the group id; messages of other groups or nodes are refused") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  for (const auto& m : net.at("n1").sent)
    CHECK(m.group == 7);
  auto m = msg(message_type::heartbeat, "n1", "n2", 5);
  m.group = 8;
  CHECK(net["n2"].step(m) == errc::wrong_group);
  m.group = 7;
  m.to = "n3";
  CHECK(net["n2"].step(m) == errc::not_addressed);
  CHECK(net["n2"].term() == 1);
}

TEST_CASE("a crash loses what was not persisted; term, vote and log that were persisted survive") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("a");
  auto to_n2 = appends_to(net.take_messages(), "n2");
  REQUIRE(to_n2.size() == 1);
  net["n2"].step(to_n2[0]);
  // n2 crashes before handling its ready batch.
  net.restart("n2");
  CHECK(net["n2"].log().last_index() == 1);
  CHECK(net["n2"].term() == 1);
  CHECK(net["n2"].vote() == "n1");
  // The leader notices on the next heartbeat round and resends.
  net.tick_all(2);
  CHECK(net["n2"].log().last_index() == 2);
  CHECK(applied_data(net.at("n2")) == std::vector<std::string>{"a"});
}

TEST_CASE("ready contract: batches are advanced once each, in order") {
  network net({"n1"});
  net.elect("n1");
  REQUIRE(net["n1"].propose("a").ok());
  auto first = net["n1"].ready();
  REQUIRE(net["n1"].propose("b").ok());
  REQUIRE(net["n1"].has_ready());
  auto second = net["n1"].ready();
  CHECK(second.seq == first.seq + 1);
  CHECK(net["n1"].outstanding_readies() == 2);
  CHECK_THROWS_AS(net["n1"].advance(second), std::logic_error);
  persist_ready(*net.at("n1").store, first);
  net["n1"].advance(first);
  CHECK_THROWS_AS(net["n1"].advance(first), std::logic_error);
  persist_ready(*net.at("n1").store, second);
  net["n1"].advance(second);
  CHECK(net["n1"].outstanding_readies() == 0);
  CHECK_THROWS_AS(net["n1"].advance(second), std::logic_error);
}

// Pipelining: the leader writes and sends the next batch while the previous one syncs.
TEST_CASE("pipelined batches carry each entry once and the leader counts only synced entries") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto& leader = net["n1"];
  REQUIRE(leader.propose("a").ok());
  auto rd1 = leader.ready();
  REQUIRE(rd1.entries.size() == 1);
  REQUIRE(leader.propose("b").ok());
  auto rd2 = leader.ready();
  REQUIRE(rd2.entries.size() == 1);
  CHECK(rd2.entries[0].index == rd1.entries[0].index + 1);
  CHECK(rd2.entries[0].data == "b");
  // Followers ack both; the leader's own log is not durable yet: one ack of a voter
  // plus an unsynced leader is not a majority of three.
  auto commit_before = leader.commit_index();
  net.cut("n1", "n3");
  for (const auto* rd : {&rd1, &rd2})
    for (const auto& m : rd->messages)
      net.deliver(m);
  for (const auto& m : net.take_messages())
    net.deliver(m);
  CHECK(leader.commit_index() == commit_before);
  // Once its first batch is synced, "a" is on a majority; "b" still waits.
  persist_ready(*net.at("n1").store, rd1);
  leader.advance(rd1);
  CHECK(leader.commit_index() == rd1.entries[0].index);
  persist_ready(*net.at("n1").store, rd2);
  leader.advance(rd2);
  CHECK(leader.commit_index() == rd2.entries[0].index);
  // Committed entries are handed out for applying once each across outstanding batches.
  auto rd3 = leader.ready();
  CHECK(rd3.committed_entries.size() == 2);
  REQUIRE(leader.propose("c").ok());
  auto rd4 = leader.ready();
  for (const auto& e : rd4.committed_entries)
    CHECK(e.index > rd3.committed_entries.back().index);
  leader.advance(rd3);
  leader.advance(rd4);
}

TEST_CASE("a compaction waits for the outstanding batches and holds back the next") {
  network net({"n1"});
  net.elect("n1");
  auto& n1 = net["n1"];
  REQUIRE(n1.propose("a").ok());
  net.process("n1");
  net.process("n1");
  REQUIRE(n1.propose("b").ok());
  auto in_flight = n1.ready();
  REQUIRE(n1.compact(n1.applied_index(), "state").ok());
  CHECK_FALSE(n1.has_ready());
  CHECK_THROWS_AS(n1.ready(), std::logic_error);
  persist_ready(*net.at("n1").store, in_flight);
  n1.advance(in_flight);
  REQUIRE(n1.has_ready());
  auto compaction = n1.ready();
  CHECK(compaction.has_compaction);
  REQUIRE(n1.propose("c").ok());
  CHECK_FALSE(n1.has_ready());
  persist_ready(*net.at("n1").store, compaction);
  n1.advance(compaction);
  CHECK(n1.has_ready());
}
