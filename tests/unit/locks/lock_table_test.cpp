// The replicated lock table (protocols/locks/lock_table.hpp), transition by transition,
// then a randomized property test that checks the table's invariants after every command.
#include "protocols/locks/lock_table.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "protocols/raft/rng.hpp"

using namespace dsync::locks;

namespace {

command acquire_cmd(const std::string& lock, const std::string& client, mode m, uint64_t now_ms,
                    uint64_t wait_ms = 5000, uint64_t ttl_ms = 10000) {
  command c;
  c.kind = op::acquire;
  c.now_ms = now_ms;
  c.lock = lock;
  c.client = client;
  c.wanted = m;
  c.wait_ms = wait_ms;
  c.ttl_ms = ttl_ms;
  return c;
}

command named_cmd(op kind, const std::string& lock, const std::string& client, uint64_t now_ms) {
  command c;
  c.kind = kind;
  c.now_ms = now_ms;
  c.lock = lock;
  c.client = client;
  return c;
}

command time_cmd(op kind, uint64_t now_ms) {
  command c;
  c.kind = kind;
  c.now_ms = now_ms;
  return c;
}

constexpr mode S = mode::shared;
constexpr mode X = mode::exclusive;

// A table and a clock: each call applies one command at the next index.
struct fixture {
  table t;
  uint64_t index = 0;
  uint64_t now = 1000;
  std::vector<event> events;

  outcome apply(const command& c) {
    events.clear();
    return t.apply(++index, c, events);
  }
  outcome acquire(const std::string& lock, const std::string& client, mode m, uint64_t wait_ms = 5000,
                  uint64_t ttl_ms = 10000) {
    return apply(acquire_cmd(lock, client, m, now, wait_ms, ttl_ms));
  }
  outcome release(const std::string& lock, const std::string& client) {
    return apply(named_cmd(op::release, lock, client, now));
  }
  outcome refresh(const std::string& lock, const std::string& client) {
    return apply(named_cmd(op::refresh, lock, client, now));
  }
  outcome expire() { return apply(time_cmd(op::expire, now)); }
  outcome renew_all() { return apply(time_cmd(op::renew_all, now)); }

  // "client:mode" per holder in grant order, and per waiter in queue order ("+up" for an upgrade).
  std::vector<std::string> holders(const std::string& lock) const {
    std::vector<std::string> out;
    for (const auto& h : t.status(lock).holders) out.push_back(h.client + ":" + to_string(h.held));
    return out;
  }
  std::vector<std::string> waiters(const std::string& lock) const {
    std::vector<std::string> out;
    for (const auto& w : t.status(lock).waiters)
      out.push_back(w.client + ":" + to_string(w.wanted) + (w.upgrade ? "+up" : ""));
    return out;
  }
  uint64_t token_of(const std::string& lock, const std::string& client) const {
    for (const auto& h : t.status(lock).holders)
      if (h.client == client) return h.token;
    return 0;
  }
};

using strings = std::vector<std::string>;

// "kind lock client" per event, e.g. "granted L b".
strings describe(const std::vector<event>& events) {
  strings out;
  for (const auto& e : events) {
    const char* k = e.what == event::kind::granted     ? "granted"
                    : e.what == event::kind::timed_out ? "timed_out"
                    : e.what == event::kind::cancelled ? "cancelled"
                                                       : "expired";
    out.push_back(std::string(k) + " " + e.subject.lock + " " + e.subject.client);
  }
  return out;
}

bool same_outcome(const outcome& a, const outcome& b) {
  return a.result == b.result && a.granted.lock == b.granted.lock && a.granted.client == b.granted.client
         && a.granted.held == b.granted.held && a.granted.token == b.granted.token
         && a.granted.ttl_ms == b.granted.ttl_ms && a.granted.expires_at_ms == b.granted.expires_at_ms
         && a.position == b.position && a.cycle == b.cycle && a.message == b.message;
}

bool same_command(const command& a, const command& b) {
  return a.kind == b.kind && a.now_ms == b.now_ms && a.lock == b.lock && a.client == b.client
         && a.wanted == b.wanted && a.wait_ms == b.wait_ms && a.ttl_ms == b.ttl_ms;
}

bool conflict(mode a, mode b) { return a == X || b == X; }

// The wait-for graph exactly as the header defines it, computed from status():
// client -> (lock, client) edges.
using graph = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;

graph wait_for_graph(const table& t, const std::vector<std::string>& locks) {
  graph g;
  for (const auto& lock : locks) {
    auto s = t.status(lock);
    for (size_t i = 0; i < s.waiters.size(); ++i) {
      const auto& w = s.waiters[i];
      for (const auto& h : s.holders)
        if (h.client != w.client && conflict(w.wanted, h.held)) g[w.client].push_back({lock, h.client});
      for (size_t j = 0; j < i; ++j)
        if (s.waiters[j].client != w.client && conflict(w.wanted, s.waiters[j].wanted))
          g[w.client].push_back({lock, s.waiters[j].client});
    }
  }
  return g;
}

bool has_cycle(const graph& g) {
  std::map<std::string, int> color;  // 0 new, 1 on the path, 2 done
  std::function<bool(const std::string&)> visit = [&](const std::string& c) {
    color[c] = 1;
    auto i = g.find(c);
    if (i != g.end())
      for (const auto& [lock, next] : i->second) {
        if (color[next] == 1) return true;
        if (color[next] == 0 && visit(next)) return true;
      }
    color[c] = 2;
    return false;
  };
  for (const auto& [c, edges] : g)
    if (color[c] == 0 && visit(c)) return true;
  return false;
}

// Every step of a reported cycle must be an edge of the graph that would exist had the
// requester been queued: `g` is that graph.
bool is_cycle_of(const graph& g, const strings& cycle, const std::string& requester) {
  if (cycle.size() < 5 || cycle.size() % 2 == 0 || cycle.front() != requester || cycle.back() != requester)
    return false;
  for (size_t i = 0; i + 2 < cycle.size(); i += 2) {
    auto e = g.find(cycle[i]);
    if (e == g.end()) return false;
    std::pair<std::string, std::string> step{cycle[i + 1], cycle[i + 2]};
    if (std::find(e->second.begin(), e->second.end(), step) == e->second.end()) return false;
  }
  return true;
}

}  // namespace

// ---- names, validation, encoding ----------------------------------------------------------

TEST_CASE("locks: mode and code names") {
  CHECK(std::string(to_string(S)) == "shared");
  CHECK(std::string(to_string(X)) == "exclusive");
  mode m = S;
  CHECK(parse_mode("exclusive", m));
  CHECK(m == X);
  CHECK(parse_mode("shared", m));
  CHECK(m == S);
  CHECK_FALSE(parse_mode("Shared", m));
  CHECK_FALSE(parse_mode("", m));
  CHECK(std::string(to_string(code::not_held)) == "not_held");
  CHECK(std::string(to_string(code::deadlock)) == "deadlock");
  CHECK(std::string(to_string(code::done)) == "done");
}

