// The cache mirror (actors/cache_mirror.hpp): the copy of a node's readable cache lines
// from which the HTTP gateway answers read hits without an actor. Set / erase / lookup,
// the liveness lease, clear, the uses fed back to replacement, sync from a controller, and
// readers racing the writer.
#include "actors/cache_mirror.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/sim/cache/cluster.hpp"

namespace doctest {
template <>
struct StringMaker<dsync::cache_mirror::hit> {
  static String convert(const dsync::cache_mirror::hit& h) {
    if (!h) return "nullptr";
    auto s = "{" + h->value.value_or("<absent>") + " " + std::string(to_string(h->state)) + "}";
    return String(s.c_str());
  }
};
}  // namespace doctest

using namespace dsync;
using namespace std::chrono_literals;
using cache::cache_state;
using clk = cache_mirror::clock;

namespace {

using uses = std::vector<std::pair<std::string, uint64_t>>;

uses sorted(uses u) {
  std::sort(u.begin(), u.end());
  return u;
}

}  // namespace

TEST_CASE("mirror: set, lookup, replace, erase; a key cached as absent") {
  cache_mirror m;
  auto now = clk::now();
  m.live_until(now + 1s);
  CHECK(m.lookup("k", now) == nullptr);
  m.set("k", cache_state::S, std::string("v1"));
  auto h = m.lookup("k", now);
  REQUIRE(h);
  CHECK(h->value == "v1");
  CHECK(h->state == cache_state::S);
  m.set("k", cache_state::M, std::string("v2"));
  auto h2 = m.lookup("k", now);
  REQUIRE(h2);
  CHECK(h2->value == "v2");
  CHECK(h2->state == cache_state::M);
  CHECK(h->value == "v1");  // a reader's copy is never changed under it
  m.set("gone", cache_state::E, std::nullopt);
  auto absent = m.lookup("gone", now);
  REQUIRE(absent);
  CHECK_FALSE(absent->value.has_value());
  CHECK(m.size() == 2);
  m.erase("k");
  CHECK(m.lookup("k", now) == nullptr);
  m.erase("k");  // not there: nothing happens
  m.erase("never");
  CHECK(m.size() == 1);
  CHECK(m.hits() == 3);  // misses are not hits
}

TEST_CASE("mirror: nothing is served before the first lease or after it ran out") {
  cache_mirror m;
  auto now = clk::now();
  m.set("k", cache_state::S, std::string("v"));
  CHECK(m.lookup("k", now) == nullptr);  // never made live
  m.live_until(now + 1s);
  CHECK(m.lookup("k", now + 999ms));
  CHECK(m.lookup("k", now + 1s) == nullptr);
  CHECK(m.lookup("k", now + 5s) == nullptr);
  REQUIRE(m.peek("k"));  // the entry is still there, only not served
  CHECK(m.hits() == 1);
  m.live_until(now + 10s);  // the next tick renews it
  CHECK(m.lookup("k", now + 5s));
}

