// The cache controller's contract beyond the transition tables (those are driven by the
// scenario scripts): settings and their validation, refused requests, expiry, per-key
// order, epochs buffered before they are known.
#include "protocols/cache/cache_controller.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/sim/cache/cluster.hpp"

using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {

membership two(uint64_t epoch = 1, std::string home = "b") {
  membership m;
  m.epoch = epoch;
  m.members = {"a", "b"};
  m.home = [home](std::string_view) { return home; };
  return m;
}

controller::config cfg(size_t capacity = 4) {
  controller::config c;
  c.self = "a";
  c.capacity = capacity;
  return c;
}

cluster pair(write_policy w = write_policy::write_back) {
  cluster::options o;
  o.proto = protocol::moesi;
  o.policy = w;
  o.nodes = {"a", "b"};
  cluster c(o, two());
  c.start_all();
  c.run_to_quiet();
  return c;
}

}  // namespace

TEST_CASE("settings parse case-insensitively and print back") {
  protocol p{};
  CHECK(parse("MOESI", p));
  CHECK(p == protocol::moesi);
  CHECK(parse("mesi", p));
  CHECK(to_string(p) == "MESI");
  CHECK_FALSE(parse("msi", p));
  write_policy w{};
  CHECK(parse("write_through", w));
  CHECK(w == write_policy::write_through);
  CHECK(parse("Write-Back", w));
  CHECK(w == write_policy::write_back);
  CHECK_FALSE(parse("writeback!", w));
  replacement_kind r{};
  CHECK(parse("LFU", r));
  CHECK(r == replacement_kind::lfu);
  CHECK(parse("lru", r));
  CHECK(r == replacement_kind::lru);
  CHECK_FALSE(parse("fifo", r));
  cache_state s{};
  CHECK(parse("OM^AC", s));
  CHECK(s == cache_state::OM_AC);
  CHECK(to_string(cache_state::IS_D) == "IS^D");
  CHECK_FALSE(parse("X", s));
}

TEST_CASE("invalid settings and memberships are refused with a reason") {
  CHECK(cfg().validate().empty());
  auto c = cfg(0);
  CHECK(c.validate().find("capacity") != std::string::npos);
  CHECK_THROWS_AS(controller(c, two()), std::invalid_argument);
  c = cfg();
  c.self = "";
  CHECK_THROWS_AS(controller(c, two()), std::invalid_argument);
  membership m = two();
  m.members.push_back("a");
  CHECK(m.validate().find("twice") != std::string::npos);
  CHECK_THROWS_AS(controller(cfg(), m), std::invalid_argument);
  m = two();
  m.home = nullptr;
  CHECK_THROWS_AS(directory(directory::config{"a", protocol::mesi, 10}, m), std::invalid_argument);
  m = two();
  m.members.clear();
  CHECK_FALSE(m.validate().empty());
}

TEST_CASE("start announces the epoch to every member's directory") {
  controller ctl(cfg(), two(3));
  auto fx = ctl.start();
  REQUIRE(fx.messages.size() == 2);
  std::set<std::string> to;
  for (const auto& e : fx.messages) {
    CHECK(e.msg.kind == msg_kind::flushed);
    CHECK(e.msg.epoch == 3);
    CHECK_FALSE(e.msg.from_directory);
    to.insert(e.to);
  }
  CHECK(to == std::set<std::string>{"a", "b"});  // two()'s members
  CHECK(ctl.idle());
}

TEST_CASE("bad requests are refused at once, without a message") {
  controller::config c = cfg();
  c.max_pending_ops = 2;
  controller ctl(c, two());
  ctl.start();
  auto refused = [&](client_op op, std::string_view why) {
    auto fx = ctl.submit(op);
    REQUIRE(fx.completions.size() == 1);
    CHECK(fx.completions[0].result == status::error);
    CHECK(fx.completions[0].error == why);
    CHECK(fx.messages.empty());
  };
  refused({1, op_kind::get, "", {}}, errc::invalid);
  refused({2, op_kind::get, std::string(max_key_bytes + 1, 'k'), {}}, errc::invalid);
  refused({3, op_kind::put, "k", std::string(max_value_bytes + 1, 'v')}, errc::invalid);
  CHECK(ctl.submit({4, op_kind::get, "k", {}}).messages.size() == 1);  // GetS
  refused({4, op_kind::get, "j", {}}, errc::duplicate_request);
  CHECK(ctl.submit({5, op_kind::get, "k", {}}).messages.empty());  // waits behind #4
  refused({6, op_kind::get, "j", {}}, errc::overloaded);
  CHECK(ctl.pending_ops() == 2);
}