TEST_CASE("locks: validate names the field and the limit") {
  auto ok = acquire_cmd("L", "a", X, 0, 0, min_ttl_ms);
  CHECK(validate(ok).empty());

  auto c = ok;
  c.ttl_ms = 50;
  CHECK(validate(c) == "ttl_ms is 50; it must be between 100 and 86400000");
  c.ttl_ms = max_ttl_ms + 1;
  CHECK(validate(c) == "ttl_ms is 86400001; it must be between 100 and 86400000");
  c.ttl_ms = max_ttl_ms;
  CHECK(validate(c).empty());

  c = ok;
  c.wait_ms = max_wait_ms + 1;
  CHECK(validate(c) == "wait_ms is 600001; it must be between 0 and 600000");
  c.wait_ms = max_wait_ms;
  CHECK(validate(c).empty());

  c = ok;
  c.lock = "";
  CHECK(validate(c) == "lock is empty; it must be between 1 and 256 bytes");
  c.lock = std::string(max_name_bytes + 1, 'l');
  CHECK(validate(c) == "lock is 257 bytes; it must be between 1 and 256 bytes");
  c.lock = std::string(max_name_bytes, 'l');
  CHECK(validate(c).empty());

  c = ok;
  c.client = "";
  CHECK(validate(c) == "client is empty; it must be between 1 and 128 bytes");
  c.client = std::string(max_client_bytes + 1, 'c');
  CHECK(validate(c) == "client is 129 bytes; it must be between 1 and 128 bytes");

  c = ok;
  c.wanted = static_cast<mode>(3);
  CHECK(validate(c) == "mode is 3; it must be shared (1) or exclusive (2)");

  c = ok;
  c.kind = static_cast<op>(9);
  CHECK(validate(c)
        == "op is 9; it must be acquire (1), release (2), refresh (3), expire (4) or renew_all (5)");

  // release and refresh need names but no ttl; expire and renew_all need nothing.
  CHECK(validate(named_cmd(op::release, "L", "a", 0)).empty());
  CHECK(validate(named_cmd(op::refresh, "", "a", 0)) == "lock is empty; it must be between 1 and 256 bytes");
  CHECK(validate(time_cmd(op::expire, 5)).empty());
  CHECK(validate(time_cmd(op::renew_all, 5)).empty());
}

TEST_CASE("locks: apply refuses an invalid command with bad_request and changes no lock") {
  fixture f;
  auto o = f.acquire("L", "a", X, 5000, 50);
  CHECK(o.result == code::bad_request);
  CHECK(o.message == "ttl_ms is 50; it must be between 100 and 86400000");
  CHECK(f.t.lock_count() == 0);
  CHECK(f.t.last_token() == 0);
  CHECK(f.events.empty());
}

TEST_CASE("locks: commands round-trip through encode/decode and malformed bytes are refused") {
  std::vector<command> all = {
      acquire_cmd("L", "a", S, 123456789, 0, 100),
      acquire_cmd(std::string(max_name_bytes, 'n'), "client-7", X, UINT64_MAX, max_wait_ms, max_ttl_ms),
      named_cmd(op::release, "L", "b", 7),
      named_cmd(op::refresh, "lock/x", "c", 8),
      time_cmd(op::expire, 99),
      time_cmd(op::renew_all, 100),
  };
  for (const auto& c : all) {
    CAPTURE(static_cast<int>(c.kind));
    auto bytes = encode(c);
    command back;
    REQUIRE(decode(bytes, back));
    CHECK(same_command(back, c));
    CHECK(encode(back) == bytes);
    // Every proper prefix is truncated; one more byte is trailing garbage.
    command untouched = acquire_cmd("keep", "me", S, 1);
    for (size_t n = 0; n < bytes.size(); ++n) {
      command out = untouched;
      CHECK_FALSE(decode(bytes.substr(0, n), out));
      CHECK(same_command(out, untouched));  // decode changes nothing on failure
    }
    CHECK_FALSE(decode(bytes + '\0', back));
    CHECK_FALSE(decode(bytes + "xyz", back));
  }
  // Unknown enum values.
  auto bytes = encode(acquire_cmd("L", "a", S, 1));
  command out;
  for (int kind : {0, 6, 255}) {
    auto b = bytes;
    b[0] = static_cast<char>(kind);
    CHECK_FALSE(decode(b, out));
  }
  // The mode byte follows kind, now_ms and the two names (8-byte lengths).
  const size_t mode_at = 1 + 8 + 8 + 1 + 8 + 1;
  REQUIRE(bytes[mode_at] == static_cast<char>(S));
  for (int m : {0, 3, 200}) {
    auto b = bytes;
    b[mode_at] = static_cast<char>(m);
    CHECK_FALSE(decode(b, out));
  }
  // A name length pointing past the end.
  auto b = bytes;
  b[1 + 8] = static_cast<char>(0x7f);
  CHECK_FALSE(decode(b, out));
  CHECK_FALSE(decode("", out));
  CHECK_FALSE(decode("garbage that is not a command", out));
  // decode leaves the limits to validate().
  auto long_name = acquire_cmd(std::string(max_name_bytes + 1, 'n'), "a", X, 1);
  REQUIRE(decode(encode(long_name), out));
  CHECK_FALSE(validate(out).empty());
}

TEST_CASE("locks: outcomes round-trip through encode/decode and malformed bytes are refused") {
  std::vector<outcome> all;
  outcome o;
  o.result = code::granted;
  o.granted = grant{"L", "a", S, 42, 1000, 987654};
  all.push_back(o);
  o = outcome{};
  o.result = code::waiting;
  o.position = 3;
  all.push_back(o);
  o = outcome{};
  o.result = code::deadlock;
  o.cycle = {"a", "L1", "b", "L2", "a"};
  all.push_back(o);
  o = outcome{};
  o.result = code::limit;
  o.message = "lock L has 1024 waiters; max_waiters_per_lock is 1024";
  all.push_back(o);
  for (auto c : {code::timeout, code::released, code::cancelled, code::refreshed, code::not_held,
                 code::bad_request, code::done}) {
    o = outcome{};
    o.result = c;
    all.push_back(o);
  }
  for (const auto& x : all) {
    CAPTURE(to_string(x.result));
    auto bytes = encode(x);
    outcome back;
    REQUIRE(decode(bytes, back));
    CHECK(same_outcome(back, x));
    for (size_t n = 0; n < bytes.size(); ++n) CHECK_FALSE(decode(bytes.substr(0, n), back));
    CHECK_FALSE(decode(bytes + '\0', back));
  }
  auto bytes = encode(all[0]);
  outcome back;
  for (int c : {0, 12, 255}) {
    auto b = bytes;
    b[0] = static_cast<char>(c);
    CHECK_FALSE(decode(b, back));
  }
  const size_t mode_at = 1 + 8 + 1 + 8 + 1;  // code, then the grant's lock and client
  REQUIRE(bytes[mode_at] == static_cast<char>(S));
  auto b = bytes;
  b[mode_at] = 7;
  CHECK_FALSE(decode(b, back));
  // A cycle count far larger than the bytes that follow.
  auto d = encode(all[2]);
  const size_t count_at = 1 + (8 + 0) + (8 + 0) + 1 + 8 + 8 + 8 + 8;
  REQUIRE(d[count_at] == 5);
  d[count_at + 7] = static_cast<char>(0x40);
  CHECK_FALSE(decode(d, back));
}

// ---- modes and fairness ---------------------------------------------------------------------

TEST_CASE("locks: exclusive excludes everybody; shared admits shared") {
  fixture f;
  auto o = f.acquire("L", "a", X);
  REQUIRE(o.result == code::granted);
  CHECK(o.granted.lock == "L");
  CHECK(o.granted.client == "a");
  CHECK(o.granted.held == X);
  CHECK(o.granted.token == 1);
  CHECK(o.granted.ttl_ms == 10000);
  CHECK(o.granted.expires_at_ms == f.now + 10000);
  o = f.acquire("L", "b", X);
  CHECK(o.result == code::waiting);
  CHECK(o.position == 1);
  o = f.acquire("L", "c", S);
  CHECK(o.result == code::waiting);
  CHECK(o.position == 2);
  CHECK(f.holders("L") == strings{"a:exclusive"});
  CHECK(f.waiters("L") == strings{"b:exclusive", "c:shared"});

  fixture g;
  CHECK(g.acquire("L", "a", S).result == code::granted);
  CHECK(g.acquire("L", "b", S).result == code::granted);
  CHECK(g.acquire("L", "c", S).result == code::granted);
  CHECK(g.holders("L") == strings{"a:shared", "b:shared", "c:shared"});
  CHECK(g.acquire("L", "d", X).result == code::waiting);
  CHECK(g.t.holder_count() == 3);
  CHECK(g.t.waiter_count() == 1);
  CHECK(g.t.lock_count() == 1);
}

