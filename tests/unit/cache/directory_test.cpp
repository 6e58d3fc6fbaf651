// The directory's contract beyond the transition tables: the epoch barrier, the closing
// of an epoch, node deaths and their loss window, serialised memory operations.
#include "protocols/cache/directory.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <string>

#include "protocols/ring/hash_ring.hpp"
#include "tests/sim/cache/cluster.hpp"

using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {

membership fixed(uint64_t epoch, std::vector<std::string> members, std::string home) {
  membership m;
  m.epoch = epoch;
  m.members = std::move(members);
  m.home = [home](std::string_view) { return home; };
  return m;
}

struct harness {
  cluster c;
  uint64_t id = 0;
  explicit harness(protocol p, write_policy w = write_policy::write_back, std::string home = "c")
      : c(opts(p, w), fixed(1, {"a", "b", "c"}, home)) {
    c.start_all();
    c.run_to_quiet();
  }
  static cluster::options opts(protocol p, write_policy w) {
    cluster::options o;
    o.proto = p;
    o.policy = w;
    o.nodes = {"a", "b", "c"};
    return o;
  }
  completion op(const std::string& node, op_kind k, const std::string& key, const std::string& v = {}) {
    const size_t before = c.completions().size();
    c.submit(node, client_op{++id, k, key, v});
    c.run_to_quiet();
    REQUIRE(c.completions().size() == before + 1);
    return c.completions().back().second;
  }
  void kill(const std::string& n) {
    c.kill(n, [](const channel_id&, size_t) { return size_t{0}; }, [](const memory_op&) { return true; });
    c.run_to_quiet();
  }
};

}  // namespace

TEST_CASE("a directory serves an epoch only after Flushed from every member's controller and directory") {
  directory d(directory::config{"c", protocol::mesi, 100}, fixed(1, {"a", "c"}, "c"));
  auto fx = d.start();
  REQUIRE(fx.messages.size() == 2);  // Flushed to a and c
  CHECK(std::set<std::string>{fx.messages[0].to, fx.messages[1].to} == std::set<std::string>{"a", "c"});
  CHECK_FALSE(d.serving());
  message get;
  get.kind = msg_kind::get_s;
  get.key = "k";
  get.txn = 1;
  get.epoch = 1;
  CHECK(d.on_message("a", get).empty());  // waits for the barrier
  message f;
  f.kind = msg_kind::flushed;
  f.epoch = 1;
  for (const char* n : {"a", "c"})
    for (bool dir : {false, true}) {
      CHECK_FALSE(d.serving());
      f.from_directory = dir;
      fx = d.on_message(n, f);
    }
  CHECK(d.serving());
  REQUIRE(fx.memory.size() == 1);  // the waiting GetS reads memory now
  CHECK(fx.memory[0].kind == memory_kind::read);
  CHECK(d.barrier_waiting().empty());
}

TEST_CASE("a dead member is not waited for at the barrier") {
  directory d(directory::config{"c", protocol::mesi, 100}, fixed(1, {"a", "b", "c"}, "c"));
  d.start();
  message f;
  f.kind = msg_kind::flushed;
  f.epoch = 1;
  for (const char* n : {"a", "c"})
    for (bool dir : {false, true}) {
      f.from_directory = dir;
      d.on_message(n, f);
    }
  CHECK(d.barrier_waiting().size() == 2);  // b, ctl and dir
  d.on_node_down("b");
  CHECK(d.serving());
}

TEST_CASE("memory operations on one key never overlap") {
  harness h(protocol::mesi);
  h.c.submit("a", {1, op_kind::put, "k", "v1"});
  h.c.submit("b", {2, op_kind::get, "k", {}});
  h.c.submit("c", {3, op_kind::del, "k", {}});
  for (int i = 0; i < 1000 && !h.c.quiet(); ++i) {
    CHECK(h.c.memory_in_flight().size() <= 1);
    if (!h.c.channels_with_messages().empty()) h.c.deliver(h.c.channels_with_messages().back());
    else h.c.complete_memory(0);
  }
  CHECK(h.c.quiet());
  CHECK(h.c.completions().size() == 3);
}

TEST_CASE("write-back: a dead owner's dirty line reverts to memory, for everyone") {
  for (auto p : {protocol::mesi, protocol::mosi, protocol::moesi}) {
    CAPTURE(to_string(p));
    harness h(p);
    h.op("a", op_kind::put, "k", "v1");
    h.op("a", op_kind::invalidate, "k");  // memory: v1
    h.op("a", op_kind::put, "k", "v2");   // dirty in a only
    h.op("b", op_kind::get, "k");         // b shares it (MOSI/MOESI: a stays owner, O)
    h.kill("a");
    CHECK(h.c.at("b").ctl->state("k") == (p == protocol::mesi ? cache_state::S : cache_state::I));
    // MESI wrote v2 back on the downgrade; with O it was lost with its owner.
    CHECK(h.op("b", op_kind::get, "k").val == (p == protocol::mesi ? "v2" : "v1"));
    CHECK(h.op("c", op_kind::get, "k").val == (p == protocol::mesi ? "v2" : "v1"));
    if (p != protocol::mesi) CHECK(h.c.at("c").dir->stats().recoveries == 1);  // MESI: a was a sharer by then
  }
}

