// Log compaction and InstallSnapshot: Raft paper §7, dissertation §5
// (snapshot sent in chunks with offset and done flag, §5.1 / Figure 5.3).
#include <doctest/doctest.h>

#include "tests/unit/raft/harness.hpp"

using namespace dsync::raft;
using namespace dsync::raft::test;

namespace {

const std::string snapshot_bytes = "0123456789abcdefghijABCDEFGHIJ!@#$%"; // 35 bytes

auto small_chunks = [](config& c) { c.snapshot_chunk_bytes = 10; };

std::vector<message> chunks_to(const peer& p, const node_id& to) {
  std::vector<message> out;
  for (const auto& m : p.sent)
    if (m.type == message_type::install_snapshot && m.to == to)
      out.push_back(m);
  return out;
}

// n1 leads; n3 misses entries 2..6, which the leader then compacts away.
void leave_n3_behind(network& net) {
  net.elect("n1");
  net.isolate("n3");
  for (int i = 0; i < 5; ++i)
    net["n1"].propose("e" + std::to_string(i));
  net.stabilize();
  REQUIRE(net["n1"].applied_index() == 6);
  REQUIRE(net["n1"].compact(6, snapshot_bytes).ok());
  net.stabilize();
  REQUIRE(net["n1"].log().first_index() == 7);
}

} // namespace

TEST_CASE("§7: compact() hands a snapshot with term and configuration to persist, and the log prefix goes") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  for (int i = 0; i < 3; ++i)
    net["n1"].propose("x");
  net.stabilize();
  auto r = net["n1"].compact(4, "state@4");
  REQUIRE(r.ok());
  auto rd = net.process("n1");
  REQUIRE(rd.has_compaction);
  CHECK_FALSE(rd.has_snapshot); // nothing for the state machine to restore
  CHECK(rd.must_sync);
  CHECK(rd.compaction.metadata.index == 4);
  CHECK(rd.compaction.metadata.term == 1);
  CHECK(rd.compaction.metadata.config == voters({"n1", "n2", "n3"}));
  CHECK(rd.compaction.data == "state@4");
  CHECK(net.at("n1").store->first_index() == 5);
  CHECK(net["n1"].log().first_index() == 5);
  CHECK(net["n1"].log().term(4) == 1u);
  CHECK_FALSE(net["n1"].log().term(3).has_value());
}

TEST_CASE("§7: compaction is refused beyond the applied index or at/below the current snapshot") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("x");
  net.stabilize();
  CHECK(net["n1"].compact(3, "s").code == errc::invalid_compaction); // not applied
  CHECK(net["n1"].compact(0, "s").code == errc::invalid_compaction);
  CHECK(net["n1"].compact(2, "s").ok());
  net.stabilize();
  CHECK(net["n1"].compact(2, "s").code == errc::invalid_compaction); // already there
  CHECK(net["n1"].compact(1, "s").code == errc::invalid_compaction);
}

TEST_CASE("§7 / dissertation §5.1: a lagging follower gets the snapshot in chunks, then replication resumes") {
  network net({"n1", "n2", "n3"}, small_chunks);
  leave_n3_behind(net);
  net.heal();
  net.tick_all(3);
  auto chunks = chunks_to(net.at("n1"), "n3");
  REQUIRE(chunks.size() == 4);
  for (size_t i = 0; i < chunks.size(); ++i) {
    CHECK(chunks[i].snapshot_offset == 10 * i);
    CHECK(chunks[i].snapshot.index == 6);
    CHECK(chunks[i].snapshot_chunk.size() == (i < 3 ? 10u : 5u));
    CHECK(chunks[i].snapshot_done == (i == 3));
  }
  CHECK(net.at("n3").restored_snapshot == snapshot_bytes);
  CHECK(net["n3"].commit_index() == 6);
  CHECK(net.at("n3").store->first_index() == 7);
  // The configuration travels with the snapshot.
  CHECK(net["n3"].current_config() == voters({"n1", "n2", "n3"}));
  // Replication continues after the snapshot.
  CHECK(net["n1"].progress_of("n3")->state() == progress_state::replicate);
  net["n1"].propose("after");
  net.stabilize();
  CHECK(applied_data(net.at("n3")) == std::vector<std::string>{"after"});
  CHECK(net["n3"].log().last_index() == 7);
}