TEST_CASE("locks: FIFO: a shared request queues behind a waiting exclusive one") {
  fixture f;
  f.acquire("L", "a", S);
  REQUIRE(f.acquire("L", "x", X).result == code::waiting);
  // Compatible with the holders, but somebody waits before it.
  auto o = f.acquire("L", "b", S);
  CHECK(o.result == code::waiting);
  CHECK(o.position == 2);
  CHECK(f.release("L", "a").result == code::released);
  CHECK(describe(f.events) == strings{"granted L x"});
  CHECK(f.holders("L") == strings{"x:exclusive"});
  CHECK(f.waiters("L") == strings{"b:shared"});
}

TEST_CASE("locks: a run of shared waiters is granted together; an exclusive waiter stops the run") {
  fixture f;
  f.acquire("L", "w", X);
  f.acquire("L", "s1", S);
  f.acquire("L", "s2", S);
  f.acquire("L", "x", X);
  f.acquire("L", "s3", S);
  REQUIRE(f.release("L", "w").result == code::released);
  CHECK(describe(f.events) == strings{"granted L s1", "granted L s2"});
  CHECK(f.events[0].subject.held == S);
  CHECK(f.events[1].subject.token == f.events[0].subject.token + 1);
  CHECK(f.holders("L") == strings{"s1:shared", "s2:shared"});
  CHECK(f.waiters("L") == strings{"x:exclusive", "s3:shared"});
  f.release("L", "s1");
  CHECK(f.events.empty());
  f.release("L", "s2");
  CHECK(describe(f.events) == strings{"granted L x"});
  f.release("L", "x");
  CHECK(describe(f.events) == strings{"granted L s3"});
}

TEST_CASE("locks: a writer never starves behind a stream of readers") {
  fixture f;
  f.acquire("L", "r0", S);
  REQUIRE(f.acquire("L", "w", X).result == code::waiting);
  // Readers keep coming while the first reader still holds.
  for (int i = 1; i <= 20; ++i) CHECK(f.acquire("L", "r" + std::to_string(i), S).result == code::waiting);
  f.release("L", "r0");
  CHECK(describe(f.events) == strings{"granted L w"});
  f.release("L", "w");
  CHECK(f.events.size() == 20);  // then all the readers at once
  CHECK(f.t.status("L").holders.size() == 20);
  CHECK(f.t.waiter_count() == 0);
}

// ---- upgrades ------------------------------------------------------------------------------

TEST_CASE("locks: upgrade by the sole shared holder is immediate with a new token") {
  fixture f;
  f.acquire("L", "a", S);
  const auto old_token = f.token_of("L", "a");
  f.acquire("L", "x", X);  // a waiter does not stop the sole holder's upgrade
  f.now += 10;
  auto o = f.acquire("L", "a", X, 5000, 2000);
  REQUIRE(o.result == code::granted);
  CHECK(o.granted.held == X);
  CHECK(o.granted.token > old_token);
  CHECK(o.granted.token == f.t.last_token());
  CHECK(o.granted.ttl_ms == 2000);
  CHECK(o.granted.expires_at_ms == f.now + 2000);
  CHECK(f.holders("L") == strings{"a:exclusive"});
  CHECK(f.waiters("L") == strings{"x:exclusive"});
}

TEST_CASE("locks: upgrade beside other holders waits at the front, keeping the shared grant") {
  fixture f;
  f.acquire("L", "a", S);
  f.acquire("L", "b", S);
  f.acquire("L", "x", X);
  auto o = f.acquire("L", "a", X);
  REQUIRE(o.result == code::waiting);
  CHECK(o.position == 1);
  CHECK(f.holders("L") == strings{"a:shared", "b:shared"});
  CHECK(f.waiters("L") == strings{"a:exclusive+up", "x:exclusive"});
  // Asking again: still waiting, same place.
  o = f.acquire("L", "a", X);
  CHECK(o.result == code::waiting);
  CHECK(o.position == 1);
  // Asking for shared again: the shared grant it has.
  o = f.acquire("L", "a", S);
  CHECK(o.result == code::granted);
  CHECK(o.granted.held == S);
  // wait_ms 0 for an upgrade that cannot happen at once.
  fixture g;
  g.acquire("L", "a", S);
  g.acquire("L", "b", S);
  CHECK(g.acquire("L", "a", X, 0).result == code::timeout);
  CHECK(g.holders("L") == strings{"a:shared", "b:shared"});
  CHECK(g.t.waiter_count() == 0);

  const auto token_a = f.token_of("L", "a");
  f.release("L", "b");
  REQUIRE(describe(f.events) == strings{"granted L a"});
  CHECK(f.events[0].subject.held == X);
  CHECK(f.events[0].subject.token > token_a);
  CHECK(f.holders("L") == strings{"a:exclusive"});
  CHECK(f.waiters("L") == strings{"x:exclusive"});
}

TEST_CASE("locks: two upgraders deadlock; the second is the victim and keeps its shared grant") {
  fixture f;
  f.acquire("L", "a", S);
  f.acquire("L", "b", S);
  REQUIRE(f.acquire("L", "a", X).result == code::waiting);
  auto o = f.acquire("L", "b", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"b", "L", "a", "L", "b"});
  CHECK(f.holders("L") == strings{"a:shared", "b:shared"});
  CHECK(f.waiters("L") == strings{"a:exclusive+up"});
  f.release("L", "b");
  CHECK(describe(f.events) == strings{"granted L a"});
}

TEST_CASE("locks: a holder releasing gives up its upgrade wait too") {
  fixture f;
  f.acquire("L", "a", S);
  f.acquire("L", "b", S);
  f.acquire("L", "x", X);
  REQUIRE(f.acquire("L", "a", X).result == code::waiting);
  CHECK(f.release("L", "a").result == code::released);
  CHECK(describe(f.events) == strings{"cancelled L a"});
  CHECK(f.holders("L") == strings{"b:shared"});
  CHECK(f.waiters("L") == strings{"x:exclusive"});
  f.release("L", "b");
  CHECK(describe(f.events) == strings{"granted L x"});
}

// ---- idempotence, wait_ms 0 -----------------------------------------------------------------

TEST_CASE("locks: acquire is idempotent: same token, lease renewed; a waiter keeps its place") {
  fixture f;
  auto first = f.acquire("L", "a", X, 5000, 1000);
  f.now += 500;
  auto again = f.acquire("L", "a", X, 5000, 3000);
  REQUIRE(again.result == code::granted);
  CHECK(again.granted.token == first.granted.token);
  CHECK(again.granted.expires_at_ms == f.now + 3000);
  CHECK(again.granted.ttl_ms == 3000);
  CHECK(f.t.last_token() == first.granted.token);
  CHECK(f.t.next_deadline() == f.now + 3000);
  // An exclusive holder asking for shared keeps its exclusive grant.
  auto weaker = f.acquire("L", "a", S);
  CHECK(weaker.result == code::granted);
  CHECK(weaker.granted.held == X);
  CHECK(weaker.granted.token == first.granted.token);

  f.acquire("L", "b", S);
  f.acquire("L", "c", X);
  auto w = f.acquire("L", "b", S);
  CHECK(w.result == code::waiting);
  CHECK(w.position == 1);
  w = f.acquire("L", "c", S, 0);  // even with another mode or wait_ms 0
  CHECK(w.result == code::waiting);
  CHECK(w.position == 2);
  CHECK(f.waiters("L") == strings{"b:shared", "c:exclusive"});
  CHECK(f.t.last_token() == first.granted.token);
}