TEST_CASE("operations on one key run in submission order; a get after a put sees it") {
  cluster c = pair();
  c.submit("a", {1, op_kind::put, "k", "v1"});
  c.submit("a", {2, op_kind::get, "k", {}});
  c.submit("a", {3, op_kind::put, "k", "v2"});
  c.submit("a", {4, op_kind::get, "k", {}});
  CHECK(c.completions().empty());  // all wait for the first GetM
  c.run_to_quiet();
  REQUIRE(c.completions().size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(c.completions()[i].second.request == i + 1);
  CHECK(c.completions()[1].second.val == "v1");
  CHECK(c.completions()[3].second.val == "v2");
  CHECK(c.completions()[3].second.state == cache_state::M);
}

TEST_CASE("expire: a queued request is dropped, a running one finishes silently") {
  cluster c = pair();
  c.submit("a", {1, op_kind::put, "k", "v1"});  // running: GetM sent
  c.submit("a", {2, op_kind::put, "k", "v2"});  // queued behind it
  c.expire("a", 2);
  REQUIRE(c.completions().size() == 1);
  CHECK(c.completions()[0].second.error == errc::expired);
  CHECK_FALSE(c.completions()[0].second.maybe_applied);  // never started
  c.expire("a", 1);
  REQUIRE(c.completions().size() == 2);
  CHECK(c.completions()[1].second.error == errc::expired);
  CHECK(c.completions()[1].second.maybe_applied);  // a put talking to its home
  c.expire("a", 1);                                // unknown now: ignored
  c.expire("a", 99);
  c.run_to_quiet();
  CHECK(c.completions().size() == 2);  // no late answer
  // The expired put got M but did not write: the line still holds the old (absent) value.
  CHECK(c.at("a").ctl->state("k") == cache_state::M);
  REQUIRE(c.at("a").ctl->data("k"));
  CHECK_FALSE(c.at("a").ctl->data("k")->has_value());
  CHECK(c.at("a").ctl->pending_ops() == 0);
}

TEST_CASE("a get of an absent key is not_found, and the absence is cached") {
  cluster c = pair();
  c.submit("a", {1, op_kind::get, "k", {}});
  c.run_to_quiet();
  c.submit("a", {2, op_kind::get, "k", {}});
  REQUIRE(c.completions().size() == 2);
  CHECK(c.completions()[0].second.result == status::not_found);
  CHECK(c.completions()[0].second.state == cache_state::E);
  CHECK(c.completions()[1].second.result == status::not_found);
  CHECK(c.at("a").ctl->stats().hits == 1);
  CHECK(c.memory_reads() == 1);
}

TEST_CASE("delete removes the key everywhere, memory included; invalidate keeps the value") {
  cluster c = pair();
  c.submit("a", {1, op_kind::put, "k", "v1"});
  c.submit("b", {2, op_kind::get, "k", {}});
  c.run_to_quiet();
  c.submit("b", {3, op_kind::invalidate, "k", {}});
  c.run_to_quiet();
  CHECK(c.at("a").ctl->state("k") == cache_state::I);
  CHECK(c.at("b").ctl->state("k") == cache_state::I);
  CHECK(c.memory_value("k") == "v1");  // the dirty data was written back first
  c.submit("a", {4, op_kind::get, "k", {}});
  c.run_to_quiet();
  CHECK(c.completions().back().second.val == "v1");
  c.submit("b", {5, op_kind::del, "k", {}});
  c.run_to_quiet();
  CHECK(c.completions().back().second.result == status::ok);
  CHECK(c.memory_value("k") == std::nullopt);
  CHECK(c.at("a").ctl->state("k") == cache_state::I);
  c.submit("a", {6, op_kind::get, "k", {}});
  c.run_to_quiet();
  CHECK(c.completions().back().second.result == status::not_found);
}

// Recalls of an older epoch's lines, served while that epoch closes: scripts/*_epochs.txt.
TEST_CASE("messages of an epoch not yet known wait for it; a membership that is not newer is ignored") {
  controller ctl(cfg(), two(1, "b"));
  ctl.start();
  message d;
  d.kind = msg_kind::recall;
  d.key = "k";
  d.txn = 5;
  d.epoch = 2;
  CHECK(ctl.on_message("b", d).messages.empty());  // buffered
  auto fx = ctl.on_membership(two(2, "b"));
  bool acked = false;
  for (const auto& e : fx.messages) acked = acked || (e.msg.kind == msg_kind::recall_ack && e.msg.epoch == 2);
  CHECK(acked);
  CHECK(ctl.on_membership(two(2, "b")).empty());  // not newer: ignored
  CHECK(ctl.epoch() == 2);
}

TEST_CASE("track_changes: take_changed names every key whose line changed state or value") {
  auto cc = cfg(1);
  cc.track_changes = true;
  controller ctl(cc, two(1, "b"));
  ctl.start();
  CHECK(ctl.take_changed().empty());
  auto data = [](const std::string& key, uint64_t txn, std::optional<std::string> v, bool excl = false) {
    message d;
    d.kind = msg_kind::data;
    d.key = key;
    d.txn = txn;
    d.epoch = 1;
    d.has_data = true;
    d.val = std::move(v);
    d.exclusive = excl;
    return d;
  };
  ctl.submit({1, op_kind::get, "k", {}});  // I -> IS^D
  CHECK(ctl.take_changed() == std::vector<std::string>{"k"});
  CHECK(ctl.take_changed().empty());  // taken
  ctl.on_message("b", data("k", 1, "v1", true));  // IS^D -> E
  CHECK(ctl.take_changed() == std::vector<std::string>{"k"});
  ctl.submit({2, op_kind::get, "k", {}});  // a hit changes nothing
  CHECK(ctl.take_changed().empty());
  ctl.submit({3, op_kind::put, "k", "v2"});  // E -> M, new value
  CHECK(ctl.take_changed() == std::vector<std::string>{"k", "k"});
  ctl.submit({4, op_kind::put, "k", "v3"});  // M stays M, new value: still reported
  CHECK(ctl.take_changed() == std::vector<std::string>{"k"});
  ctl.submit({5, op_kind::get, "x", {}});  // capacity 1: k is evicted (M -> MI^A), x created
  CHECK(ctl.take_changed() == std::vector<std::string>{"k", "x"});
  CHECK(ctl.state("k") == cache_state::MI_A);
  message inv;  // x is filled in S, then invalidated: the line goes away
  ctl.on_message("b", data("x", 4, "vx"));  // txns: 1 get k, 2 and 3 the puts, 4 get x
  CHECK(ctl.take_changed() == std::vector<std::string>{"x"});
  inv.kind = msg_kind::inv;
  inv.key = "x";
  inv.txn = 9;
  inv.epoch = 1;
  inv.node = "b";
  ctl.on_message("b", inv);
  CHECK(ctl.take_changed() == std::vector<std::string>{"x"});
  CHECK(ctl.state("x") == cache_state::I);

  controller quiet(cfg(), two(1, "b"));  // off by default: nothing recorded
  quiet.start();
  quiet.submit({1, op_kind::get, "k", {}});
  quiet.on_message("b", data("k", 1, "v1"));
  CHECK(quiet.take_changed().empty());
}

TEST_CASE("note_hits: hits served outside the controller count for replacement") {
  // LRU, capacity 2 on one node that is its own home: fill a then b; a is the LRU victim
  // unless hits on a are reported.
  auto run = [](bool note) {
    cluster c = one_node(2);
    uint64_t id = 0;
    for (const char* k : {"a", "b", "c"}) {
      if (std::string(k) == "c" && note) c.at("a").ctl->note_hits("a", 3);
      c.submit("a", client_op{++id, op_kind::get, k, {}});
      c.run_to_quiet();
    }
    CHECK(c.at("a").ctl->stats().hits == 0);  // not counted as the controller's hits
    std::string kept;
    for (const char* k : {"a", "b"})
      if (readable(c.at("a").ctl->state(k))) kept += k;
    return kept;
  };
  CHECK(run(false) == "b");
  CHECK(run(true) == "a");
}
