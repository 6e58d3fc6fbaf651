// A node's lease on its part in the cache (protocols/cache/lease.hpp): a pause ends it, the
// node's old incarnation is fenced off, and the new one starts only in a newer epoch once
// every peer forgot the old one. Also Rejoin's wire format and a directory's refusal.
#include "protocols/cache/lease.hpp"

#include <doctest/doctest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocols/cache/directory.hpp"

using namespace dsync::cache;

namespace {

using verdict = membership_lease::verdict;

membership_lease make(uint64_t now = 1000) { return membership_lease({"n1", 1400, 200, 100}, now); }

// The Ack of `l`'s current fence from a peer that knows epoch `current`.
rejoin_message ack(const membership_lease& l, uint64_t current) {
  return membership_lease::ack_for(l.rejoin(), current);
}

message msg(msg_kind k, uint64_t epoch, std::string key = "k") {
  message m;
  m.kind = k;
  m.epoch = epoch;
  m.key = k == msg_kind::flushed ? "" : std::move(key);
  m.txn = k == msg_kind::flushed ? 0 : 9;
  return m;
}

const std::vector<std::string> members{"n1", "n2", "n3"};
const std::set<std::string> nobody_down;

}  // namespace

TEST_CASE("lease: Rejoin and Rejoin-Ack round trip; anything else is refused") {
  for (bool ack : {false, true}) {
    rejoin_message out;
    REQUIRE(decode_rejoin(encode_rejoin({ack, 42, 1700000000123ull, 45}), out));
    CHECK(out.ack == ack);
    CHECK(out.epoch == 42);
    CHECK(out.incarnation == 1700000000123ull);
    CHECK(out.current == 45);
  }
  rejoin_message out;
  auto bytes = encode_rejoin({false, 7, 8, 0});
  CHECK(bytes.size() == 25);
  CHECK_FALSE(decode_rejoin(bytes.substr(0, 24), out));
  CHECK_FALSE(decode_rejoin(bytes + "x", out));
  CHECK_FALSE(decode_rejoin("", out));
  bytes[0] = 'X';
  CHECK_FALSE(decode_rejoin(bytes, out));
  // A coherence message is not a Rejoin, and a Rejoin is not a coherence message.
  CHECK_FALSE(decode_rejoin(encode(msg(msg_kind::flushed, 7)), out));
  message m;
  CHECK_FALSE(decode(encode_rejoin({false, 7, 8, 0}), m));
}

TEST_CASE("lease: config is validated") {
  CHECK_THROWS_AS(membership_lease(membership_lease::config{"", 1400, 0}), std::invalid_argument);
  CHECK_THROWS_AS(membership_lease(membership_lease::config{"n1", 0, 0}), std::invalid_argument);
}

TEST_CASE("lease: a gap of freeze_limit_ms between two inputs ends it") {
  auto l = make(1000);
  CHECK_FALSE(l.on_input(1000 + 1399));
  CHECK_FALSE(l.on_input(2399 + 1399));  // measured from the previous input, not the first
  CHECK(l.on_input(3798 + 1400));
  CHECK_FALSE(l.on_input(5198));
  CHECK_FALSE(l.on_input(100));  // a clock that went back is no gap, and is not remembered
  CHECK(l.on_input(5198 + 1400));
}