TEST_CASE("locks: wait_ms 0 tries once") {
  fixture f;
  CHECK(f.acquire("L", "a", X, 0).result == code::granted);
  CHECK(f.acquire("L", "b", S, 0).result == code::timeout);
  CHECK(f.t.waiter_count() == 0);
  CHECK(f.t.last_token() == 1);
  // Not grantable because somebody waits, although compatible with the holders.
  fixture g;
  g.acquire("L", "a", S);
  g.acquire("L", "x", X);
  CHECK(g.acquire("L", "b", S, 0).result == code::timeout);
  // wait_ms 0 never deadlocks: it never waits.
  fixture h;
  h.acquire("L1", "a", X);
  h.acquire("L2", "b", X);
  h.acquire("L2", "a", X);
  CHECK(h.acquire("L1", "b", X, 0).result == code::timeout);
}

// ---- time: expiry, timeouts, refresh, renew_all ---------------------------------------------

TEST_CASE("locks: a waiter times out through expire") {
  fixture f;
  f.acquire("L", "a", X, 0, 60000);
  f.acquire("L", "b", X, 300);
  CHECK(f.t.next_deadline() == f.now + 300);
  f.now += 299;
  f.expire();
  CHECK(f.events.empty());
  CHECK(f.t.waiter_count() == 1);
  f.now += 1;
  CHECK(f.expire().result == code::done);
  CHECK(describe(f.events) == strings{"timed_out L b"});
  CHECK(f.t.waiter_count() == 0);
  CHECK(f.t.next_deadline() == 1000 + 60000);
}

TEST_CASE("locks: an exclusive waiter at the front timing out lets the shared ones behind in") {
  fixture f;
  f.acquire("L", "a", S, 0, 60000);
  f.acquire("L", "x", X, 100);
  f.acquire("L", "b", S, 5000);
  f.acquire("L", "c", S, 5000);
  f.now += 100;
  f.expire();
  CHECK(describe(f.events) == strings{"timed_out L x", "granted L b", "granted L c"});
  CHECK(f.holders("L") == strings{"a:shared", "b:shared", "c:shared"});
}

TEST_CASE("locks: a lease lapses through expire, then the next waiter is granted (in that order)") {
  fixture f;
  auto a = f.acquire("L", "a", X, 0, 1000);
  f.acquire("L", "b", X, 60000, 2000);
  f.acquire("L", "c", S, 60000);
  CHECK(f.t.next_deadline() == f.now + 1000);
  f.now += 999;
  f.expire();
  CHECK(f.events.empty());
  // Until expire is applied, a lapsed holder still holds (and may refresh).
  f.now += 5;
  CHECK(f.holders("L") == strings{"a:exclusive"});
  f.expire();
  REQUIRE(describe(f.events) == strings{"expired L a", "granted L b"});
  CHECK(f.events[0].subject.token == a.granted.token);
  CHECK(f.events[0].subject.held == X);
  CHECK(f.events[0].subject.expires_at_ms == 1000 + 1000);
  CHECK(f.events[1].subject.token == a.granted.token + 1);
  CHECK(f.events[1].subject.ttl_ms == 2000);
  CHECK(f.events[1].subject.expires_at_ms == f.now + 2000);
  CHECK(f.holders("L") == strings{"b:exclusive"});
  CHECK(f.waiters("L") == strings{"c:shared"});
  CHECK(f.refresh("L", "a").result == code::not_held);
}

TEST_CASE("locks: expire reports lapses in deadline order and skips waiters whose own wait passed") {
  fixture f;
  f.acquire("L", "a", X, 0, 1000);
  f.acquire("M", "m", X, 0, 500);
  f.acquire("L", "b", X, 800);  // its wait ends before a's lease
  f.acquire("L", "c", X, 5000);
  f.now += 2000;
  f.expire();
  CHECK(describe(f.events) == strings{"expired M m", "timed_out L b", "expired L a", "granted L c"});
  CHECK(f.t.lock_count() == 1);
}

TEST_CASE("locks: an upgrade wait that times out keeps the shared grant") {
  fixture f;
  f.acquire("L", "a", S, 0, 60000);
  f.acquire("L", "b", S, 0, 60000);
  const auto token = f.token_of("L", "a");
  REQUIRE(f.acquire("L", "a", X, 300).result == code::waiting);
  f.now += 300;
  f.expire();
  CHECK(describe(f.events) == strings{"timed_out L a"});
  CHECK(f.holders("L") == strings{"a:shared", "b:shared"});
  CHECK(f.token_of("L", "a") == token);
  CHECK(f.t.waiter_count() == 0);
}

TEST_CASE("locks: a holder losing its lease also loses its upgrade wait") {
  fixture f;
  f.acquire("L", "a", S, 0, 500);
  f.acquire("L", "b", S, 0, 60000);
  REQUIRE(f.acquire("L", "a", X, 60000).result == code::waiting);
  f.now += 500;
  f.expire();
  CHECK(describe(f.events) == strings{"expired L a", "cancelled L a"});
  CHECK(f.holders("L") == strings{"b:shared"});
  CHECK(f.t.waiter_count() == 0);
}

TEST_CASE("locks: refresh sets the lease to now + ttl; only holders may refresh") {
  fixture f;
  f.acquire("L", "a", S, 0, 1000);
  f.acquire("L", "x", X);
  f.now += 700;
  auto o = f.refresh("L", "a");
  REQUIRE(o.result == code::refreshed);
  CHECK(o.granted.expires_at_ms == f.now + 1000);
  CHECK(o.granted.token == 1);
  CHECK(o.granted.held == S);
  CHECK(f.t.status("L").holders[0].expires_at_ms == f.now + 1000);
  CHECK(f.refresh("L", "x").result == code::not_held);  // a waiter
  CHECK(f.refresh("L", "zz").result == code::not_held);
  CHECK(f.refresh("nope", "a").result == code::not_held);
  f.now += 999;
  f.expire();
  CHECK(f.events.empty());
}

TEST_CASE("locks: release by a holder, a waiter (cancel) and a stranger") {
  fixture f;
  f.acquire("L", "a", X);
  f.acquire("L", "b", X);
  f.acquire("L", "c", S);
  CHECK(f.release("L", "zz").result == code::not_held);
  CHECK(f.release("other", "a").result == code::not_held);
  CHECK(f.events.empty());
  CHECK(f.release("L", "b").result == code::cancelled);
  CHECK(describe(f.events) == strings{"cancelled L b"});
  CHECK(f.waiters("L") == strings{"c:shared"});
  CHECK(f.release("L", "a").result == code::released);
  CHECK(describe(f.events) == strings{"granted L c"});
  CHECK(f.release("L", "a").result == code::not_held);
  CHECK(f.release("L", "c").result == code::released);
  CHECK(f.t.lock_count() == 0);
  CHECK(f.t.holder_count() == 0);
  CHECK_FALSE(f.t.next_deadline().has_value());
  CHECK(f.t.status("L").holders.empty());
}

TEST_CASE("locks: cancelling the front waiter lets the ones behind in") {
  fixture f;
  f.acquire("L", "a", S);
  f.acquire("L", "x", X);
  f.acquire("L", "b", S);
  f.release("L", "x");
  CHECK(describe(f.events) == strings{"cancelled L x", "granted L b"});
}

