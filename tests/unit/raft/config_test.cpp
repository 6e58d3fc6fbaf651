// config::validate(), in the manner of etcd's Config.validate().
#include <doctest/doctest.h>

#include <stdexcept>

#include "protocols/raft/core.hpp"

using namespace dsync::raft;

namespace {

config valid() {
  config c;
  c.id = "node-1";
  return c;
}

} // namespace

TEST_CASE("config: the defaults with an id are valid") {
  CHECK(valid().validate().empty());
  auto c = valid();
  CHECK(c.election_ticks == 10);
  CHECK(c.heartbeat_ticks == 1);
  CHECK(c.pre_vote);
  CHECK(c.check_quorum);
}

TEST_CASE("config: each invalid setting is named in the error") {
  struct bad_case {
    const char* name;
    void (*mutate)(config&);
  };
  bad_case cases[] = {
    {"id", [](config& c) { c.id.clear(); }},
    {"heartbeat_ticks", [](config& c) { c.heartbeat_ticks = 0; }},
    {"election_ticks", [](config& c) { c.election_ticks = 1; }},
    {"election_ticks", [](config& c) { c.election_ticks = c.heartbeat_ticks; }},
    {"max_inflight_msgs", [](config& c) { c.max_inflight_msgs = 0; }},
    {"max_inflight_bytes", [](config& c) { c.max_inflight_bytes = 0; }},
    {"max_msg_bytes", [](config& c) { c.max_msg_bytes = 0; }},
    {"max_entries_per_msg", [](config& c) { c.max_entries_per_msg = 0; }},
    {"max_uncommitted_entries", [](config& c) { c.max_uncommitted_entries = 0; }},
    {"max_uncommitted_entries", [](config& c) { c.max_uncommitted_entries = 1; }},
    {"max_uncommitted_bytes", [](config& c) { c.max_uncommitted_bytes = 0; }},
    {"max_entry_bytes", [](config& c) { c.max_entry_bytes = 0; }},
    {"max_entry_bytes", [](config& c) { c.max_entry_bytes = c.max_uncommitted_bytes + 1; }},
    {"max_apply_bytes_per_ready", [](config& c) { c.max_apply_bytes_per_ready = 0; }},
    {"snapshot_chunk_bytes", [](config& c) { c.snapshot_chunk_bytes = 0; }},
    {"max_snapshot_bytes", [](config& c) { c.max_snapshot_bytes = 0; }},
    {"max_pending_reads", [](config& c) { c.max_pending_reads = 0; }},
  };
  for (const auto& bc : cases) {
    CAPTURE(bc.name);
    auto c = valid();
    bc.mutate(c);
    auto err = c.validate();
    CHECK_FALSE(err.empty());
    CHECK(err.find(bc.name) != std::string::npos);
  }
}

TEST_CASE("config: the core refuses to start with an invalid config or inconsistent storage") {
  memory_storage store(configuration{{"node-1"}, {}});
  auto c = valid();
  c.election_ticks = 1;
  CHECK_THROWS_AS(core(c, store), std::invalid_argument);

  auto ok = valid();
  ok.applied_index = 5; // beyond anything committed
  CHECK_THROWS_AS(core(ok, store), std::invalid_argument);

  memory_storage broken(configuration{{"node-1"}, {}});
  broken.set_hard_state(hard_state{1, "", 3}); // commit beyond the log
  CHECK_THROWS_AS(core(valid(), broken), std::invalid_argument);
}
