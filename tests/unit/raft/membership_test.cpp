// Membership changes: dissertation §4.1 (single-server changes; a
// configuration takes effect when appended; one change at a time; commit an
// entry of the term first), §4.2.1 (catching up new servers as non-voting
// learners), §4.2.2 (removing the current leader), §4.2.3 (removed servers
// do not disrupt).
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

namespace {

conf_change change(conf_change_type t, const node_id& n) { return conf_change{t, n}; }

// n1 leads n1..n3; n4 exists with empty storage (a node that will join).
void three_plus_joiner(network& net) {
  net.elect("n1");
  net.add("n4", std::make_unique<memory_storage>(), 4);
}

} // namespace

TEST_CASE("§4.2.1: a learner receives the whole log but neither votes nor counts for commitment") {
  network net({"n1", "n2", "n3"});
  three_plus_joiner(net);
  REQUIRE(net["n4"].current_config().empty());
  auto r = net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4"));
  REQUIRE(r.ok());
  // §4.1: the leader uses the new configuration as soon as it is appended.
  CHECK(net["n1"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
  REQUIRE(net["n1"].progress_of("n4") != nullptr);
  CHECK(net["n1"].progress_of("n4")->is_learner());
  net.stabilize();
  CHECK(net["n4"].log().last_index() == net["n1"].log().last_index());
  // The joiner learned the membership from the conf change entry itself.
  CHECK(net["n4"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
  CHECK(net["n4"].commit_index() == r.index);

  // Not counted: with both other voters away, the learner's ack does not commit.
  net.isolate("n2");
  net.isolate("n3");
  net["n1"].propose("x");
  net.stabilize();
  CHECK(net["n4"].log().last_index() == r.index + 1);
  CHECK(net["n1"].commit_index() == r.index);
  // And a learner never campaigns.
  net.tick("n4", 100);
  CHECK(net["n4"].state() == role::follower);
  CHECK(net["n4"].term() == 1);
}

TEST_CASE("§4.1: followers also switch configuration on append, before it is committed") {
  network net({"n1", "n2", "n3"});
  three_plus_joiner(net);
  net.set_drop([](const message& m) { return m.type == message_type::append_entries_response; });
  auto r = net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4"));
  net.stabilize();
  CHECK(net["n2"].commit_index() < r.index);
  CHECK(net["n2"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
  CHECK(net["n2"].config_at(r.index - 1) == voters({"n1", "n2", "n3"}));
}

TEST_CASE("§4.1: one membership change at a time") {
  network net({"n1", "n2", "n3"});
  three_plus_joiner(net);
  REQUIRE(net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4")).ok());
  auto second = net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n5"));
  CHECK(second.code == errc::conf_change_in_progress);
  net.stabilize();
  CHECK(net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n5")).ok());
}

TEST_CASE("§4.1: a new leader changes membership only after committing an entry of its term") {
  network net({"n1", "n2", "n3"});
  net.set_drop([](const message& m) { return m.type == message_type::append_entries_response; });
  net.elect("n1");
  REQUIRE(net["n1"].state() == role::leader);
  REQUIRE(net["n1"].commit_index() == 0);
  auto r = net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4"));
  CHECK(r.code == errc::leader_not_ready);
  net.set_drop({});
  net.tick_all(2);
  CHECK(net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4")).ok());
}

TEST_CASE("§4.2.1: a learner is promoted to voter only once caught up, then counts") {
  network net({"n1", "n2", "n3"});
  three_plus_joiner(net);
  net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4"));
  net.stabilize();
  net.isolate("n4");
  for (int i = 0; i < 3; ++i)
    net["n1"].propose("x");
  net.stabilize();
  auto early = net["n1"].propose_conf_change(change(conf_change_type::promote_learner, "n4"));
  CHECK(early.code == errc::learner_not_caught_up);
  net.heal();
  net.tick_all(2);
  auto r = net["n1"].propose_conf_change(change(conf_change_type::promote_learner, "n4"));
  REQUIRE(r.ok());
  net.stabilize();
  for (auto id : {"n1", "n2", "n3", "n4"})
    CHECK(net[id].current_config() == voters({"n1", "n2", "n3", "n4"}));
  // Four voters: a majority is three.
  net.isolate("n3");
  net.isolate("n4");
  net["n1"].propose("y");
  net.stabilize();
  CHECK(net["n1"].commit_index() == r.index);
  net.heal();
  net.tick_all(2);
  CHECK(net["n1"].commit_index() == r.index + 1);
}

TEST_CASE("§4.1: conf changes that do not fit the configuration are refused") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto& n1 = net["n1"];
  CHECK(n1.propose_conf_change(change(conf_change_type::add_learner, "n2")).code
        == errc::invalid_conf_change);
  CHECK(n1.propose_conf_change(change(conf_change_type::add_learner, "")).code
        == errc::invalid_conf_change);
  CHECK(n1.propose_conf_change(change(conf_change_type::promote_learner, "n2")).code
        == errc::invalid_conf_change);
  CHECK(n1.propose_conf_change(change(conf_change_type::remove_node, "n9")).code
        == errc::invalid_conf_change);
  CHECK(net["n2"].propose_conf_change(change(conf_change_type::add_learner, "n9")).code
        == errc::not_leader);

  network single({"n1"});
  single.elect("n1");
  CHECK(single["n1"].propose_conf_change(change(conf_change_type::remove_node, "n1")).code
        == errc::invalid_conf_change); // never remove the last voter
}

TEST_CASE("§4.2.3: a removed follower is cut off and does not disrupt the cluster") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  auto r = net["n1"].propose_conf_change(change(conf_change_type::remove_node, "n3"));
  REQUIRE(r.ok());
  CHECK(net["n1"].progress_of("n3") == nullptr);
  net.stabilize();
  CHECK(net["n2"].current_config() == voters({"n1", "n2"}));
  net["n1"].propose("x");
  net.stabilize();
  CHECK(net["n1"].commit_index() == r.index + 1);
  CHECK(net["n3"].log().last_index() < r.index + 1);
  // n3 times out and pre-votes again and again: nobody listens.
  net.tick_all(60);
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].term() == 1);
}

TEST_CASE("§4.2.2: a removed leader leads until the change commits, then steps down and hands over") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net.isolate("n3");
  auto r = net["n1"].propose_conf_change(change(conf_change_type::remove_node, "n1"));
  REQUIRE(r.ok());
  CHECK(net["n1"].current_config() == voters({"n2", "n3"}));
  net.stabilize();
  // The old configuration would commit with n1 + n2; the new one needs n2 and n3.
  CHECK(net["n1"].state() == role::leader);
  CHECK(net["n1"].commit_index() < r.index);
  net.heal();
  net.tick_all(1);
  CHECK(net["n1"].state() == role::follower);
  // It sent TimeoutNow to a caught-up voter, which took over at once.
  bool handed_over = (net["n2"].state() == role::leader || net["n3"].state() == role::leader);
  CHECK(handed_over);
  CHECK(net["n2"].term() == 2);
  // n1 is no longer a voter: it never campaigns.
  net.isolate("n1");
  net.tick("n1", 100);
  CHECK(net["n1"].state() == role::follower);
}

TEST_CASE("§4.1: an uncommitted configuration is rolled back when its entry is overwritten") {
  auto conf = voters({"n1", "n2", "n3"});
  conf_change_record rec{change(conf_change_type::add_learner, "n4"), voters({"n1", "n2", "n3"}, {"n4"})};
  network net({});
  uint64_t seed = 1;
  for (auto id : {"n1", "n2", "n3"}) {
    auto s = std::make_unique<memory_storage>(conf);
    std::vector<entry> log{entry{1, 1, entry_type::noop, ""}};
    if (std::string(id) == "n2")
      log.push_back(entry{1, 2, entry_type::conf_change, encode_conf_change(rec)});
    else
      log.push_back(entry{2, 2, entry_type::normal, "x"});
    s->append(log);
    s->set_hard_state(hard_state{2, "", 1});
    net.add(id, std::move(s), seed++);
  }
  // Restart recovers the newest configuration from the log (not committed yet).
  CHECK(net["n2"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
  net.elect("n3");
  REQUIRE(net["n3"].state() == role::leader);
  CHECK(net["n2"].log().match_term(2, 2));
  CHECK(net["n2"].current_config() == conf);
}

TEST_CASE("§4.1: a restarted node recovers the configuration from its log") {
  network net({"n1", "n2", "n3"});
  three_plus_joiner(net);
  net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n4"));
  net.stabilize();
  net.restart("n2");
  CHECK(net["n2"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
  net.restart("n4");
  CHECK(net["n4"].current_config() == voters({"n1", "n2", "n3"}, {"n4"}));
}

TEST_CASE("§4.2: a removed node can be added back as a learner and promoted again") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose_conf_change(change(conf_change_type::remove_node, "n3"));
  net.stabilize();
  net["n1"].propose("while away");
  net.stabilize();
  REQUIRE(net["n1"].propose_conf_change(change(conf_change_type::add_learner, "n3")).ok());
  net.stabilize();
  CHECK(net["n3"].log().last_index() == net["n1"].log().last_index());
  REQUIRE(net["n1"].propose_conf_change(change(conf_change_type::promote_learner, "n3")).ok());
  net.stabilize();
  CHECK(net["n3"].current_config() == voters({"n1", "n2", "n3"}));
  CHECK(applied_data(net.at("n3")) == std::vector<std::string>{"while away"});
}

TEST_CASE("conf change records round-trip through their entry encoding") {
  conf_change_record rec{change(conf_change_type::promote_learner, "node-4"),
                         voters({"node-1", "node-2", "node-4"}, {"node-5"})};
  auto bytes = encode_conf_change(rec);
  conf_change_record back;
  REQUIRE(decode_conf_change(bytes, back));
  CHECK(back.change.type == rec.change.type);
  CHECK(back.change.node == rec.change.node);
  CHECK(back.config == rec.config);
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    CHECK_FALSE(decode_conf_change(bytes.substr(0, cut), back));
  CHECK_FALSE(decode_conf_change(bytes + "x", back));
  auto bad = bytes;
  bad[1] = 9; // unknown change type
  CHECK_FALSE(decode_conf_change(bad, back));
}