TEST_CASE("locks: renew_all extends every lease to at least now + ttl") {
  fixture f;
  f.acquire("L", "a", X, 0, 1000);
  f.acquire("M", "b", S, 0, 100000);
  f.now += 900;
  CHECK(f.renew_all().result == code::done);
  auto a = f.t.status("L").holders.at(0);
  auto b = f.t.status("M").holders.at(0);
  CHECK(a.expires_at_ms == f.now + 1000);
  CHECK(b.expires_at_ms == f.now + 100000);
  CHECK(a.token == 1);  // the grants stay the same
  CHECK(f.t.next_deadline() == f.now + 1000);
  CHECK(f.t.last_token() == 2);
  CHECK(f.events.empty());
  // A holder whose lease has passed but that expire has not yet dropped is renewed too.
  f.now += 5000;
  f.renew_all();
  CHECK(f.t.status("L").holders.at(0).expires_at_ms == f.now + 1000);
  f.expire();
  CHECK(f.events.empty());
}

TEST_CASE("locks: tokens strictly increase across every grant") {
  fixture f;
  std::vector<uint64_t> tokens;
  tokens.push_back(f.acquire("L", "a", S).granted.token);
  tokens.push_back(f.acquire("L", "b", S).granted.token);
  tokens.push_back(f.acquire("M", "c", X).granted.token);
  f.acquire("L", "d", X);
  f.release("L", "a");
  f.release("L", "b");
  tokens.push_back(f.events.at(0).subject.token);  // d
  f.acquire("M", "c", X);  // idempotent: no new token
  f.release("L", "d");
  f.acquire("L", "a", S);
  tokens.push_back(f.acquire("L", "a", X).granted.token);  // upgrade
  CHECK(tokens == std::vector<uint64_t>{1, 2, 3, 4, 6});
  CHECK(f.t.last_token() == 6);
}

TEST_CASE("locks: time never runs backwards") {
  fixture f;
  f.apply(acquire_cmd("L", "a", X, 5000, 0, 1000));
  CHECK(f.t.now_ms() == 5000);
  // A new leader whose clock lags: its commands apply at the newest time.
  auto o = f.apply(acquire_cmd("M", "b", X, 3000, 0, 1000));
  CHECK(f.t.now_ms() == 5000);
  CHECK(o.granted.expires_at_ms == 6000);
  f.apply(time_cmd(op::expire, 100));
  CHECK(f.events.empty());
  f.apply(time_cmd(op::expire, 6000));
  CHECK(f.events.size() == 2);
  // Even a refused command carries the leader's time.
  f.apply(acquire_cmd("L", "a", X, 7000, 0, 1));
  CHECK(f.t.now_ms() == 7000);
}

// ---- deadlocks ---------------------------------------------------------------------------------

TEST_CASE("locks: deadlock: two clients, exclusive") {
  fixture f;
  f.acquire("L1", "a", X);
  f.acquire("L2", "b", X);
  REQUIRE(f.acquire("L2", "a", X).result == code::waiting);
  const auto before = f.t.snapshot();
  auto o = f.acquire("L1", "b", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"b", "L1", "a", "L2", "b"});
  CHECK(f.t.snapshot() == before);  // the victim is not queued
  CHECK(f.waiters("L1").empty());
}

TEST_CASE("locks: deadlock: three clients") {
  fixture f;
  f.acquire("L1", "a", X);
  f.acquire("L2", "b", X);
  f.acquire("L3", "c", X);
  f.acquire("L2", "a", X);
  f.acquire("L3", "b", X);
  auto o = f.acquire("L1", "c", S);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"c", "L1", "a", "L2", "b", "L3", "c"});
}

TEST_CASE("locks: deadlock: a long cycle of ten clients") {
  fixture f;
  const int n = 10;
  auto client = [](int i) { return "c" + std::to_string(i); };
  auto lock = [](int i) { return "L" + std::to_string(i); };
  for (int i = 0; i < n; ++i) REQUIRE(f.acquire(lock(i), client(i), X).result == code::granted);
  for (int i = 0; i + 1 < n; ++i) REQUIRE(f.acquire(lock(i + 1), client(i), X).result == code::waiting);
  auto o = f.acquire(lock(0), client(n - 1), X);
  REQUIRE(o.result == code::deadlock);
  strings expected{client(n - 1), lock(0)};
  for (int i = 0; i + 1 < n; ++i) {
    expected.push_back(client(i));
    expected.push_back(lock(i + 1));
  }
  expected.push_back(client(n - 1));
  CHECK(o.cycle == expected);
  // Breaking the chain anywhere removes the cycle.
  f.release(lock(5), client(4));
  CHECK(f.acquire(lock(0), client(n - 1), X).result == code::waiting);
}

TEST_CASE("locks: deadlock: shared and exclusive mixed") {
  // a and b share L1; c holds L2; a waits for L2. c asking for L1 exclusive waits for a.
  fixture f;
  f.acquire("L1", "a", S);
  f.acquire("L1", "b", S);
  f.acquire("L2", "c", X);
  REQUIRE(f.acquire("L2", "a", S).result == code::waiting);
  auto o = f.acquire("L1", "c", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"c", "L1", "a", "L2", "c"});
  // Shared with the shared holders and nobody queued on L1: granted, no wait, no cycle.
  CHECK(f.acquire("L1", "c", S).result == code::granted);

  // Upgrade against a shared co-holder that waits for the upgrader.
  fixture g;
  g.acquire("L", "a", S);
  g.acquire("L", "b", S);
  g.acquire("M", "a", X);
  REQUIRE(g.acquire("M", "b", S).result == code::waiting);
  auto u = g.acquire("L", "a", X);
  REQUIRE(u.result == code::deadlock);
  CHECK(u.cycle == strings{"a", "L", "b", "M", "a"});
  CHECK(g.waiters("L").empty());
}

TEST_CASE("locks: deadlock through a waiter queued earlier") {
  // x shares L1; b waits for L1 exclusively; a holds L2 and queues for L1 (shared) behind b,
  // so a waits for b. b asking for L2 closes b -> a -> b.
  fixture f;
  f.acquire("L2", "a", X);
  f.acquire("L1", "x", S);
  REQUIRE(f.acquire("L1", "b", X).result == code::waiting);
  REQUIRE(f.acquire("L1", "a", S).result == code::waiting);
  auto o = f.acquire("L2", "b", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"b", "L2", "a", "L1", "b"});
}

TEST_CASE("locks: deadlock through an earlier exclusive waiter and the holder behind it") {
  // x holds L; e and w wait for it exclusively in that order; w holds M. x asking for M waits
  // for w, who waits (through e, or directly) for x.
  fixture f;
  f.acquire("L", "x", X);
  f.acquire("M", "w", X);
  f.acquire("L", "e", X);
  f.acquire("L", "w", X);
  auto before = wait_for_graph(f.t, {"L", "M"});
  auto o = f.acquire("M", "x", X);
  REQUIRE(o.result == code::deadlock);
  before["x"].push_back({"M", "w"});
  CHECK(is_cycle_of(before, o.cycle, "x"));
  CHECK(o.cycle.front() == "x");
  CHECK(o.cycle[1] == "M");
  CHECK(o.cycle[2] == "w");
}

TEST_CASE("locks: deadlock through a shared waiter between an earlier exclusive waiter and the requester") {
  // x holds L; e waits for L exclusively, then s (shared) behind e; s also waits for N, held
  // by w. w asking for L exclusively waits for e and for s: w -> s -> w.
  fixture f;
  f.acquire("L", "x", X);
  f.acquire("N", "w", X);
  REQUIRE(f.acquire("L", "e", X).result == code::waiting);
  REQUIRE(f.acquire("L", "s", S).result == code::waiting);
  REQUIRE(f.acquire("N", "s", X).result == code::waiting);
  auto o = f.acquire("L", "w", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"w", "L", "s", "N", "w"});
}