TEST_CASE("write-through: a dead owner loses nothing") {
  for (auto p : {protocol::mesi, protocol::mosi, protocol::moesi}) {
    CAPTURE(to_string(p));
    harness h(p, write_policy::write_through);
    h.op("a", op_kind::put, "k", "v1");
    h.op("b", op_kind::get, "k");
    h.op("a", op_kind::put, "k", "v2");
    h.kill("a");
    CHECK(h.op("b", op_kind::get, "k").val == "v2");
    CHECK(h.op("c", op_kind::get, "k").val == "v2");
  }
}

TEST_CASE("a sharer's death drops it from the sharer list, and an owner's death lets the line move on") {
  harness h(protocol::moesi);
  h.op("a", op_kind::put, "k", "v1");
  h.op("b", op_kind::get, "k");
  auto v = h.c.at("c").dir->view("k");
  CHECK(v.owner == "a");
  CHECK(v.sharers == std::vector<std::string>{"b"});
  h.kill("b");
  v = h.c.at("c").dir->view("k");
  CHECK(v.state == "O");
  CHECK(v.sharers.empty());
  CHECK(h.op("c", op_kind::put, "k", "v2").state == cache_state::M);
  CHECK(h.op("a", op_kind::get, "k").val == "v2");
}

TEST_CASE("a new epoch moves the home; dirty data is recalled, not lost; the old home refuses new requests") {
  for (auto p : {protocol::mesi, protocol::mosi, protocol::moesi}) {
    CAPTURE(to_string(p));
    harness h(p);
    h.op("a", op_kind::put, "k", "v1");
    h.op("b", op_kind::get, "k");
    h.c.define_epoch(fixed(2, {"a", "b", "c"}, "b"));
    h.c.give_epoch({"c", true}, 2);  // the old home closes epoch 1
    h.c.run_to_quiet();
    CHECK(h.c.memory_value("k") == "v1");  // recalled and written
    CHECK(h.c.at("a").ctl->state("k") == cache_state::I);
    CHECK(h.c.at("b").ctl->state("k") == cache_state::I);
    // a still in epoch 1: its request is refused, and waits for the new epoch.
    h.c.submit("a", {100, op_kind::get, "k", {}});
    h.c.run_to_quiet();
    CHECK(h.c.at("a").ctl->stats().nacks == 1);
    CHECK(h.c.completions().back().second.request != 100);
    for (const char* n : {"a", "b", "c"}) {
      h.c.give_epoch({n, false}, 2);
      h.c.give_epoch({n, true}, 2);
    }
    h.c.run_to_quiet();
    CHECK(h.c.completions().back().second.request == 100);
    CHECK(h.c.completions().back().second.val == "v1");
    CHECK(h.c.at("b").dir->view("k").state != "I");  // the new home serves it
    CHECK(h.op("c", op_kind::put, "k", "v2").result == status::ok);
    CHECK(h.op("a", op_kind::get, "k").val == "v2");
  }
}

TEST_CASE("epochs may be skipped and given in any order across components") {
  harness h(protocol::moesi);
  h.op("a", op_kind::put, "k", "v1");
  h.c.define_epoch(fixed(2, {"a", "b", "c"}, "a"));
  h.c.define_epoch(fixed(3, {"a", "b", "c"}, "b"));
  h.c.give_epoch({"a", false}, 3);  // a's controller skips 2
  h.c.give_epoch({"b", true}, 2);
  h.c.give_epoch({"c", true}, 3);   // the old home skips 2
  h.c.run_to_quiet();
  for (const char* n : {"a", "b", "c"}) {
    h.c.give_epoch({n, false}, 3);
    h.c.give_epoch({n, true}, 3);
  }
  h.c.run_to_quiet();
  CHECK(h.op("c", op_kind::get, "k").val == "v1");
  for (const char* n : {"a", "b", "c"}) {
    CHECK(h.c.at(n).ctl->idle());
    CHECK(h.c.at(n).dir->idle());
  }
}

TEST_CASE("keys are placed by the hash ring: every key has one home per epoch") {
  auto ring = std::make_shared<const dsync::ring::hash_ring>(std::vector<std::string>{"a", "b", "c"}, 16);
  auto m = membership::from_ring(1, ring);
  CHECK(m.validate().empty());
  CHECK(m.members == std::vector<std::string>{"a", "b", "c"});
  cluster::options o;
  o.proto = protocol::moesi;
  o.nodes = {"a", "b", "c"};
  cluster c(o, m);
  c.start_all();
  c.run_to_quiet();
  for (int i = 0; i < 20; ++i) c.submit(std::string(1, static_cast<char>('a' + i % 3)),
                                        {static_cast<uint64_t>(i + 1), op_kind::put, "key-" + std::to_string(i), "v"});
  c.run_to_quiet();
  size_t homes = 0;
  for (const char* n : {"a", "b", "c"}) {
    const auto keys = c.at(n).dir->keys();
    for (const auto& k : keys) CHECK(ring->owner(k) == n);
    homes += keys.size();
  }
  CHECK(homes == 20);
}
