// How often the protocols touch memory (Redis): write-back vs write-through, and MESI vs
// the owned-state protocols (MOSI, MOESI), whose O state lets a dirty line be shared
// without writing it back.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "protocols/raft/rng.hpp"
#include "tests/sim/cache/cluster.hpp"

using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {

struct counts {
  uint64_t reads = 0, writes = 0;  // writes include erases
};

class bench {
 public:
  bench(protocol p, write_policy w, size_t capacity = 4, std::vector<std::string> nodes = {"a", "b", "c"})
      : c_(options(p, w, capacity, nodes), first(nodes)) {
    c_.start_all();
    c_.run_to_quiet();
  }
  completion op(const std::string& node, op_kind k, const std::string& key, const std::string& v = {}) {
    const size_t before = c_.completions().size();
    c_.submit(node, client_op{++id_, k, key, v});
    c_.run_to_quiet();
    REQUIRE(c_.completions().size() == before + 1);
    return c_.completions().back().second;
  }
  counts memory() const { return {c_.memory_reads(), c_.memory_writes() + c_.memory_erases()}; }
  cluster& c() { return c_; }

 private:
  static cluster::options options(protocol p, write_policy w, size_t capacity, std::vector<std::string> nodes) {
    cluster::options o;
    o.proto = p;
    o.policy = w;
    o.capacity = capacity;
    o.nodes = std::move(nodes);
    return o;
  }
  static membership first(const std::vector<std::string>& nodes) {
    membership m;
    m.epoch = 1;
    m.members = nodes;
    m.home = [home = nodes.back()](std::string_view) { return home; };
    return m;
  }
  cluster c_;
  uint64_t id_ = 0;
};

// One writer, one reader, taking turns: the pattern where O pays off.
counts ping_pong(protocol p, write_policy w, int rounds) {
  bench b(p, w);
  for (int i = 1; i <= rounds; ++i) {
    CHECK(b.op("a", op_kind::put, "x", "v" + std::to_string(i)).result == status::ok);
    CHECK(b.op("b", op_kind::get, "x").val == "v" + std::to_string(i));
  }
  return b.memory();
}

// A seeded mix of gets (60%) and puts over three nodes and two keys, one at a time.
counts mix(protocol p, uint64_t seed, int ops) {
  bench b(p, write_policy::write_back);
  dsync::raft::rng r(seed);
  std::string last[2] = {"", ""};
  for (int i = 0; i < ops; ++i) {
    const std::string node(1, static_cast<char>('a' + r.below(3)));
    const int k = static_cast<int>(r.below(2));
    const std::string key = k ? "y" : "x";
    if (r.chance(3, 5)) {
      auto c = b.op(node, op_kind::get, key);
      if (last[k].empty()) CHECK(c.result == status::not_found);
      else CHECK(c.val == last[k]);
    } else {
      last[k] = "v" + std::to_string(i);
      b.op(node, op_kind::put, key, last[k]);
    }
  }
  return b.memory();
}

}  // namespace

TEST_CASE("write-back writes memory on eviction and invalidation, write-through on every put") {
  for (auto p : {protocol::mesi, protocol::mosi, protocol::moesi}) {
    CAPTURE(to_string(p));
    bench wb(p, write_policy::write_back, 1);
    bench wt(p, write_policy::write_through, 1);
    for (bench* b : {&wb, &wt})
      for (const char* v : {"v1", "v2", "v3"}) CHECK(b->op("a", op_kind::put, "x", v).state == cache_state::M);
    CHECK(wb.memory().writes == 0);  // all three puts hit the dirty M line
    CHECK(wt.memory().writes == 3);  // each put reached memory before it completed
    CHECK(wb.c().memory_value("x") == std::nullopt);
    CHECK(wt.c().memory_value("x") == "v3");
    for (bench* b : {&wb, &wt}) b->op("a", op_kind::get, "y");  // capacity 1: x is evicted
    CHECK(wb.memory().writes == 1);  // the dirty line written back by PutM
    CHECK(wt.memory().writes == 3);  // clean: the eviction writes nothing
    CHECK(wb.c().memory_value("x") == "v3");
    for (bench* b : {&wb, &wt}) {
      b->op("a", op_kind::put, "x", "v4");
      b->op("a", op_kind::invalidate, "x");
    }
    CHECK(wb.memory().writes == 2);  // invalidate wrote the dirty data back
    CHECK(wt.memory().writes == 4);
    CHECK(wb.c().memory_value("x") == "v4");
    CHECK(wt.c().memory_value("x") == "v4");
  }
}

TEST_CASE("MOSI and MOESI share a dirty line without writing it back; MESI writes it on every downgrade") {
  const int rounds = 10;
  const counts mesi = ping_pong(protocol::mesi, write_policy::write_back, rounds);
  const counts mosi = ping_pong(protocol::mosi, write_policy::write_back, rounds);
  const counts moesi = ping_pong(protocol::moesi, write_policy::write_back, rounds);
  MESSAGE("writer/reader ping-pong, " << rounds << " rounds, write-back: memory writes MESI " << mesi.writes
                                      << ", MOSI " << mosi.writes << ", MOESI " << moesi.writes << "; reads MESI "
                                      << mesi.reads << ", MOSI " << mosi.reads << ", MOESI " << moesi.reads);
  CHECK(mesi.writes == rounds);  // M -> S (OwnerData) after each put
  CHECK(mosi.writes == 0);       // M -> O: the owner keeps the dirty data
  CHECK(moesi.writes == 0);
  CHECK(mosi.writes < mesi.writes);
  CHECK(moesi.writes < mesi.writes);
  CHECK(moesi.reads < mesi.reads);  // the O owner upgrades with AckCount, no memory read

  // With write-through every put is one write whatever the protocol.
  CHECK(ping_pong(protocol::mesi, write_policy::write_through, rounds).writes == rounds);
  CHECK(ping_pong(protocol::moesi, write_policy::write_through, rounds).writes == rounds);
}

TEST_CASE("a random read-write mix: fewer memory writes with an O state, same answers") {
  const counts mesi = mix(protocol::mesi, 7, 300);
  const counts mosi = mix(protocol::mosi, 7, 300);
  const counts moesi = mix(protocol::moesi, 7, 300);
  MESSAGE("seeded mix of 300 ops (60% gets, 3 nodes, 2 keys): memory writes MESI " << mesi.writes << ", MOSI "
                                                                                    << mosi.writes << ", MOESI "
                                                                                    << moesi.writes);
  CHECK(mosi.writes < mesi.writes);
  CHECK(moesi.writes < mesi.writes);
}