TEST_CASE("locks: no false deadlock: shared waiters do not wait for each other") {
  // x holds L exclusively; a then b queue for L shared (they will be granted together); b
  // holds N. a asking for N waits for b, but b does not wait for a: no cycle.
  fixture f;
  f.acquire("L", "x", X);
  f.acquire("N", "b", X);
  REQUIRE(f.acquire("L", "a", S).result == code::waiting);
  REQUIRE(f.acquire("L", "b", S).result == code::waiting);
  auto o = f.acquire("N", "a", X);
  REQUIRE(o.result == code::waiting);
  CHECK(o.cycle.empty());
  f.release("L", "x");
  CHECK(describe(f.events) == strings{"granted L a", "granted L b"});
  f.release("N", "b");
  CHECK(describe(f.events) == strings{"granted N a"});

}

TEST_CASE("locks: a cycle through a shared waiter, an earlier exclusive waiter and a shared holder") {
  // a shares L; x waits for L exclusively (x -> a); b, holding M, queues for L shared behind
  // x (b -> x, but not b -> a: both shared). a asking for M closes a -> b -> x -> a.
  fixture f;
  f.acquire("L", "a", S);
  f.acquire("M", "b", X);
  REQUIRE(f.acquire("L", "x", X).result == code::waiting);
  REQUIRE(f.acquire("L", "b", S).result == code::waiting);
  auto o = f.acquire("M", "a", X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle == strings{"a", "M", "b", "L", "x", "L", "a"});
}

// ---- limits -------------------------------------------------------------------------------------

TEST_CASE("locks: max_waiters_per_lock") {
  fixture f;
  f.acquire("L", "holder", X);
  for (size_t i = 0; i < max_waiters_per_lock; ++i)
    REQUIRE(f.acquire("L", "w" + std::to_string(i), S).result == code::waiting);
  auto o = f.acquire("L", "late", S);
  CHECK(o.result == code::limit);
  CHECK(o.message == "lock L has 1024 waiters; max_waiters_per_lock is 1024");
  CHECK(f.t.waiter_count() == max_waiters_per_lock);
  // wait_ms 0 is not a waiter: it times out as usual.
  CHECK(f.acquire("L", "late", S, 0).result == code::timeout);
  // An upgrade would be a waiter too.
  fixture g;
  g.acquire("L", "a", S);
  g.acquire("L", "b", S);
  for (size_t i = 0; i < max_waiters_per_lock; ++i) g.acquire("L", "w" + std::to_string(i), X);
  CHECK(g.acquire("L", "a", X).result == code::limit);
  // Releasing the holder grants the whole run of shared waiters at once.
  f.release("L", "holder");
  CHECK(f.events.size() == max_waiters_per_lock);
}

TEST_CASE("locks: max_locks_per_client counts held and waited locks") {
  fixture f;
  f.acquire("busy", "other", X);
  for (size_t i = 0; i + 1 < max_locks_per_client; ++i)
    REQUIRE(f.acquire("L" + std::to_string(i), "c", X).result == code::granted);
  REQUIRE(f.acquire("busy", "c", X).result == code::waiting);  // the 1024th
  auto o = f.acquire("one-more", "c", X);
  CHECK(o.result == code::limit);
  CHECK(o.message == "client c holds or waits for 1024 locks; max_locks_per_client is 1024");
  // What it already has is answered as usual.
  CHECK(f.acquire("L0", "c", X).result == code::granted);
  CHECK(f.acquire("busy", "c", X).result == code::waiting);
  f.release("L0", "c");
  CHECK(f.acquire("one-more", "c", X).result == code::granted);
}

// ---- snapshots -----------------------------------------------------------------------------------

TEST_CASE("locks: snapshot and restore round-trip exactly") {
  fixture f;
  f.now = 123456;
  f.acquire("L", "a", S, 0, 1000);
  f.acquire("L", "b", S, 0, 2000);
  f.acquire("L", "x", X, 3000);
  f.acquire("L", "c", S, 4000);
  f.acquire("L", "a", X, 5000, 7000);  // upgrade waiter at the front
  f.acquire("M", "d", X);
  f.acquire("M", "e", S);
  f.release("M", "d");  // e granted: last_token moves
  f.acquire("N", "z", X);
  f.release("N", "z");  // N is gone but its token stays counted

  const auto snap = f.t.snapshot();
  table t2;
  REQUIRE(t2.restore(snap));
  CHECK(t2.snapshot() == snap);
  CHECK(t2.now_ms() == 123456);
  CHECK(t2.last_token() == f.t.last_token());
  CHECK(t2.lock_count() == 2);
  CHECK(t2.holder_count() == f.t.holder_count());
  CHECK(t2.waiter_count() == f.t.waiter_count());
  CHECK(t2.next_deadline() == f.t.next_deadline());
  auto w = t2.status("L").waiters;
  REQUIRE(w.size() == 3);
  CHECK(w[0].client == "a");
  CHECK(w[0].upgrade);
  CHECK(w[1].client == "x");
  CHECK(w[2].client == "c");

  // The restored table behaves the same from here on.
  fixture g;
  g.t = t2;
  g.index = f.index;
  g.now = f.now;
  std::vector<std::string> answers_f, answers_g;  // every answer and event, step by step
  std::vector<strings> events_f, events_g;
  for (auto* h : {&f, &g}) {
    auto& answers = h == &f ? answers_f : answers_g;
    auto& events = h == &f ? events_f : events_g;
    h->now += 3000;
    answers.push_back(encode(h->expire()));
    events.push_back(describe(h->events));
    answers.push_back(encode(h->release("L", "b")));
    events.push_back(describe(h->events));
    answers.push_back(encode(h->acquire("M", "q", X)));
    events.push_back(describe(h->events));
  }
  CHECK(answers_f == answers_g);
  CHECK(events_f == events_g);
  // The expiry and the release did something to compare.
  const bool acted = !events_f[0].empty() || !events_f[1].empty();
  CHECK(acted);
  CHECK(f.t.snapshot() == g.t.snapshot());

  // An empty table too.
  table empty;
  table t3;
  REQUIRE(t3.restore(empty.snapshot()));
  CHECK(t3.snapshot() == empty.snapshot());
}

namespace {

// Byte-level writer of snapshots, to build malformed ones.
struct snap_writer {
  std::string out;
  snap_writer& u8(uint8_t x) {
    out.push_back(static_cast<char>(x));
    return *this;
  }
  snap_writer& u64(uint64_t x) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
    return *this;
  }
  snap_writer& str(const std::string& s) {
    u64(s.size());
    out += s;
    return *this;
  }
  snap_writer& holder(const std::string& c, uint8_t m, uint64_t token) {
    return str(c).u8(m).u64(token).u64(1000).u64(5000);
  }
  snap_writer& waiter(const std::string& c, uint8_t m, uint8_t up) {
    return str(c).u8(m).u8(up).u64(1000).u64(6000);
  }
};

std::string header(uint64_t nlocks, uint64_t last_token = 10) {
  return snap_writer{}.u8(1).u64(100).u64(last_token).u64(nlocks).out;
}

}  // namespace