TEST_CASE("lease: while fenced, messages of the old epochs are refused or dropped, newer ones held after the Ack") {
  auto l = make();
  CHECK(l.screen("n2", msg(msg_kind::get_s, 3)) == verdict::deliver);
  l.fence(3, 2000);
  REQUIRE(l.fenced());
  CHECK(l.fenced_epoch() == 3);
  // The old incarnation's epochs, before the peer forgot it: nothing needs an answer.
  CHECK(l.screen("n2", msg(msg_kind::get_s, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::put_m, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::unblock, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::recall_ack, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::inv, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::flushed, 3)) == verdict::drop);
  // Newer epochs before the peer's Ack: sent before it forgot the old incarnation. Only a
  // Flushed stays true.
  CHECK(l.screen("n2", msg(msg_kind::get_s, 4)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::data, 4)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::flushed, 4)) == verdict::hold);
  auto stale = ack(l, 3);
  --stale.incarnation;  // the Ack of an older fence does not count
  l.on_ack("n2", stale);
  CHECK_FALSE(l.acked("n2"));
  l.on_ack("n2", ack(l, 3));
  CHECK(l.acked("n2"));
  CHECK(l.screen("n2", msg(msg_kind::get_s, 4)) == verdict::hold);
  // After it: requests of the old epochs are refused as a closed epoch, the rest dropped.
  CHECK(l.screen("n2", msg(msg_kind::get_s, 3)) == verdict::refuse);
  CHECK(l.screen("n2", msg(msg_kind::get_m, 2)) == verdict::refuse);
  CHECK(l.screen("n2", msg(msg_kind::del, 3)) == verdict::refuse);
  CHECK(l.screen("n2", msg(msg_kind::put_m, 3)) == verdict::refuse);
  CHECK(l.screen("n2", msg(msg_kind::unblock, 3)) == verdict::drop);
  CHECK(l.screen("n2", msg(msg_kind::flushed, 3)) == verdict::drop);
  CHECK(l.screen("n3", msg(msg_kind::get_s, 4)) == verdict::drop);
}

TEST_CASE("lease: the rejoin waits for a newer epoch, every member's and linked peer's Ack, and the settling") {
  auto l = make();
  CHECK_FALSE(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 5000));  // not fenced
  l.fence(3, 2000);
  CHECK(l.rejoin().epoch == 3);
  CHECK(l.rejoin().incarnation == 101);
  l.on_ack("n2", ack(l, 3));
  l.on_ack("n3", ack(l, 3));
  CHECK_FALSE(l.may_rejoin(3, members, {"n2", "n3"}, nobody_down, 5000));  // never in its old epoch
  CHECK_FALSE(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 2199));  // still settling
  CHECK(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 2200));
  // A member it thinks down holds it back, whatever it acknowledged.
  CHECK_FALSE(l.may_rejoin(4, members, {"n2"}, {"n3"}, 2200));
  CHECK(l.waiting_for(members, {"n2"}, {"n3"}) == std::vector<std::string>{"n3"});
  // A linked peer that is no member must have acknowledged too...
  CHECK_FALSE(l.may_rejoin(4, members, {"n2", "n3", "n4"}, nobody_down, 2200));
  CHECK(l.waiting_for(members, {"n2", "n3", "n4"}, nobody_down) == std::vector<std::string>{"n4"});
  l.on_ack("n4", ack(l, 3));
  CHECK(l.may_rejoin(4, members, {"n2", "n3", "n4"}, nobody_down, 2200));
  // ...but once it has, its being down does not hold the rejoin back: only members' do.
  CHECK(l.may_rejoin(4, members, {"n2", "n3", "n4"}, {"n4"}, 2200));
  CHECK(l.waiting_for(members, {"n2", "n3", "n4"}, {"n4"}).empty());
  // A member that never acknowledged.
  CHECK_FALSE(l.may_rejoin(5, {"n1", "n2", "n3", "n5"}, {"n2", "n3"}, nobody_down, 2200));
  CHECK(l.waiting_for({"n1", "n2", "n3", "n5"}, {"n2", "n3"}, nobody_down) == std::vector<std::string>{"n5"});
  // Another pause while rejoining: a new incarnation ends, whose Rejoin needs new Acks.
  l.fence(4, 3000);
  CHECK(l.fenced_epoch() == 3);
  CHECK(l.rejoin().incarnation == 102);
  CHECK_FALSE(l.acked("n2"));
  CHECK(l.screen("n2", msg(msg_kind::get_s, 4)) == verdict::drop);
  l.on_ack("n2", ack(l, 3));
  l.on_ack("n3", ack(l, 3));
  CHECK_FALSE(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 3100));
  CHECK(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 3200));
  l.rejoined();
  CHECK_FALSE(l.fenced());
  CHECK(l.screen("n2", msg(msg_kind::get_s, 3)) == verdict::deliver);
  CHECK(l.waiting_for(members, {"n2", "n3"}, nobody_down).empty());
  // The next fence needs new Acks.
  l.fence(6, 9000);
  CHECK_FALSE(l.acked("n2"));
  CHECK(l.fenced_epoch() == 6);
}

