// The simulation's checkers must be able to fail (tests/sim/cache/linearizability.hpp
// and check_coherence in cluster.hpp).
#include <doctest/doctest.h>

#include <limits>

#include "tests/sim/cache/cluster.hpp"
#include "tests/sim/cache/linearizability.hpp"

using namespace dsync::cache;
using namespace dsync::cache::testing;

namespace {
history_op op(history_op::kind_t k, uint64_t inv, uint64_t resp, std::optional<std::string> v) {
  history_op h;
  h.kind = k;
  h.invoked = inv;
  h.responded = resp;
  h.val = std::move(v);
  h.label = "op";
  return h;
}
constexpr uint64_t pending = std::numeric_limits<uint64_t>::max();
}  // namespace

TEST_CASE("the linearizability checker accepts register histories and refuses broken ones") {
  const auto R = history_op::read, W = history_op::write, E = history_op::erase, X = history_op::revert;
  CHECK(check_linearizable({}).ok);
  CHECK(check_linearizable({op(W, 1, 4, "a"), op(R, 2, 3, "a")}).ok);
  CHECK(check_linearizable({op(W, 1, 4, "a"), op(R, 2, 3, std::nullopt)}).ok);
  CHECK(check_linearizable({op(W, 1, pending, "a"), op(R, 2, 3, "a"), op(R, 4, 5, "a")}).ok);
  CHECK_FALSE(check_linearizable({op(W, 1, pending, "a"), op(R, 2, 3, "a"), op(R, 4, 5, std::nullopt)}).ok);
  CHECK_FALSE(check_linearizable({op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(R, 5, 6, "a")}).ok);
  CHECK_FALSE(check_linearizable({op(W, 1, 2, "a"), op(E, 3, 4, {}), op(R, 5, 6, "a")}).ok);
  // A revert may bring back one older value, once.
  CHECK(check_linearizable({op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(X, 5, pending, {}), op(R, 6, 7, "a")}).ok);
  CHECK_FALSE(check_linearizable({op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(X, 5, pending, {}), op(R, 6, 7, "a"),
                                  op(R, 8, 9, "b")}).ok);
  auto r = check_linearizable({op(W, 1, 2, "a"), op(R, 3, 4, "z")});
  CHECK_FALSE(r.ok);
  CHECK(r.why.find("not linearizable") != std::string::npos);
}

TEST_CASE("the coherence checker sees two writers (nodes that disagree about the home)") {
  cluster::options o;
  o.proto = protocol::mesi;
  o.nodes = {"a", "b"};
  membership m;
  m.epoch = 1;
  m.members = {"a", "b"};
  m.home = [](std::string_view) { return std::string("a"); };
  cluster c(o, m);
  c.start_all();
  c.run_to_quiet();
  c.submit("a", {1, op_kind::put, "k", "v1"});
  c.run_to_quiet();
  CHECK(check_coherence(c, "k").empty());
  // Give b alone an epoch in which it is the home: it grants itself the line too.
  membership bad = m;
  bad.epoch = 2;
  bad.home = [](std::string_view) { return std::string("b"); };
  c.define_epoch(bad);
  c.give_epoch({"b", false}, 2);
  c.give_epoch({"b", true}, 2);
  message f;  // b's directory hears a Flushed(2) from everyone (the broken setup lies)
  f.kind = msg_kind::flushed;
  f.epoch = 2;
  for (const char* n : {"a", "b"})
    for (bool d : {false, true}) {
      f.from_directory = d;
      c.at("b").dir->on_message(n, f);
    }
  c.submit("b", {2, op_kind::put, "k", "v1"});
  c.run_to_quiet();
  CHECK(c.at("a").ctl->state("k") == cache_state::M);
  CHECK(c.at("b").ctl->state("k") == cache_state::M);
  CHECK(check_coherence(c, "k").find("SWMR") != std::string::npos);
  c.submit("b", {3, op_kind::put, "k", "v2"});
  CHECK(check_coherence(c, "k").find("different values") != std::string::npos);
}