TEST_CASE("mirror: clear forgets every line and every pending use; hits stay counted") {
  cache_mirror m;
  auto now = clk::now();
  m.live_until(now + 1s);
  for (int i = 0; i < 200; ++i) m.set("k" + std::to_string(i), cache_state::S, std::to_string(i));
  CHECK(m.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(m.lookup("k" + std::to_string(i), now));
  m.clear();
  CHECK(m.size() == 0);
  for (int i = 0; i < 200; ++i) CHECK(m.lookup("k" + std::to_string(i), now) == nullptr);
  CHECK(m.take_uses().empty());
  CHECK(m.hits() == 200);
}

TEST_CASE("mirror: uses are reported once per take, with their count; erased keys are left out") {
  cache_mirror m;
  auto now = clk::now();
  m.live_until(now + 1s);
  CHECK(m.take_uses().empty());
  m.set("a", cache_state::S, std::string("1"));
  m.set("b", cache_state::M, std::string("2"));
  for (int i = 0; i < 3; ++i) m.lookup("a", now);
  m.lookup("b", now);
  m.lookup("c", now);  // a miss: no use
  CHECK(sorted(m.take_uses()) == uses{{"a", 3}, {"b", 1}});
  CHECK(m.take_uses().empty());
  m.lookup("a", now);
  m.set("a", cache_state::O, std::string("1"));  // a new copy of the same line keeps its uses
  m.lookup("a", now);
  m.lookup("b", now);
  m.erase("b");
  CHECK(m.take_uses() == uses{{"a", 2}});
}

TEST_CASE("mirror: sync copies a controller's readable lines and erases the rest") {
  cache::testing::cluster::options o;
  o.proto = cache::protocol::moesi;
  o.nodes = {"a", "b"};
  cache::membership mem;
  mem.epoch = 1;
  mem.members = {"a", "b"};
  mem.home = [](std::string_view) { return std::string("b"); };
  cache::testing::cluster c(o, mem);
  c.start_all();
  c.run_to_quiet();
  uint64_t id = 0;
  auto& a = c.at("a");
  cache_mirror m;  // synced by hand here; the cluster's own mirror is synced on every step
  m.live_until(clk::time_point::max());
  c.submit("a", {++id, cache::op_kind::put, "k", "v1"});
  c.run_to_quiet();
  m.sync(*a.ctl, {"k", "other"});
  REQUIRE(m.peek("k"));
  CHECK(m.peek("k")->state == cache_state::M);
  CHECK(m.peek("k")->value == "v1");
  CHECK(m.peek("other") == nullptr);
  c.submit("b", {++id, cache::op_kind::get, "k", {}});  // a: M -> O
  c.run_to_quiet();
  m.sync(*a.ctl, {"k"});
  CHECK(m.peek("k")->state == cache_state::O);
  c.submit("b", {++id, cache::op_kind::put, "k", "v2"});  // a's copy goes away
  c.run_to_quiet();
  m.sync(*a.ctl, {"k"});
  CHECK(m.peek("k") == nullptr);
  // The cluster's mirrors (synced from take_changed after every step) agree.
  CHECK(a.mirror->peek("k") == nullptr);
  REQUIRE(c.at("b").mirror->peek("k"));
  CHECK(c.at("b").mirror->peek("k")->value == "v2");
  CHECK(c.at("b").mirror->peek("k")->state == cache_state::M);
  CHECK(cache::testing::check_mirror(c, "k").empty());
}

TEST_CASE("mirror: readers racing the writer never see an older value than the last completed write") {
  // The writer, per round i and key: set it to "i" in a state that depends on i, or erase
  // it; then publishes i as that key's last completed operation. A reader that saw i
  // published must get nullptr or a value >= i (never an older one), with the state that
  // belongs to that value (never a torn copy).
  cache_mirror m;
  m.live_until(clk::time_point::max());
  constexpr int keys = 8;
  constexpr int rounds = 20000;
  std::vector<std::string> names;
  for (int k = 0; k < keys; ++k) names.push_back("key-" + std::to_string(k));
  std::atomic<int> done[keys];
  for (auto& d : done) d.store(0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> problems{0}, served{0};
  auto state_of = [](int i) { return i % 3 == 0 ? cache_state::S : i % 3 == 1 ? cache_state::M : cache_state::O; };
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&, r] {
      uint64_t x = static_cast<uint64_t>(r) * 7919 + 1;
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const int k = static_cast<int>((x >> 33) % keys);
        const int floor = done[k].load(std::memory_order_acquire);
        auto h = m.lookup(names[k], clk::time_point{});
        if (!h) continue;
        served.fetch_add(1, std::memory_order_relaxed);
        const int v = std::stoi(*h->value);
        if (v < floor || h->state != state_of(v)) problems.fetch_add(1);
      }
    });
  uint64_t drained = 0;
  for (int i = 1; i <= rounds; ++i) {
    for (int k = 0; k < keys; ++k) {
      if (i % 7 == 0) m.erase(names[k]);
      else m.set(names[k], state_of(i), std::to_string(i));
      done[k].store(i, std::memory_order_release);
    }
    if (i % 100 == 0)
      for (auto& [key, n] : m.take_uses()) drained += n;
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(problems.load() == 0);
  CHECK(served.load() > 0);
  CHECK(m.hits() == served.load());
  for (auto& [key, n] : m.take_uses()) drained += n;
  CHECK(drained <= m.hits());  // uses of keys erased before a take are dropped
}

TEST_CASE("mirror: with concurrent readers every use reaches take_uses exactly once") {
  cache_mirror m;
  m.live_until(clk::time_point::max());
  constexpr int keys = 16;
  for (int k = 0; k < keys; ++k) m.set("k" + std::to_string(k), cache_state::S, std::string("v"));
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&, r] {
      int i = r;
      while (!stop.load(std::memory_order_relaxed)) m.lookup("k" + std::to_string(i++ % keys), clk::time_point{});
    });
  uint64_t drained = 0;
  auto until = clk::now() + 300ms;
  while (clk::now() < until) {
    for (auto& [key, n] : m.take_uses()) drained += n;
    for (int k = 0; k < keys; ++k) m.set("k" + std::to_string(k), cache_state::M, std::string("w"));  // keeps uses
  }
  stop = true;
  for (auto& t : readers) t.join();
  for (auto& [key, n] : m.take_uses()) drained += n;
  CHECK(m.hits() > 0);
  CHECK(drained == m.hits());
}