TEST_CASE("lease: never in an epoch older than one a peer acknowledged from") {
  // While the node was stopped the others moved to epoch 5, which left it out: a directory
  // of epoch 4 here would be a second home for its keys.
  auto l = make();
  l.fence(3, 2000);
  l.on_ack("n2", ack(l, 5));
  l.on_ack("n3", ack(l, 4));
  CHECK(l.acked_epoch() == 5);
  CHECK_FALSE(l.may_rejoin(4, members, {"n2", "n3"}, nobody_down, 5000));
  CHECK(l.may_rejoin(5, members, {"n2", "n3"}, nobody_down, 5000));
  CHECK(l.may_rejoin(6, members, {"n2", "n3"}, nobody_down, 5000));
}

TEST_CASE("lease: a peer acts on each Rejoin once, and answers every copy with its epoch") {
  auto l = make();
  CHECK(l.on_rejoin("n2", {false, 3, 500, 0}));
  CHECK_FALSE(l.on_rejoin("n2", {false, 3, 500, 0}));  // a copy (re-sent on every tick)
  CHECK_FALSE(l.on_rejoin("n2", {false, 3, 499, 0}));
  CHECK(l.on_rejoin("n3", {false, 3, 500, 0}));
  CHECK(l.on_rejoin("n2", {false, 3, 501, 0}));  // paused again while rejoining
  CHECK(l.on_rejoin("n2", {false, 7, 900, 0}));  // a later pause
  auto a = membership_lease::ack_for({false, 7, 900, 0}, 8);
  CHECK(a.ack);
  CHECK(a.epoch == 7);
  CHECK(a.incarnation == 900);
  CHECK(a.current == 8);
}

TEST_CASE("directory: the refusal of a message of an epoch it no longer serves") {
  auto nack = refusal(msg(msg_kind::get_m, 3));
  REQUIRE(nack);
  CHECK(nack->kind == msg_kind::nack);
  CHECK(nack->txn == 9);
  CHECK(nack->epoch == 3);
  CHECK(nack->key == "k");
  auto put_ack = refusal(msg(msg_kind::put_o, 2));
  REQUIRE(put_ack);
  CHECK(put_ack->kind == msg_kind::put_ack);
  CHECK(put_ack->txn == 0);
  CHECK(put_ack->epoch == 2);
  for (auto k : {msg_kind::unblock, msg_kind::owner_data, msg_kind::recall_ack, msg_kind::write_through,
                 msg_kind::flushed, msg_kind::data, msg_kind::inv})
    CHECK_FALSE(refusal(msg(k, 3)));
}

// --- read lease (partitions) -------------------------------------------------------------