TEST_CASE("dissertation §5.1: a lost chunk is resent after a silence, from the follower's offset") {
  network net({"n1", "n2", "n3"}, small_chunks);
  leave_n3_behind(net);
  bool dropped = false;
  net.set_drop([&](const message& m) {
    if (m.type == message_type::install_snapshot && m.snapshot_offset == 10 && !dropped) {
      dropped = true;
      return true;
    }
    return false;
  });
  net.heal();
  net.tick_all(6);
  CHECK(dropped);
  CHECK(net.at("n3").restored_snapshot == snapshot_bytes);
  size_t from_zero = 0;
  for (const auto& m : chunks_to(net.at("n1"), "n3"))
    from_zero += m.snapshot_offset == 0 ? 1 : 0;
  CHECK(from_zero == 1); // resumed at offset 10, not restarted
}

TEST_CASE("dissertation §5.1: a follower that restarts mid-transfer makes the leader start over") {
  network net({"n1", "n2", "n3"}, small_chunks);
  leave_n3_behind(net);
  bool dropped = false;
  net.set_drop([&](const message& m) {
    if (m.type == message_type::install_snapshot && m.snapshot_offset == 20 && !dropped) {
      dropped = true;
      return true;
    }
    return false;
  });
  net.heal();
  net.tick_all(1);
  REQUIRE(dropped);
  net.restart("n3"); // the partial snapshot was only in memory
  net.tick_all(8);
  CHECK(net.at("n3").restored_snapshot == snapshot_bytes);
  size_t from_zero = 0;
  for (const auto& m : chunks_to(net.at("n1"), "n3"))
    from_zero += m.snapshot_offset == 0 ? 1 : 0;
  CHECK(from_zero == 2);
  // Its restart from storage then keeps the installed snapshot.
  net.restart("n3");
  CHECK(net["n3"].commit_index() == 6);
  CHECK(net["n3"].current_config() == voters({"n1", "n2", "n3"}));
  CHECK(net.at("n3").restored_snapshot == snapshot_bytes);
}

TEST_CASE("§7: a snapshot the follower already covers is acknowledged without installing it") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  net["n1"].propose("x");
  net.stabilize();
  auto m = msg(message_type::install_snapshot, "n1", "n2", 1);
  m.snapshot.index = 2;
  m.snapshot.term = 1;
  m.snapshot_done = true;
  m.snapshot_chunk = "whatever";
  net["n2"].step(m);
  auto rd = net["n2"].ready();
  CHECK_FALSE(rd.has_snapshot);
  REQUIRE(rd.messages_after_append.size() == 1);
  CHECK(rd.messages_after_append[0].type == message_type::append_entries_response);
  CHECK(rd.messages_after_append[0].index == 2);
  net["n2"].advance(rd);
}

TEST_CASE("§7: a node restarts from its compacted storage with the right commit and configuration") {
  network net({"n1", "n2", "n3"});
  net.elect("n1");
  for (int i = 0; i < 4; ++i)
    net["n1"].propose("x");
  net.stabilize();
  REQUIRE(net["n2"].compact(3, "s3").ok());
  net.stabilize();
  net.restart("n2");
  CHECK(net["n2"].log().first_index() == 4);
  CHECK(net["n2"].commit_index() == 5);
  CHECK(net["n2"].applied_index() == 3);
  CHECK(net["n2"].current_config() == voters({"n1", "n2", "n3"}));
  // It re-applies the committed entries after its snapshot.
  net.stabilize();
  CHECK(applied_data(net.at("n2")) == std::vector<std::string>{"x", "x"});
  // And it can lead.
  net.isolate("n1");
  net.tick_all(40);
  net.heal();
  net.tick_all(5);
  bool someone_leads = net["n2"].state() == role::leader || net["n3"].state() == role::leader;
  CHECK(someone_leads);
}