TEST_CASE("locks: restore refuses malformed snapshots and leaves the table unchanged") {
  fixture f;
  f.acquire("L", "a", S, 0, 1000);
  f.acquire("L", "b", S, 0, 1000);
  f.acquire("L", "x", X);
  f.acquire("L", "a", X);
  f.acquire("M", "c", X);
  const auto good = f.t.snapshot();
  table t;
  REQUIRE(t.restore(good));

  fixture other;
  other.acquire("Q", "q", X);
  const auto mine = other.t.snapshot();
  auto refused = [&](const std::string& bytes) {
    bool ok = other.t.restore(bytes);
    CHECK(other.t.snapshot() == mine);
    return !ok;
  };
  for (size_t n = 0; n < good.size(); ++n) CHECK(refused(good.substr(0, n)));
  CHECK(refused(good + '\0'));
  CHECK(refused("nonsense"));
  auto bad_version = good;
  bad_version[0] = 2;
  CHECK(refused(bad_version));

  // Locks written byte by byte: lock(name), then holder count, holders, waiter count, waiters.
  auto lock = [](const std::string& name) { return snap_writer{}.str(name); };
  const uint8_t sh = 1;
  const uint8_t ex = 2;
  // A well-formed one is accepted (sanity of the writer itself).
  table fresh;
  CHECK(fresh.restore(header(1) + lock("L").u64(1).holder("a", ex, 3).u64(1).waiter("b", sh, 0).out));
  CHECK(fresh.waiter_count() == 1);

  // Bad enums.
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", 3, 3).u64(0).out));
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", ex, 3).u64(1).waiter("b", 0, 0).out));
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", ex, 3).u64(1).waiter("b", sh, 2).out));
  // Exclusive beside another holder; a client twice.
  CHECK(refused(header(1) + lock("L").u64(2).holder("a", ex, 3).holder("b", sh, 4).u64(0).out));
  CHECK(refused(header(1) + lock("L").u64(2).holder("a", sh, 3).holder("b", ex, 4).u64(0).out));
  CHECK(refused(header(1) + lock("L").u64(2).holder("a", sh, 3).holder("a", sh, 4).u64(0).out));
  CHECK(refused(header(1)
                + lock("L").u64(1).holder("a", ex, 3).u64(2).waiter("b", sh, 0).waiter("b", ex, 0).out));
  // Tokens: zero, above last_token, or used twice.
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", ex, 0).u64(0).out));
  CHECK(refused(header(1, 2) + lock("L").u64(1).holder("a", ex, 3).u64(0).out));
  CHECK(refused(header(2) + lock("L").u64(1).holder("a", ex, 3).u64(0).out
                + lock("M").u64(1).holder("b", ex, 3).u64(0).out));
  // A plain waiter that holds; an upgrade waiter not first, not holding or not exclusive.
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", sh, 3).u64(1).waiter("a", ex, 0).out));
  CHECK(refused(header(1) + lock("L").u64(2).holder("a", sh, 3).holder("b", sh, 4).out
                + snap_writer{}.u64(2).waiter("x", ex, 0).waiter("a", ex, 1).out));
  CHECK(refused(header(1) + lock("L").u64(1).holder("a", ex, 3).u64(1).waiter("b", ex, 1).out));
  CHECK(refused(header(1) + lock("L").u64(2).holder("a", sh, 3).holder("b", sh, 4).out
                + snap_writer{}.u64(1).waiter("a", sh, 1).out));
  // An empty lock, an empty name, locks out of order or twice, empty client.
  CHECK(refused(header(1) + lock("L").u64(0).u64(0).out));
  CHECK(refused(header(1) + lock("").u64(1).holder("a", ex, 3).u64(0).out));
  CHECK(refused(header(2) + lock("M").u64(1).holder("a", ex, 3).u64(0).out
                + lock("L").u64(1).holder("b", ex, 4).u64(0).out));
  CHECK(refused(header(2) + lock("L").u64(1).holder("a", ex, 3).u64(0).out
                + lock("L").u64(1).holder("b", ex, 4).u64(0).out));
  CHECK(refused(header(1) + lock("L").u64(1).holder("", ex, 3).u64(0).out));
  // Counts far beyond the bytes.
  CHECK(refused(header(UINT64_MAX)));
  CHECK(refused(header(1) + lock("L").u64(UINT64_MAX).out));
}

// ---- scale ---------------------------------------------------------------------------------------

TEST_CASE("locks: thousands of locks and clients, long queues and long wait chains") {
  fixture f;
  const int n = 3000;
  for (int i = 0; i < n; ++i)
    REQUIRE(f.acquire("L" + std::to_string(i), "c" + std::to_string(i), X).result == code::granted);
  // A chain: c(i) waits for L(i+1), held by c(i+1).
  for (int i = 0; i + 1 < n; ++i)
    REQUIRE(f.acquire("L" + std::to_string(i + 1), "c" + std::to_string(i), X).result == code::waiting);
  auto o = f.acquire("L0", "c" + std::to_string(n - 1), X);
  REQUIRE(o.result == code::deadlock);
  CHECK(o.cycle.size() == 2 * static_cast<size_t>(n) + 1);
  // A hot lock with a full queue of exclusive waiters (each start of a wait searches).
  for (size_t i = 0; i < max_waiters_per_lock; ++i)
    REQUIRE(f.acquire("hot", "h" + std::to_string(i), X).result
            == (i == 0 ? code::granted : code::waiting));
  for (size_t i = 0; i < max_waiters_per_lock; ++i) f.release("hot", "h" + std::to_string(i));
  CHECK(f.t.status("hot").holders.empty());
  CHECK(f.t.lock_count() == static_cast<size_t>(n));
  f.now += 100000;
  f.expire();
  CHECK(f.t.lock_count() == 0);
  CHECK(f.t.holder_count() == 0);
  CHECK(f.t.waiter_count() == 0);
}

// ---- the randomized property test ----------------------------------------------------------------

namespace {

struct property_run {
  const std::vector<std::string> locks{"A", "B", "C"};
  const std::vector<std::string> clients{"c1", "c2", "c3", "c4", "c5"};
  dsync::raft::rng rng;
  table t;
  uint64_t index = 0;
  uint64_t now = 1000;
  uint64_t grants = 0;
  uint64_t deadlocks = 0;
  uint64_t upgrades_waiting = 0;

  explicit property_run(uint64_t seed) : rng(seed) {}

  template <class T>
  const T& pick(const std::vector<T>& v) { return v[rng.below(v.size())]; }

  command random_command() {
    now += rng.below(4) == 0 ? rng.below(600) : rng.below(40);
    // Sometimes a lagging leader's clock.
    uint64_t stamp = rng.below(10) == 0 ? now - std::min<uint64_t>(now, rng.below(500)) : now;
    auto r = rng.below(100);
    if (r < 50) {
      uint64_t wait = rng.below(4) == 0 ? 0 : 1 + rng.below(1500);
      uint64_t ttl = min_ttl_ms + rng.below(1500);
      if (rng.below(50) == 0) ttl = 1;  // invalid
      return acquire_cmd(pick(locks), pick(clients), rng.below(2) ? S : X, stamp, wait, ttl);
    }
    if (r < 72) return named_cmd(op::release, pick(locks), pick(clients), stamp);
    if (r < 80) return named_cmd(op::refresh, pick(locks), pick(clients), stamp);
    if (r < 97) {
      // The leader proposes expire when the next deadline passes.
      auto d = t.next_deadline();
      if (d && *d > now && rng.below(2)) now = *d;
      return time_cmd(op::expire, now);
    }
    return time_cmd(op::renew_all, stamp);
  }