TEST_CASE("read lease: Probe and Echo round trip; anything else is refused") {
  for (bool echo : {false, true})
    for (bool dead : {false, true}) {
      if (!echo && dead) continue;
      probe_message out;
      REQUIRE(decode_probe(encode_probe({echo, dead, 123456789, 1700000000123ull}), out));
      CHECK(out.echo == echo);
      CHECK(out.dead == dead);
      CHECK(out.stamp == 123456789);
      CHECK(out.boot == 1700000000123ull);
    }
  probe_message out;
  auto bytes = encode_probe({true, false, 5, 6});
  CHECK(bytes.size() == 18);
  CHECK_FALSE(decode_probe(bytes.substr(0, 17), out));
  CHECK_FALSE(decode_probe(bytes + "x", out));
  CHECK_FALSE(decode_probe("", out));
  auto bad = bytes;
  bad[1] = 2;
  CHECK_FALSE(decode_probe(bad, out));
  auto dead_probe = encode_probe({false, false, 5, 6});
  dead_probe[1] = 1;  // a Probe is never "dead"
  CHECK_FALSE(decode_probe(dead_probe, out));
  // Not a coherence message nor a Rejoin, and neither of those is a Probe.
  message m;
  rejoin_message r;
  CHECK_FALSE(decode(bytes, m));
  CHECK_FALSE(decode_rejoin(bytes, r));
  CHECK_FALSE(decode_probe(encode(msg(msg_kind::flushed, 7)), out));
  CHECK_FALSE(decode_probe(encode_rejoin({false, 7, 8, 0}), out));
}

TEST_CASE("read lease: reads only while every peer that could declare the node dead answered recently") {
  read_lease l(700);
  const std::vector<std::string> peers{"n2", "n3"};
  CHECK(l.serving_until({}) == UINT64_MAX);  // alone: nobody can declare it dead
  CHECK(l.serving_until(peers) == 0);        // no round trip yet: no reads
  CHECK_FALSE(l.may_serve(peers, 1000));
  l.on_echo("n2", 1000);
  CHECK_FALSE(l.may_serve(peers, 1001));  // n3 never answered
  l.on_echo("n3", 1200);
  CHECK(l.serving_until(peers) == 1700);  // the oldest round trip bounds it
  CHECK(l.may_serve(peers, 1699));
  CHECK_FALSE(l.may_serve(peers, 1700));
  // A late Echo of an older Probe moves nothing back; a newer one moves it on.
  l.on_echo("n2", 900);
  CHECK(l.last_round_trip("n2") == 1000);
  l.on_echo("n2", 1500);
  CHECK(l.serving_until(peers) == 1900);
  // A peer cut off (no Echo any more, whatever this node still receives from it): the
  // lease runs out read_limit_ms after the last Probe it answered, however long the node
  // keeps running.
  l.on_echo("n3", 1900);
  CHECK(l.may_serve(peers, 2199));
  CHECK_FALSE(l.may_serve(peers, 2200));
  CHECK_FALSE(l.may_serve(peers, 100000));
  // Without that peer among those that matter (an epoch without it), reads come back.
  CHECK(l.may_serve({"n3"}, 2500));
  // A fence forgets every round trip.
  l.forget_all();
  CHECK_FALSE(l.may_serve({"n3"}, 2500));
}

TEST_CASE("read lease: a peer answers Echo(dead) to the boot it declared dead until that node rejoins") {
  read_lease peer(700);
  probe_message p{false, false, 50, 111};
  auto e = peer.answer("n1", p);
  CHECK(e.echo);
  CHECK_FALSE(e.dead);
  CHECK(e.stamp == 50);
  CHECK(e.boot == 111);
  peer.declared_dead("n1");
  CHECK(peer.answer("n1", {false, false, 60, 111}).dead);
  // A restarted n1 (a newer boot) is another process: it was never declared dead.
  CHECK_FALSE(peer.answer("n1", {false, false, 70, 222}).dead);
  // Its Rejoin clears the mark.
  peer.declared_dead("n1");
  CHECK(peer.answer("n1", {false, false, 80, 222}).dead);
  peer.rejoined("n1");
  CHECK_FALSE(peer.answer("n1", {false, false, 90, 222}).dead);
  // Declared dead before any Probe from it: every boot it may have had counts as dead.
  peer.declared_dead("n4");
  CHECK(peer.answer("n4", {false, false, 1, 5}).dead);
  CHECK(peer.thinks_dead("n4", 999999));
  // A fence of the peer itself forgets its declarations (its components are gone).
  peer.forget_all();
  CHECK_FALSE(peer.answer("n4", {false, false, 2, 5}).dead);
}
