// Replacement order (protocols/cache/replacement.hpp) and how the controller uses it:
// LRU evicts the least recently used line, LFU the least frequently used one.
#include "protocols/cache/replacement.hpp"

#include <doctest/doctest.h>

#include <string>

#include "tests/sim/cache/cluster.hpp"

using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {

auto any = [](const std::string&) { return true; };

void get(cluster& c, const std::string& key) {
  static uint64_t id = 0;
  c.submit("a", client_op{++id, op_kind::get, key, {}});
  c.run_to_quiet();
}

}  // namespace

TEST_CASE("lru: the least recently used key goes first") {
  replacer r(replacement_kind::lru);
  r.insert("a");
  r.insert("b");
  r.insert("c");
  CHECK(r.victim(any) == "a");
  r.touch("a");
  CHECK(r.victim(any) == "b");
  r.touch("b");
  r.touch("b");
  CHECK(r.victim(any) == "c");
  r.erase("c");
  CHECK(r.victim(any) == "a");
  CHECK(r.size() == 2);
}

TEST_CASE("lfu: the least used key goes first, the least recent among equals") {
  replacer r(replacement_kind::lfu);
  r.insert("a");
  r.insert("b");
  r.insert("c");
  r.touch("a");
  r.touch("a");
  r.touch("b");
  CHECK(r.uses("a") == 3);
  CHECK(r.uses("c") == 1);
  CHECK(r.victim(any) == "c");
  r.touch("c");  // b and c both 2: b was used less recently
  CHECK(r.victim(any) == "b");
  r.insert("a");  // re-filled: its count starts again
  CHECK(r.uses("a") == 1);
  CHECK(r.victim(any) == "a");
}

TEST_CASE("touch(key, n): n uses at once for LFU, one recency step for LRU") {
  replacer lfu(replacement_kind::lfu);
  lfu.insert("a");
  lfu.insert("b");
  lfu.touch("a", 5);
  CHECK(lfu.uses("a") == 6);
  lfu.touch("b", 4);  // b: 5 uses, fewer than a although more recent
  CHECK(lfu.victim(any) == "b");
  lfu.touch("b", 0);  // nothing
  CHECK(lfu.uses("b") == 5);
  lfu.touch("missing", 3);  // ignored
  CHECK(lfu.size() == 2);

  replacer lru(replacement_kind::lru);
  lru.insert("a");
  lru.insert("b");
  lru.touch("a", 5);
  CHECK(lru.victim(any) == "b");
  lru.touch("b", 0);  // no use: b stays the least recent
  CHECK(lru.victim(any) == "b");
}

TEST_CASE("a victim must be evictable: the order skips lines the caller refuses") {
  replacer r(replacement_kind::lru);
  r.insert("a");
  r.insert("b");
  CHECK(r.victim([](const std::string& k) { return k != "a"; }) == "b");
  CHECK_FALSE(r.victim([](const std::string&) { return false; }).has_value());
  r.touch("missing");  // ignored
  r.clear();
  CHECK(r.size() == 0);
}

TEST_CASE("the controller evicts by its policy: LRU and LFU choose differently") {
  // Fill a, b, c; use a three times and b once, then c once more (most recent);
  // a fourth key needs a line. LRU evicts the least recent (a was used before b and c
  // last time), LFU the least used (b, used twice in all, vs a four times and c twice,
  // with b less recent than c).
  auto run = [](replacement_kind kind) {
    cluster c = one_node(3, kind);
    for (const char* k : {"a", "b", "c"}) get(c, k);
    get(c, "a");
    get(c, "a");
    get(c, "a");
    get(c, "b");
    get(c, "c");
    get(c, "d");
    std::string gone;
    for (const char* k : {"a", "b", "c"})
      if (c.at("a").ctl->state(k) == cache_state::I) gone += k;
    CHECK(c.at("a").ctl->resident_lines() == 3);
    CHECK(c.at("a").ctl->stats().evictions == 1);
    return gone;
  };
  CHECK(run(replacement_kind::lru) == "a");
  CHECK(run(replacement_kind::lfu) == "b");
}

TEST_CASE("a line in a transient state is never the victim: the miss waits for one that is stable") {
  cluster::options o;
  o.proto = protocol::mesi;
  o.capacity = 1;
  o.nodes = {"a", "b"};
  membership m;
  m.epoch = 1;
  m.members = {"a", "b"};
  m.home = [](std::string_view) { return std::string("b"); };
  cluster c(o, m);
  c.start_all();
  c.run_to_quiet();
  c.submit("a", client_op{1, op_kind::get, "x", {}});  // x: IS^D, the only line
  c.submit("a", client_op{2, op_kind::get, "y", {}});  // must wait: nothing to evict
  CHECK(c.at("a").ctl->state("x") == cache_state::IS_D);
  CHECK(c.at("a").ctl->state("y") == cache_state::I);
  c.run_to_quiet();  // x fills, becomes the victim, y fills
  CHECK(c.at("a").ctl->state("x") == cache_state::I);
  CHECK(c.at("a").ctl->state("y") == cache_state::E);
  CHECK(c.completions().size() == 2);
}