  // The first broken invariant after applying `c` (answered `o`, with `events`), or "".
  std::string check_after(const command& c, const outcome& o, const std::vector<event>& events,
                          uint64_t token_before, uint64_t now_before) {
    std::map<std::string, lock_status> st;
    for (const auto& lock : locks) st[lock] = t.status(lock);
    auto holder_of = [&](const std::string& lock, const std::string& client) -> std::optional<holder_status> {
      for (const auto& h : st[lock].holders)
        if (h.client == client) return h;
      return std::nullopt;
    };
    auto position_of = [&](const std::string& lock, const std::string& client) -> size_t {
      const auto& w = st[lock].waiters;
      for (size_t i = 0; i < w.size(); ++i)
        if (w[i].client == client) return i + 1;
      return 0;
    };
    auto same_grant = [](const holder_status& h, const grant& g) {
      return h.client == g.client && h.held == g.held && h.token == g.token && h.ttl_ms == g.ttl_ms
             && h.expires_at_ms == g.expires_at_ms;
    };

    // Time and tokens: each grant takes the next token, in the order reported.
    if (t.now_ms() != std::max(now_before, c.now_ms)) return "time is not max(before, now_ms)";
    uint64_t next_token = token_before;
    std::string why;
    auto new_grant = [&](const grant& g) {
      if (g.token != next_token + 1 && why.empty()) why = "grant token " + std::to_string(g.token)
                                                         + " after " + std::to_string(next_token);
      next_token = g.token;
      ++grants;
    };
    if (o.result == code::granted && o.granted.token > token_before) new_grant(o.granted);
    for (const auto& e : events)
      if (e.what == event::kind::granted) new_grant(e.subject);
    if (!why.empty()) return why;
    if (t.last_token() != next_token) return "last_token does not count the grants";

    // The answer agrees with status().
    if (o.result == code::granted || o.result == code::refreshed) {
      auto h = holder_of(c.lock, c.client);
      if (!h || o.granted.lock != c.lock || !same_grant(*h, o.granted)) return "answered grant not in status";
      if (o.result == code::granted && o.granted.held < c.wanted) return "granted a weaker mode";
    }
    if (o.result == code::waiting) {
      if (position_of(c.lock, c.client) != o.position) return "waiting position differs from status";
      if (holder_of(c.lock, c.client)) ++upgrades_waiting;
    }
    if ((o.result == code::released || o.result == code::cancelled) && holder_of(c.lock, c.client))
      return "still holds after release";
    if ((o.result == code::released || o.result == code::cancelled || o.result == code::timeout
         || o.result == code::deadlock)
        && position_of(c.lock, c.client) != 0)
      return std::string("still waits after ") + to_string(o.result);
    if (o.result == code::deadlock) {
      ++deadlocks;
      // Each step must be an edge of the graph had the requester queued (the table is
      // unchanged by a refused request).
      graph g = wait_for_graph(t, locks);
      const auto& s = st[c.lock];
      if (holder_of(c.lock, c.client)) {  // an upgrade would wait at the front
        for (const auto& h : s.holders)
          if (h.client != c.client) g[c.client].push_back({c.lock, h.client});
        for (const auto& w : s.waiters) g[w.client].push_back({c.lock, c.client});
      } else {
        for (const auto& h : s.holders)
          if (conflict(c.wanted, h.held)) g[c.client].push_back({c.lock, h.client});
        for (const auto& w : s.waiters)
          if (conflict(c.wanted, w.wanted)) g[c.client].push_back({c.lock, w.client});
      }
      if (!is_cycle_of(g, o.cycle, c.client)) return "reported cycle is not a cycle of the graph";
    }
    for (const auto& e : events) {
      auto h = holder_of(e.subject.lock, e.subject.client);
      switch (e.what) {
        case event::kind::granted:
          if (!h || !same_grant(*h, e.subject)) return "granted event not in status";
          break;
        case event::kind::expired:
          if ((h && h->token == e.subject.token) || e.subject.expires_at_ms > t.now_ms())
            return "expired event for a live grant";
          break;
        case event::kind::timed_out:
        case event::kind::cancelled:
          if (position_of(e.subject.lock, e.subject.client) != 0) return "timed out or cancelled but waits";
          break;
      }
    }

    // The table's own invariants.
    size_t holders = 0;
    size_t waiters = 0;
    size_t locks_used = 0;
    std::optional<uint64_t> earliest;
    auto note = [&](uint64_t d) { earliest = earliest ? std::min(*earliest, d) : d; };
    std::set<uint64_t> tokens;
    for (const auto& lock : locks) {
      const auto& s = st[lock];
      holders += s.holders.size();
      waiters += s.waiters.size();
      locks_used += !s.holders.empty() || !s.waiters.empty();
      size_t exclusive = 0;
      for (const auto& h : s.holders) {
        exclusive += h.held == X;
        if (h.token == 0 || h.token > t.last_token() || !tokens.insert(h.token).second)
          return "holder token 0, above last_token or duplicated";
        note(h.expires_at_ms);
      }
      if (exclusive > 1 || (exclusive == 1 && s.holders.size() > 1))
        return "lock " + lock + ": an exclusive holder beside another holder";
      std::set<std::string> queued;
      for (size_t i = 0; i < s.waiters.size(); ++i) {
        const auto& w = s.waiters[i];
        note(w.deadline_ms);
        if (!queued.insert(w.client).second) return "a client queued twice";
        const bool holds = holder_of(lock, w.client).has_value();
        if (w.upgrade && (i != 0 || !holds || w.wanted != X)) return "bad upgrade waiter";
        if (!w.upgrade && holds) return "a client holds and waits for the same lock";
      }
      if (!s.waiters.empty()) {
        const auto& w = s.waiters.front();
        const bool grantable = w.upgrade ? s.holders.size() == 1
                                         : s.holders.empty() || (w.wanted == S && s.holders.front().held == S);
        if (grantable) return "lock " + lock + ": the front waiter could be granted";
      }
    }
    if (t.holder_count() != holders || t.waiter_count() != waiters || t.lock_count() != locks_used)
      return "counts differ from status";
    if (t.next_deadline() != earliest) return "next_deadline is not the earliest deadline";
    if (has_cycle(wait_for_graph(t, locks))) return "a cycle is left in the wait-for graph";

    auto snap = t.snapshot();
    table copy;
    if (!copy.restore(snap) || copy.snapshot() != snap) return "snapshot does not round-trip";
    if (copy.next_deadline() != t.next_deadline() || copy.holder_count() != t.holder_count()
        || copy.waiter_count() != t.waiter_count() || copy.lock_count() != t.lock_count())
      return "restored copy differs";
    return {};
  }

  void run(uint64_t seed, int commands) {
    for (int i = 0; i < commands; ++i) {
      auto c = random_command();
      const auto token_before = t.last_token();
      const auto now_before = t.now_ms();
      std::vector<event> events;
      auto o = t.apply(++index, c, events);
      auto why = check_after(c, o, events, token_before, now_before);
      if (!why.empty()) {
        FAIL_CHECK("seed " << seed << " command " << i << " (" << static_cast<int>(c.kind) << " " << c.lock
                           << " " << c.client << "): " << why);
        return;
      }
      // Now and then carry on from a restored copy (derived indexes are rebuilt).
      if (rng.below(25) == 0) {
        table fresh;
        REQUIRE(fresh.restore(t.snapshot()));
        t = fresh;
      }
    }
  }
};

}  // namespace

TEST_CASE("locks: randomized property test (200 seeds x 500 commands)") {
  uint64_t grants = 0;
  uint64_t deadlocks = 0;
  uint64_t upgrades = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    property_run p(seed);
    p.run(seed, 500);
    grants += p.grants;
    deadlocks += p.deadlocks;
    upgrades += p.upgrades_waiting;
  }
  // The random mix must reach the interesting transitions.
  CHECK(grants > 10000);
  CHECK(deadlocks > 100);
  CHECK(upgrades > 100);
  MESSAGE("grants=" << grants << " deadlocks=" << deadlocks << " upgrade waits=" << upgrades);
}
