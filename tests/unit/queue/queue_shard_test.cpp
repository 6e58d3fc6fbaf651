// The queue shard state machine (protocols/queue/queue_shard.hpp), transition by
// transition, then a seeded randomized property test over many command sequences.
#include "protocols/queue/queue_shard.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocols/raft/rng.hpp"

using namespace dsync::queue;

namespace {

constexpr uint64_t shard_no = 7;

command enqueue_cmd(const std::string& q, const std::string& payload) {
  command c;
  c.kind = op::enqueue;
  c.queue = q;
  c.payload = payload;
  return c;
}
command dequeue_cmd(const std::string& q, uint64_t max, uint64_t visibility_ms, const std::string& consumer = "c1") {
  command c;
  c.kind = op::dequeue;
  c.queue = q;
  c.max = max;
  c.visibility_ms = visibility_ms;
  c.consumer = consumer;
  return c;
}
command ack_cmd(const std::string& q, const std::string& id, uint64_t receipt = 0) {
  command c;
  c.kind = op::ack;
  c.queue = q;
  c.id = id;
  c.receipt = receipt;
  return c;
}
command nack_cmd(const std::string& q, const std::string& id, uint64_t receipt = 0, uint64_t delay_ms = 0) {
  command c;
  c.kind = op::nack;
  c.queue = q;
  c.id = id;
  c.receipt = receipt;
  c.delay_ms = delay_ms;
  return c;
}
command expire_cmd() {
  command c;
  c.kind = op::expire;
  return c;
}
command queue_cmd(op kind, const std::string& q, uint64_t max = 0) {
  command c;
  c.kind = kind;
  c.queue = q;
  c.max = max;
  return c;
}
command configure_cmd(const std::string& q, uint64_t max_deliveries) {
  command c;
  c.kind = op::configure;
  c.queue = q;
  c.max_deliveries = max_deliveries;
  return c;
}

// One shard fed with increasing log indexes, at a settable leader time.
struct harness {
  shard s;
  uint64_t index = 0;
  uint64_t now = 1000;
  std::vector<event> events;

  explicit harness(shard_limits limits = {}) : s(shard_no, limits) {}

  outcome run(command c) {
    c.now_ms = now;
    events.clear();
    return s.apply(++index, c, events);
  }
  std::string enqueue(const std::string& q, const std::string& payload) {
    auto o = run(enqueue_cmd(q, payload));
    REQUIRE(o.result == code::ok);
    return o.id;
  }
  std::vector<delivery> dequeue(const std::string& q, uint64_t max, uint64_t visibility_ms,
                                const std::string& consumer = "c1") {
    auto o = run(dequeue_cmd(q, max, visibility_ms, consumer));
    REQUIRE(o.result == code::ok);
    return o.messages;
  }
  outcome expire() { return run(expire_cmd()); }
  state where(const std::string& q, const std::string& id) const {
    auto m = s.find(q, id);
    REQUIRE(m.has_value());
    return m->where;
  }
};

std::vector<std::string> ids_of(const std::vector<delivery>& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) out.push_back(d.id);
  return out;
}

}  // namespace

// --- ids -----------------------------------------------------------------------------------

TEST_CASE("queue ids: <shard>-<index>, parsed strictly") {
  CHECK(format_id(7, 1042) == "7-1042");
  CHECK(format_id(0, 1) == "0-1");
  uint64_t s = 0, i = 0;
  CHECK(parse_id("7-1042", s, i));
  CHECK(s == 7);
  CHECK(i == 1042);
  CHECK(parse_id("18446744073709551615-18446744073709551615", s, i));
  CHECK(i == 18446744073709551615ull);
  for (const char* bad : {"", "7", "7-", "-1", "07-1", "7-01", "7-0", "a-1", "7-1a", "7-1-2", " 7-1", "7--1",
                          "18446744073709551616-1", "1-18446744073709551616", "+7-1"})
    CHECK_MESSAGE(!parse_id(bad, s, i), bad);
}

TEST_CASE("queue ids: built from the shard id and the enqueue's log index, unique across queues and stable") {
  harness h;
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    const std::string q = i % 2 ? "odd" : "even";
    const uint64_t expected_index = h.index + 1;
    const auto id = h.enqueue(q, "p" + std::to_string(i));
    CHECK(id == "7-" + std::to_string(expected_index));
    CHECK(seen.insert(id).second);
  }
  // A refused or deleted enqueue never frees an id for reuse: ids follow the log index.
  CHECK(h.run(enqueue_cmd("bad name!", "x")).result == code::bad_request);
  const uint64_t after_refusal = h.index + 1;
  const auto next = h.enqueue("even", "after a refusal");
  CHECK(next == "7-" + std::to_string(after_refusal));
  CHECK(seen.insert(next).second);
  h.run(queue_cmd(op::delete_queue, "odd"));
  const auto id = h.enqueue("odd", "again");
  CHECK(seen.count(id) == 0);
  // Stable across snapshot/restore.
  shard copy(shard_no);
  REQUIRE(copy.restore(h.s.snapshot()));
  CHECK(copy.find("odd", id)->payload == "again");
  // Another shard never answers for this shard's ids.
  shard other(8);
  CHECK_FALSE(other.restore(h.s.snapshot()));
}

// --- enqueue / dequeue ---------------------------------------------------------------------

TEST_CASE("queue enqueue: creates the queue, makes the message ready, emits ready") {
  harness h;
  CHECK_FALSE(h.s.stats("jobs").exists);
  const auto id = h.enqueue("jobs", R"({"n":1})");
  CHECK(id == "7-1");
  auto st = h.s.stats("jobs");
  CHECK(st.exists);
  CHECK(st.ready == 1);
  CHECK(st.in_flight == 0);
  CHECK(st.dead == 0);
  CHECK(st.max_deliveries == default_max_deliveries);
  CHECK(st.payload_bytes == 7);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::ready, "jobs", {}, 1});
  auto m = h.s.find("jobs", id);
  REQUIRE(m);
  CHECK(m->where == state::ready);
  CHECK(m->deliveries == 0);
  CHECK(m->enqueued_ms == 1000);
  CHECK(m->payload == R"({"n":1})");
  CHECK(h.s.message_count() == 1);
  CHECK(h.s.list_queues() == std::vector<std::string>{"jobs"});
  CHECK_FALSE(h.s.next_deadline());
}

TEST_CASE("queue dequeue: FIFO, up to max, receipts and delivery counts, visibility deadline") {
  harness h;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(h.enqueue("q", "m" + std::to_string(i)));
  const uint64_t first_dequeue = h.index + 1;
  auto got = h.dequeue("q", 2, 500, "alice");
  REQUIRE(got.size() == 2);
  CHECK(got[0] == delivery{ids[0], first_dequeue, "m0", 1});
  CHECK(got[1] == delivery{ids[1], first_dequeue, "m1", 1});
  CHECK(h.events.empty());
  auto m = h.s.find("q", ids[0]);
  CHECK(m->where == state::in_flight);
  CHECK(m->consumer == "alice");
  CHECK(m->receipt == first_dequeue);
  CHECK(m->deadline_ms == 1500);
  CHECK(h.s.next_deadline() == 1500u);
  auto st = h.s.stats("q");
  CHECK(st.ready == 3);
  CHECK(st.in_flight == 2);

  got = h.dequeue("q", 10, 500);
  CHECK(ids_of(got) == std::vector<std::string>{ids[2], ids[3], ids[4]});
  CHECK(h.dequeue("q", 10, 500).empty());  // nothing ready: ok, empty
  st = h.s.stats("q");
  CHECK(st.ready == 0);
  CHECK(st.in_flight == 5);
}

TEST_CASE("queue dequeue: an unknown queue answers empty and is not created") {
  harness h;
  CHECK(h.dequeue("nobody", 5, 100).empty());
  CHECK_FALSE(h.s.stats("nobody").exists);
  CHECK(h.s.queue_count() == 0);
}

TEST_CASE("queue dequeue: a reply stops at max_dequeue_bytes") {
  // So that a reply always has room for one message of the largest size.
  static_assert(max_payload_bytes <= max_dequeue_bytes);
  harness h;
  const std::string big(max_payload_bytes, 'x');
  const size_t fit = max_dequeue_bytes / max_payload_bytes;  // 32
  for (size_t i = 0; i < fit + 3; ++i) h.enqueue("big", big);
  CHECK(h.dequeue("big", max_dequeue, 1000).size() == fit);
  CHECK(h.dequeue("big", max_dequeue, 1000).size() == 3);
}

// --- ack -----------------------------------------------------------------------------------

TEST_CASE("queue ack: deletes an in-flight message, with or without its receipt") {
  harness h;
  const auto a = h.enqueue("q", "a");
  const auto b = h.enqueue("q", "b");
  auto got = h.dequeue("q", 2, 100);
  auto o = h.run(ack_cmd("q", a, got[0].receipt));
  CHECK(o.result == code::ok);
  CHECK_FALSE(h.s.find("q", a));
  o = h.run(ack_cmd("q", b));  // no receipt: the current delivery
  CHECK(o.result == code::ok);
  CHECK(h.s.stats("q").in_flight == 0);
  CHECK(h.s.message_count() == 0);
  CHECK(h.s.payload_bytes() == 0);
  CHECK_FALSE(h.s.next_deadline());
  // Acked messages are gone: acking again is not_found.
  o = h.run(ack_cmd("q", a, got[0].receipt));
  CHECK(o.result == code::not_found);
  CHECK(o.message.find(a) != std::string::npos);
}

TEST_CASE("queue ack: unknown ids, queues and other shards' ids are not_found") {
  harness h;
  const auto a = h.enqueue("q", "a");
  h.dequeue("q", 1, 100);
  CHECK(h.run(ack_cmd("q", "7-999")).result == code::not_found);
  CHECK(h.run(ack_cmd("q", "8-1")).result == code::not_found);  // same index, other shard
  CHECK(h.run(ack_cmd("other", a)).result == code::not_found);
  h.enqueue("other", "x");
  CHECK(h.run(ack_cmd("other", a)).result == code::not_found);  // id of another queue
  CHECK(h.run(nack_cmd("q", "7-999")).result == code::not_found);
  CHECK(h.where("q", a) == state::in_flight);
}

TEST_CASE("queue ack: a lapsed delivery may still be acked until the leader commits the expiry") {
  harness h;
  const auto a = h.enqueue("q", "a");
  auto got = h.dequeue("q", 1, 100);
  h.now += 500;  // past the deadline, no expire applied yet
  CHECK(h.run(ack_cmd("q", a, got[0].receipt)).result == code::ok);
  CHECK_FALSE(h.s.next_deadline());
}

// --- visibility timeout --------------------------------------------------------------------

TEST_CASE("queue expire: a timed-out delivery becomes ready again at its original position") {
  harness h;
  const auto a = h.enqueue("q", "a");
  const auto b = h.enqueue("q", "b");
  auto got = h.dequeue("q", 1, 100);  // a until 1100
  REQUIRE(ids_of(got) == std::vector<std::string>{a});
  h.now = 1099;
  auto o = h.expire();
  CHECK(o.result == code::ok);
  CHECK(o.count == 0);
  CHECK(h.events.empty());
  CHECK(h.where("q", a) == state::in_flight);
  h.now = 1100;
  o = h.expire();
  CHECK(o.count == 1);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[0] == event{event::kind::expired, "q", a, 1});
  CHECK(h.events[1] == event{event::kind::ready, "q", {}, 2});
  CHECK(h.where("q", a) == state::ready);
  CHECK_FALSE(h.s.next_deadline());
  // Redelivered ahead of the younger b, with the delivery count incremented and a new receipt.
  const uint64_t second = h.index + 1;
  got = h.dequeue("q", 2, 100, "bob");
  REQUIRE(got.size() == 2);
  CHECK(got[0] == delivery{a, second, "a", 2});
  CHECK(got[1] == delivery{b, second, "b", 1});
}

TEST_CASE("queue expire: an ack or nack quoting a delivery that timed out and was redelivered is stale_receipt") {
  harness h;
  const auto a = h.enqueue("q", "a");
  const auto first = h.dequeue("q", 1, 100, "alice")[0];
  h.now += 100;
  h.expire();
  const auto second = h.dequeue("q", 1, 100, "bob")[0];
  CHECK(second.id == a);
  CHECK(second.receipt != first.receipt);
  auto o = h.run(ack_cmd("q", a, first.receipt));
  CHECK(o.result == code::stale_receipt);
  CHECK(o.message.find("receipt") != std::string::npos);
  o = h.run(nack_cmd("q", a, first.receipt));
  CHECK(o.result == code::stale_receipt);
  // Bob's delivery is untouched and his ack works.
  auto m = h.s.find("q", a);
  CHECK(m->where == state::in_flight);
  CHECK(m->consumer == "bob");
  CHECK(h.run(ack_cmd("q", a, second.receipt)).result == code::ok);
}

TEST_CASE("queue expire: an ack of a timed-out message not yet redelivered is stale_receipt, with or without receipt") {
  harness h;
  const auto a = h.enqueue("q", "a");
  const auto first = h.dequeue("q", 1, 100)[0];
  h.now += 100;
  h.expire();
  auto o = h.run(ack_cmd("q", a, first.receipt));
  CHECK(o.result == code::stale_receipt);
  CHECK(o.message.find("not in flight") != std::string::npos);
  CHECK(h.run(ack_cmd("q", a)).result == code::stale_receipt);
  CHECK(h.run(nack_cmd("q", a)).result == code::stale_receipt);
  CHECK(h.where("q", a) == state::ready);
  // A never-delivered message cannot be acked either.
  const auto b = h.enqueue("q", "b");
  CHECK(h.run(ack_cmd("q", b)).result == code::stale_receipt);
}

TEST_CASE("queue expire: many deadlines are handled in bounded batches") {
  harness h;
  const size_t n = max_expire_per_command + 5;
  for (size_t i = 0; i < n; ++i) h.enqueue("q", "m");
  for (size_t got = 0; got < n;) got += h.dequeue("q", max_dequeue, 10).size();
  h.now += 10;
  auto o = h.expire();
  CHECK(o.count == max_expire_per_command);
  REQUIRE(h.s.next_deadline());
  CHECK(*h.s.next_deadline() <= h.now);  // the leader proposes again at once
  o = h.expire();
  CHECK(o.count == 5);
  CHECK_FALSE(h.s.next_deadline());
  CHECK(h.s.stats("q").ready == n);
}

// --- nack ----------------------------------------------------------------------------------

TEST_CASE("queue nack: without delay the message is ready at once, keeping its delivery count") {
  harness h;
  const auto a = h.enqueue("q", "a");
  const auto b = h.enqueue("q", "b");
  const auto d = h.dequeue("q", 1, 1000)[0];
  auto o = h.run(nack_cmd("q", a, d.receipt));
  CHECK(o.result == code::ok);
  CHECK_FALSE(o.dead_lettered);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::ready, "q", {}, 2});
  CHECK(h.where("q", a) == state::ready);
  CHECK_FALSE(h.s.next_deadline());
  auto got = h.dequeue("q", 2, 1000);
  CHECK(ids_of(got) == std::vector<std::string>{a, b});
  CHECK(got[0].deliveries == 2);
}

TEST_CASE("queue nack: with a delay the message waits, then the expiry makes it ready") {
  harness h;
  const auto a = h.enqueue("q", "a");
  h.dequeue("q", 1, 1000);
  auto o = h.run(nack_cmd("q", a, 0, 300));
  CHECK(o.result == code::ok);
  CHECK(h.events.empty());
  auto m = h.s.find("q", a);
  CHECK(m->where == state::delayed);
  CHECK(m->deadline_ms == 1300);
  CHECK(h.s.next_deadline() == 1300u);
  auto st = h.s.stats("q");
  CHECK(st.delayed == 1);
  CHECK(st.ready == 0);
  CHECK(st.in_flight == 0);
  CHECK(h.dequeue("q", 5, 100).empty());
  CHECK(h.run(ack_cmd("q", a)).result == code::stale_receipt);
  h.now = 1299;
  CHECK(h.expire().count == 0);
  h.now = 1300;
  CHECK(h.expire().count == 1);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::ready, "q", {}, 1});
  CHECK(h.where("q", a) == state::ready);
  CHECK(h.dequeue("q", 1, 100)[0].deliveries == 2);
}

// --- dead-letter queue ---------------------------------------------------------------------

TEST_CASE("queue DLQ: after max_deliveries failed deliveries the message is dead, keeping payload, count and reason") {
  harness h;
  h.run(configure_cmd("q", 2));
  const auto a = h.enqueue("q", "payload-a");
  h.dequeue("q", 1, 100);
  h.now += 100;
  h.expire();
  CHECK(h.where("q", a) == state::ready);
  h.dequeue("q", 1, 100);
  h.now += 100;
  auto o = h.expire();
  CHECK(o.count == 1);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[0] == event{event::kind::expired, "q", a, 2});
  CHECK(h.events[1] == event{event::kind::dead_lettered, "q", a, 2});  // no ready event
  auto m = h.s.find("q", a);
  CHECK(m->where == state::dead);
  CHECK(m->payload == "payload-a");
  CHECK(m->deliveries == 2);
  CHECK(m->reason == dead_reason::max_deliveries);
  CHECK(std::string(to_string(m->reason)) == "max_deliveries");
  CHECK(m->last_failure == failure::visibility_timeout);
  CHECK(m->dead_since_ms == h.now);
  auto st = h.s.stats("q");
  CHECK(st.dead == 1);
  CHECK(st.ready == 0);
  CHECK(h.dequeue("q", 5, 100).empty());
  o = h.run(ack_cmd("q", a));
  CHECK(o.result == code::stale_receipt);
  CHECK(o.message.find("dead-letter") != std::string::npos);
}

TEST_CASE("queue DLQ: the default is five deliveries") {
  harness h;
  const auto a = h.enqueue("q", "a");
  for (uint64_t i = 1; i <= default_max_deliveries; ++i) {
    CHECK(h.where("q", a) == state::ready);
    auto got = h.dequeue("q", 1, 10);
    REQUIRE(got.size() == 1);
    CHECK(got[0].deliveries == i);
    h.now += 10;
    h.expire();
  }
  CHECK(h.where("q", a) == state::dead);
}

TEST_CASE("queue DLQ: a nack at the last delivery dead-letters at once, ignoring the delay") {
  harness h;
  h.run(configure_cmd("q", 1));
  const auto a = h.enqueue("q", "a");
  h.dequeue("q", 1, 100);
  auto o = h.run(nack_cmd("q", a, 0, 5000));
  CHECK(o.result == code::ok);
  CHECK(o.dead_lettered);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::dead_lettered, "q", a, 1});
  auto m = h.s.find("q", a);
  CHECK(m->where == state::dead);
  CHECK(m->last_failure == failure::nack);
  CHECK_FALSE(h.s.next_deadline());
}

TEST_CASE("queue DLQ: listing is paged in id order; redrive resets delivery counts; purge drops") {
  harness h;
  h.run(configure_cmd("q", 1));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(h.enqueue("q", "p" + std::to_string(i)));
  const auto live = h.enqueue("q", "live");
  h.dequeue("q", 5, 10);
  h.now += 10;
  h.expire();
  CHECK(h.s.stats("q").dead == 5);

  auto page = h.s.list_dead("q", 0, 2);
  REQUIRE(page.messages.size() == 2);
  CHECK(page.messages[0].id == ids[0]);
  CHECK(page.messages[1].id == ids[1]);
  CHECK(page.messages[0].payload == "p0");
  CHECK(page.messages[0].deliveries == 1);
  CHECK(page.messages[0].reason == dead_reason::max_deliveries);
  REQUIRE(page.next_cursor != 0);
  page = h.s.list_dead("q", page.next_cursor, 2);
  CHECK(page.messages.size() == 2);
  CHECK(page.messages[0].id == ids[2]);
  page = h.s.list_dead("q", page.next_cursor, 2);
  CHECK(page.messages.size() == 1);
  CHECK(page.messages[0].id == ids[4]);
  CHECK(page.next_cursor == 0);
  CHECK(h.s.list_dead("q", 0, 100000).messages.size() == 5);  // limit capped, all fit
  CHECK(h.s.list_dead("nobody").messages.empty());

  auto o = h.run(queue_cmd(op::redrive, "q", 3));
  CHECK(o.result == code::ok);
  CHECK(o.count == 3);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::ready, "q", {}, 4});
  auto m = h.s.find("q", ids[0]);
  CHECK(m->where == state::ready);
  CHECK(m->deliveries == 0);
  CHECK(m->reason == dead_reason::none);
  CHECK(m->payload == "p0");
  auto got = h.dequeue("q", 10, 10);
  CHECK(ids_of(got) == std::vector<std::string>{ids[0], ids[1], ids[2], live});
  CHECK(got[0].deliveries == 1);

  o = h.run(queue_cmd(op::purge_dead, "q", 1000));
  CHECK(o.count == 2);
  CHECK(h.s.stats("q").dead == 0);
  CHECK_FALSE(h.s.find("q", ids[3]));
  CHECK(h.s.message_count() == 4);
  o = h.run(queue_cmd(op::redrive, "q", 10));  // empty DLQ: ok, nothing moved, no event
  CHECK(o.count == 0);
  CHECK(h.events.empty());
}

TEST_CASE("queue redrive, purge_dead, delete_queue of an unknown queue are not_found") {
  harness h;
  CHECK(h.run(queue_cmd(op::redrive, "nope", 1)).result == code::not_found);
  CHECK(h.run(queue_cmd(op::purge_dead, "nope", 1)).result == code::not_found);
  auto o = h.run(queue_cmd(op::delete_queue, "nope"));
  CHECK(o.result == code::not_found);
  CHECK(o.message == "no queue named nope");
}

// --- configure / delete --------------------------------------------------------------------

TEST_CASE("queue configure: creates the queue and sets max_deliveries for future failures") {
  harness h;
  CHECK(h.run(configure_cmd("q", 4)).result == code::ok);
  CHECK(h.s.stats("q").exists);
  CHECK(h.s.stats("q").max_deliveries == 4);
  const auto a = h.enqueue("q", "a");
  for (int i = 0; i < 3; ++i) {
    h.dequeue("q", 1, 10);
    h.now += 10;
    h.expire();
  }
  CHECK(h.where("q", a) == state::ready);  // 3 deliveries < 4
  // Lowered below the count of a ready message: it is delivered once more, then dies.
  h.run(configure_cmd("q", 2));
  auto got = h.dequeue("q", 1, 10);
  REQUIRE(got.size() == 1);
  CHECK(got[0].deliveries == 4);
  h.now += 10;
  h.expire();
  CHECK(h.where("q", a) == state::dead);
  // Raised: dead messages stay dead until redriven.
  h.run(configure_cmd("q", 100));
  CHECK(h.where("q", a) == state::dead);
}

TEST_CASE("queue delete_queue: drops every message in every state, its deadlines and settings") {
  harness h;
  h.run(configure_cmd("q", 1));
  const auto dead = h.enqueue("q", "d");
  h.dequeue("q", 1, 10);
  h.now += 10;
  h.expire();
  const auto delayed = h.enqueue("q", "l");
  h.dequeue("q", 1, 10000);
  h.run(configure_cmd("q", 5));
  h.run(nack_cmd("q", delayed, 0, 1000));
  const auto flying = h.enqueue("q", "f");
  h.dequeue("q", 1, 10000);
  h.enqueue("q", "r");
  h.enqueue("keep", "k");
  auto st = h.s.stats("q");
  CHECK(st.ready == 1);
  CHECK(st.in_flight == 1);
  CHECK(st.delayed == 1);
  CHECK(st.dead == 1);
  CHECK(h.s.next_deadline());

  auto o = h.run(queue_cmd(op::delete_queue, "q"));
  CHECK(o.result == code::ok);
  CHECK(o.count == 4);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0] == event{event::kind::queue_deleted, "q", {}, 4});
  CHECK_FALSE(h.s.stats("q").exists);
  CHECK_FALSE(h.s.next_deadline());
  CHECK(h.s.message_count() == 1);
  CHECK(h.s.payload_bytes() == 1);
  CHECK(h.s.list_queues() == std::vector<std::string>{"keep"});
  CHECK(h.run(ack_cmd("q", flying)).result == code::not_found);
  CHECK_FALSE(h.s.find("q", dead));
  h.now += 100000;
  CHECK(h.expire().count == 0);
  // Recreated fresh by the next enqueue, with default settings.
  h.enqueue("q", "new");
  CHECK(h.s.stats("q").max_deliveries == default_max_deliveries);
  CHECK(h.s.stats("q").ready == 1);
}

TEST_CASE("queue list_queues: name order, paged") {
  harness h;
  for (const char* q : {"c", "a", "d", "b"}) h.enqueue(q, "x");
  CHECK(h.s.list_queues() == std::vector<std::string>{"a", "b", "c", "d"});
  CHECK(h.s.list_queues("", 2) == std::vector<std::string>{"a", "b"});
  CHECK(h.s.list_queues("b", 2) == std::vector<std::string>{"c", "d"});
  CHECK(h.s.list_queues("d").empty());
}

// --- time and log order --------------------------------------------------------------------

TEST_CASE("queue time: never runs backwards inside the shard") {
  harness h;
  h.now = 5000;
  const auto a = h.enqueue("q", "a");
  h.now = 4000;  // a new leader whose clock lags
  const auto b = h.enqueue("q", "b");
  CHECK(h.s.now_ms() == 5000);
  CHECK(h.s.find("q", b)->enqueued_ms == 5000);
  auto got = h.dequeue("q", 1, 100);
  CHECK(h.s.find("q", a)->deadline_ms == 5100);  // from the newest time, not 4000
  h.now = 5099;
  CHECK(h.expire().count == 0);
  h.now = 1;
  CHECK(h.expire().count == 0);
  h.now = 5100;
  CHECK(h.expire().count == 1);
}

TEST_CASE("queue apply: log indexes must increase (a caller bug throws)") {
  shard s(shard_no);
  std::vector<event> evs;
  CHECK_THROWS_AS(s.apply(0, enqueue_cmd("q", "x"), evs), std::logic_error);
  s.apply(5, enqueue_cmd("q", "x"), evs);
  CHECK(s.last_index() == 5);
  CHECK_THROWS_AS(s.apply(5, enqueue_cmd("q", "x"), evs), std::logic_error);
  CHECK_THROWS_AS(s.apply(4, enqueue_cmd("q", "x"), evs), std::logic_error);
  CHECK(s.message_count() == 1);
  CHECK(s.apply(9, enqueue_cmd("q", "x"), evs).id == "7-9");  // gaps (no-ops, config entries) are fine
}

// --- validation and limits -----------------------------------------------------------------

TEST_CASE("queue validate: names, payloads, max, timeouts, ids, consumers") {
  CHECK(validate(enqueue_cmd("a.B_c-9", "")).empty());
  CHECK(validate(enqueue_cmd(std::string(max_queue_name_bytes, 'q'), "x")).empty());
  CHECK(validate(enqueue_cmd("", "x")) == "queue name is empty");
  CHECK(validate(enqueue_cmd(std::string(max_queue_name_bytes + 1, 'q'), "x")) ==
        "queue name is longer than 256 bytes");
  for (const char* bad : {"a b", "a/b", "a:b", "\xc3\xa9", "a\n"})
    CHECK(validate(enqueue_cmd(bad, "x")) == "queue name may only contain letters, digits, '.', '_' and '-'");
  CHECK(validate(enqueue_cmd("q", std::string(max_payload_bytes, 'x'))).empty());
  CHECK(validate(enqueue_cmd("q", std::string(max_payload_bytes + 1, 'x'))) ==
        "payload is larger than 262144 bytes (got 262145)");

  CHECK(validate(dequeue_cmd("q", 1, 1)).empty());
  CHECK(validate(dequeue_cmd("q", max_dequeue, max_visibility_ms)).empty());
  CHECK(validate(dequeue_cmd("q", 0, 100)) == "max must be between 1 and 1000 (got 0)");
  CHECK(validate(dequeue_cmd("q", 1001, 100)) == "max must be between 1 and 1000 (got 1001)");
  CHECK(validate(dequeue_cmd("q", uint64_t(-1), 100)).find("max must be between 1 and 1000") == 0);  // "-1"
  CHECK(validate(dequeue_cmd("q", 1, 0)) == "visibility_ms must be between 1 and 43200000 (got 0)");
  CHECK(validate(dequeue_cmd("q", 1, max_visibility_ms + 1)).find("visibility_ms must be between") == 0);
  CHECK(validate(dequeue_cmd("q", 1, 1, std::string(max_consumer_bytes, 'c'))).empty());
  CHECK(validate(dequeue_cmd("q", 1, 1, std::string(max_consumer_bytes + 1, 'c'))) ==
        "consumer is longer than 128 bytes");
  CHECK(validate(dequeue_cmd("", 1, 1)) == "queue name is empty");

  CHECK(validate(ack_cmd("q", "7-1", 3)).empty());
  CHECK(validate(ack_cmd("q", "abc")) == "id is not a message id of the form <shard>-<index>");
  CHECK(validate(ack_cmd("q", "")) == "id is not a message id of the form <shard>-<index>");
  CHECK(validate(nack_cmd("q", "7-1", 0, max_delay_ms)).empty());
  CHECK(validate(nack_cmd("q", "7-1", 0, max_delay_ms + 1)) == "delay_ms must be between 0 and 43200000 (got 43200001)");
  CHECK(validate(nack_cmd("q", "x-1")) == "id is not a message id of the form <shard>-<index>");

  CHECK(validate(queue_cmd(op::redrive, "q", 1)).empty());
  CHECK(validate(queue_cmd(op::redrive, "q", 0)) == "max must be between 1 and 1000 (got 0)");
  CHECK(validate(queue_cmd(op::purge_dead, "q", 1001)) == "max must be between 1 and 1000 (got 1001)");
  CHECK(validate(queue_cmd(op::delete_queue, "q")).empty());
  CHECK(validate(queue_cmd(op::delete_queue, "bad name")) != "");
  CHECK(validate(configure_cmd("q", 1)).empty());
  CHECK(validate(configure_cmd("q", 1000)).empty());
  CHECK(validate(configure_cmd("q", 0)) == "max_deliveries must be between 1 and 1000 (got 0)");
  CHECK(validate(configure_cmd("q", 1001)) == "max_deliveries must be between 1 and 1000 (got 1001)");
  CHECK(validate(expire_cmd()).empty());
  command unknown;
  unknown.kind = static_cast<op>(42);
  CHECK(validate(unknown) == "unknown operation 42");

  CHECK(validate_wait_ms(0).empty());
  CHECK(validate_wait_ms(max_wait_ms).empty());
  CHECK(validate_wait_ms(max_wait_ms + 1) == "wait_ms must be between 0 and 60000 (got 60001)");
}

TEST_CASE("queue validate: apply refuses invalid commands with bad_request and changes nothing") {
  harness h;
  const auto before = h.s.snapshot();
  for (const command& c : {enqueue_cmd("bad name", "x"), enqueue_cmd("q", std::string(max_payload_bytes + 1, 'x')),
                           dequeue_cmd("q", 0, 10), dequeue_cmd("q", 1, 0), configure_cmd("q", 0),
                           nack_cmd("q", "7-1", 0, max_delay_ms + 1), ack_cmd("q", "zzz"),
                           queue_cmd(op::redrive, "q", 0)}) {
    auto o = h.run(c);
    CHECK(o.result == code::bad_request);
    CHECK(o.message == validate(c));
    CHECK(h.events.empty());
  }
  CHECK(h.s.queue_count() == 0);
  CHECK(h.s.message_count() == 0);
}

TEST_CASE("queue limits: queues, depth, shard messages and bytes answer limit") {
  shard_limits lim;
  lim.max_queues = 2;
  lim.max_messages_per_queue = 3;
  lim.max_messages = 5;
  lim.max_payload_bytes_total = 12;
  harness h(lim);
  h.enqueue("a", "1");
  h.enqueue("b", "1");
  auto o = h.run(enqueue_cmd("c", "1"));
  CHECK(o.result == code::limit);
  CHECK(o.message == "the shard already holds 2 queues");
  CHECK_FALSE(h.s.stats("c").exists);
  CHECK(h.run(configure_cmd("c", 3)).result == code::limit);
  CHECK(h.run(configure_cmd("a", 3)).result == code::ok);  // existing queue: fine
  h.enqueue("a", "2");
  h.enqueue("a", "3");
  o = h.run(enqueue_cmd("a", "4"));
  CHECK(o.result == code::limit);
  CHECK(o.message == "queue a already holds 3 messages");
  h.enqueue("b", "2");
  o = h.run(enqueue_cmd("b", "3"));
  CHECK(o.result == code::limit);
  CHECK(o.message == "the shard already holds 5 messages");
  CHECK(h.events.empty());
  // Freeing a message frees room; bytes are counted too.
  auto d = h.dequeue("b", 1, 10);
  CHECK(h.run(ack_cmd("b", d[0].id)).result == code::ok);
  CHECK(h.s.payload_bytes() == 4);
  o = h.run(enqueue_cmd("b", "123456789"));  // 4 + 9 > 12
  CHECK(o.result == code::limit);
  CHECK(o.message == "the shard's payloads would exceed 12 bytes");
  h.enqueue("b", "12345678");  // 4 + 8 == 12: fits
  CHECK(h.s.payload_bytes() == 12);
  CHECK(h.s.message_count() == 5);
}

// --- encoding ------------------------------------------------------------------------------

namespace {

std::vector<command> sample_commands() {
  std::vector<command> cs = {enqueue_cmd("q", R"({"x":[1,2]})"),
                             enqueue_cmd("q", ""),
                             dequeue_cmd("queue.1", 10, 30000, "worker-7"),
                             ack_cmd("q", "7-12", 99),
                             ack_cmd("q", "7-12"),
                             nack_cmd("q", "7-12", 99, 2500),
                             expire_cmd(),
                             queue_cmd(op::redrive, "q", 50),
                             queue_cmd(op::purge_dead, "q", 7),
                             queue_cmd(op::delete_queue, "q"),
                             configure_cmd("q", 9)};
  uint64_t t = 1;
  for (auto& c : cs) c.now_ms = (t *= 1000003);
  return cs;
}

}  // namespace

TEST_CASE("queue command codec: round trips every op; rejects prefixes, trailing bytes, unknown ops") {
  for (const auto& c : sample_commands()) {
    CAPTURE(to_string(c.kind));
    const auto bytes = encode(c);
    command back;
    REQUIRE(decode(bytes, back));
    CHECK(back == c);
    for (size_t n = 0; n < bytes.size(); ++n) {
      command x;
      CHECK_FALSE(decode(bytes.substr(0, n), x));
    }
    command x;
    CHECK_FALSE(decode(bytes + '\0', x));
    for (uint8_t k : {0, 10, 255}) {
      auto bad = bytes;
      bad[0] = static_cast<char>(k);
      CHECK_FALSE(decode(bad, x));
    }
  }
  // Fields of other ops are not carried.
  command c = enqueue_cmd("q", "p");
  c.max = 5;
  c.id = "7-1";
  command back;
  REQUIRE(decode(encode(c), back));
  CHECK(back == enqueue_cmd("q", "p"));
  // A failed decode leaves the target as it was.
  command keep = configure_cmd("keep", 3);
  CHECK_FALSE(decode(encode(c).substr(0, 5), keep));
  CHECK(keep == configure_cmd("keep", 3));
  // Values are not checked by decode; apply answers bad_request.
  REQUIRE(decode(encode(dequeue_cmd("bad name", 0, 0)), back));
  CHECK_FALSE(validate(back).empty());
}

TEST_CASE("queue outcome codec: round trips; rejects prefixes, trailing bytes, unknown codes") {
  outcome a;
  a.id = "7-3";
  outcome b;
  b.messages = {delivery{"7-3", 9, R"({"a":1})", 1}, delivery{"7-4", 9, "", 3}};
  outcome c;
  c.result = code::stale_receipt;
  c.message = "receipt 3 is not the current delivery";
  outcome d;
  d.dead_lettered = true;
  d.count = 12345;
  outcome e;
  e.result = code::limit;
  e.message = "x";
  for (const auto& o : {a, b, c, d, e, outcome{}}) {
    const auto bytes = encode(o);
    outcome back;
    REQUIRE(decode(bytes, back));
    CHECK(back == o);
    for (size_t n = 0; n < bytes.size(); ++n) {
      outcome x;
      CHECK_FALSE(decode(bytes.substr(0, n), x));
    }
    outcome x;
    CHECK_FALSE(decode(bytes + 'x', x));
    for (uint8_t k : {0, 6, 255}) {
      auto bad = bytes;
      bad[0] = static_cast<char>(k);
      CHECK_FALSE(decode(bad, x));
    }
  }
  auto bytes = encode(d);
  bytes[1 + 8 + 8] = 2;  // dead_lettered must be 0 or 1
  outcome x;
  CHECK_FALSE(decode(bytes, x));
  for (auto cd : {code::ok, code::not_found, code::stale_receipt, code::bad_request, code::limit})
    CHECK(std::string(to_string(cd)) != "unknown");
}

// --- snapshots -----------------------------------------------------------------------------

namespace {

// A shard with messages in every state, two queues, settings and deadlines.
harness populated() {
  harness h;
  h.run(configure_cmd("alpha", 2));
  for (int i = 0; i < 6; ++i) h.enqueue(i % 2 ? "alpha" : "beta", "payload " + std::to_string(i));
  h.dequeue("alpha", 1, 50, "w1");  // will die: 2 deliveries
  h.now += 50;
  h.expire();
  h.dequeue("alpha", 1, 50, "w1");
  h.now += 50;
  h.expire();
  auto got = h.dequeue("alpha", 1, 10000, "w2");  // in flight
  got = h.dequeue("beta", 2, 10000, "w3");
  h.run(nack_cmd("beta", got[0].id, got[0].receipt, 700));  // delayed
  h.now += 3;
  return h;
}

}  // namespace

TEST_CASE("queue snapshot: restore gives the same state, answers and future") {
  harness h = populated();
  auto sa = h.s.stats("alpha");
  auto sb = h.s.stats("beta");
  CHECK(sa.dead == 1);
  CHECK(sa.in_flight == 1);
  CHECK(sb.delayed == 1);
  CHECK(sb.in_flight == 1);
  const auto bytes = h.s.snapshot();
  shard copy(shard_no);
  REQUIRE(copy.restore(bytes));
  CHECK(copy.snapshot() == bytes);
  CHECK(copy.last_index() == h.s.last_index());
  CHECK(copy.now_ms() == h.s.now_ms());
  CHECK(copy.message_count() == h.s.message_count());
  CHECK(copy.payload_bytes() == h.s.payload_bytes());
  CHECK(copy.next_deadline() == h.s.next_deadline());
  for (const char* q : {"alpha", "beta"}) {
    auto x = copy.stats(q), y = h.s.stats(q);
    CHECK(x.ready == y.ready);
    CHECK(x.in_flight == y.in_flight);
    CHECK(x.delayed == y.delayed);
    CHECK(x.dead == y.dead);
    CHECK(x.max_deliveries == y.max_deliveries);
    CHECK(x.payload_bytes == y.payload_bytes);
    for (uint64_t i = 1; i <= h.index; ++i)
      CHECK(copy.find(q, format_id(shard_no, i)) == h.s.find(q, format_id(shard_no, i)));
  }
  CHECK(copy.list_dead("alpha").messages == h.s.list_dead("alpha").messages);
  // The same commands give the same answers and events from here on.
  std::vector<command> next = {expire_cmd(), dequeue_cmd("alpha", 5, 10), dequeue_cmd("beta", 5, 10),
                               queue_cmd(op::redrive, "alpha", 5), enqueue_cmd("alpha", "z"), expire_cmd()};
  uint64_t index = h.index, now = h.now;
  for (auto c : next) {
    now += 400;
    c.now_ms = now;
    std::vector<event> e1, e2;
    ++index;
    CHECK(h.s.apply(index, c, e1) == copy.apply(index, c, e2));
    CHECK(e1 == e2);
  }
  CHECK(copy.snapshot() == h.s.snapshot());
  // An empty shard round-trips too.
  shard empty(shard_no), other(shard_no);
  REQUIRE(other.restore(empty.snapshot()));
  CHECK(other.snapshot() == empty.snapshot());
}

TEST_CASE("queue snapshot: malformed bytes are refused and leave the shard unchanged") {
  harness h = populated();
  const auto bytes = h.s.snapshot();
  harness target;
  target.enqueue("mine", "keep me");
  const auto mine = target.s.snapshot();
  for (size_t n = 0; n < bytes.size(); ++n) {
    CHECK_FALSE(target.s.restore(std::string_view(bytes).substr(0, n)));
  }
  CHECK_FALSE(target.s.restore(bytes + '\0'));
  auto bad = bytes;
  bad[0] = 2;  // version
  CHECK_FALSE(target.s.restore(bad));
  shard wrong(shard_no + 1);
  CHECK_FALSE(wrong.restore(bytes));  // another shard's snapshot
  CHECK(target.s.snapshot() == mine);
  // Every single-byte corruption is either refused (shard unchanged) or, if it still
  // describes a consistent state, restored exactly.
  size_t refused = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      auto b = bytes;
      b[i] = static_cast<char>(b[i] ^ flip);
      shard s(shard_no);
      s.restore(mine);
      if (s.restore(b)) {
        CHECK(s.snapshot() == b);
      } else {
        ++refused;
        CHECK(s.snapshot() == mine);
      }
    }
  }
  CHECK(refused > 0);
}

TEST_CASE("queue snapshot: inconsistent contents are refused") {
  // Hand-built snapshots: version, shard, last index, now, queues...
  auto u64 = [](std::string& s, uint64_t x) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
  };
  auto str = [&](std::string& s, const std::string& x) {
    u64(s, x.size());
    s += x;
  };
  auto header = [&](uint64_t last, uint64_t now, uint64_t nq) {
    std::string s(1, '\x01');
    u64(s, shard_no);
    u64(s, last);
    u64(s, now);
    u64(s, nq);
    return s;
  };
  auto ready_msg = [&](std::string& s, uint64_t idx, uint64_t enq_ms = 0) {
    u64(s, idx);
    s.push_back(1);
    str(s, "p");
    u64(s, 0);
    u64(s, enq_ms);
  };
  shard s(shard_no);
  {  // valid baseline
    auto b = header(10, 100, 1);
    str(b, "q");
    u64(b, 5);
    u64(b, 2);
    ready_msg(b, 3);
    ready_msg(b, 4);
    CHECK(s.restore(b));
    CHECK(s.stats("q").ready == 2);
  }
  shard t(shard_no);
  {  // index above last index
    auto b = header(3, 100, 1);
    str(b, "q");
    u64(b, 5);
    u64(b, 1);
    ready_msg(b, 4);
    CHECK_FALSE(t.restore(b));
  }
  {  // indexes not ascending
    auto b = header(10, 100, 1);
    str(b, "q");
    u64(b, 5);
    u64(b, 2);
    ready_msg(b, 4);
    ready_msg(b, 3);
    CHECK_FALSE(t.restore(b));
  }
  {  // the same id in two queues
    auto b = header(10, 100, 2);
    str(b, "a");
    u64(b, 5);
    u64(b, 1);
    ready_msg(b, 4);
    str(b, "b");
    u64(b, 5);
    u64(b, 1);
    ready_msg(b, 4);
    CHECK_FALSE(t.restore(b));
  }
  {  // queue names not ascending, invalid name, bad max_deliveries
    auto b = header(10, 100, 2);
    str(b, "b");
    u64(b, 5);
    u64(b, 0);
    str(b, "a");
    u64(b, 5);
    u64(b, 0);
    CHECK_FALSE(t.restore(b));
    b = header(10, 100, 1);
    str(b, "a b");
    u64(b, 5);
    u64(b, 0);
    CHECK_FALSE(t.restore(b));
    b = header(10, 100, 1);
    str(b, "a");
    u64(b, 0);
    u64(b, 0);
    CHECK_FALSE(t.restore(b));
  }
  {  // enqueued in the future, unknown state
    auto b = header(10, 100, 1);
    str(b, "q");
    u64(b, 5);
    u64(b, 1);
    ready_msg(b, 4, 101);
    CHECK_FALSE(t.restore(b));
    b = header(10, 100, 1);
    str(b, "q");
    u64(b, 5);
    u64(b, 1);
    u64(b, 4);
    b.push_back(9);
    str(b, "p");
    u64(b, 0);
    u64(b, 0);
    CHECK_FALSE(t.restore(b));
  }
  {  // in flight with a receipt not after the enqueue, or zero deliveries
    for (auto [receipt, deliveries] : {std::pair<uint64_t, uint64_t>{4, 1}, {11, 1}, {5, 0}}) {
      auto b = header(10, 100, 1);
      str(b, "q");
      u64(b, 5);
      u64(b, 1);
      u64(b, 4);
      b.push_back(2);
      str(b, "p");
      u64(b, deliveries);
      u64(b, 0);
      u64(b, receipt);
      u64(b, 500);
      str(b, "c");
      CHECK_FALSE(t.restore(b));
    }
  }
  CHECK(t.queue_count() == 0);
}

// --- randomized properties -----------------------------------------------------------------

namespace {

struct tracked {
  std::string queue;
  uint64_t index = 0;
};

// How often the random runs reached each outcome: the invariants say nothing about a
// transition the generator never makes.
struct coverage {
  uint64_t enqueued = 0, full = 0, delivered = 0, redelivered = 0, acked = 0, nacked = 0, dead_lettered = 0,
           stale = 0, not_found = 0, redriven = 0, purged = 0, queues_deleted = 0;
};

// Runs random commands against a shard and a shadow replica, checking invariants after
// every step. Failures name the seed (CAPTURE) so it can be replayed.
void run_random(uint64_t seed, int steps, coverage& cov) {
  dsync::raft::rng rng(seed);
  const std::vector<std::string> queues = {"a", "b", "c"};
  shard_limits lim;
  lim.max_messages_per_queue = 25;  // reach the limit now and then
  shard s(shard_no, lim), shadow(shard_no, lim);
  uint64_t index = 0, now = 1000;
  std::map<std::string, tracked> alive;            // id -> where it was enqueued
  std::set<std::string> acked, deleted;
  std::set<std::string> delivered_ever;            // for FIFO of first deliveries
  std::map<std::string, std::set<uint64_t>> never_delivered;  // queue -> indexes
  std::map<std::string, uint64_t> last_receipt;    // id -> a receipt it was handed (maybe stale)
  std::vector<std::string> all_ids;

  auto pick_queue = [&] { return queues[rng.below(queues.size())]; };
  auto pick_id = [&]() -> std::string {
    if (all_ids.empty() || rng.chance(1, 20)) return format_id(rng.chance(1, 2) ? shard_no : 9, 1 + rng.below(index + 2));
    if (!alive.empty() && rng.chance(2, 3)) {  // mostly live messages, often just delivered
      auto it = alive.lower_bound(all_ids[all_ids.size() - 1 - rng.below(std::min<size_t>(all_ids.size(), 8))]);
      if (it == alive.end()) it = alive.begin();
      return it->first;
    }
    return all_ids[rng.below(all_ids.size())];
  };

  for (int step = 0; step < steps; ++step) {
    CAPTURE(seed);
    CAPTURE(step);
    // Time: mostly forward, sometimes a lagging leader.
    if (rng.chance(1, 15)) now = now > 200 ? now - rng.below(200) : now;
    else now += rng.below(40);

    command c;
    const uint64_t roll = rng.below(100);
    const auto ns = s.next_deadline();
    if (roll < 28) {
      c = enqueue_cmd(pick_queue(), "p" + std::to_string(rng.below(1000)));
    } else if (roll < 48) {
      c = dequeue_cmd(pick_queue(), 1 + rng.below(4), 1 + rng.below(150), "w" + std::to_string(rng.below(3)));
      if (rng.chance(1, 2)) c.visibility_ms += 300;
    } else if (roll < 62) {
      std::string id = pick_id();
      uint64_t receipt = 0;
      if (rng.chance(2, 3) && last_receipt.count(id)) receipt = last_receipt[id];
      else if (rng.chance(1, 4)) receipt = 1 + rng.below(index + 1);
      std::string q = alive.count(id) ? alive[id].queue : pick_queue();
      if (rng.chance(1, 10)) q = pick_queue();
      c = ack_cmd(q, id, receipt);
      if (rng.chance(2, 5)) c = nack_cmd(q, id, receipt, rng.chance(1, 2) ? 0 : rng.below(100));
    } else if (roll < 80 || (ns && *ns <= now && roll < 90)) {
      c = expire_cmd();
    } else if (roll < 84) {
      c = configure_cmd(pick_queue(), 1 + rng.below(4));
    } else if (roll < 89) {
      c = queue_cmd(op::redrive, pick_queue(), 1 + rng.below(5));
    } else if (roll < 91) {
      c = queue_cmd(op::purge_dead, pick_queue(), 1 + rng.below(3));
    } else if (roll < 92) {
      c = queue_cmd(op::delete_queue, pick_queue());
    } else {  // garbage that must be refused
      switch (rng.below(4)) {
        case 0: c = dequeue_cmd(pick_queue(), 0, 10); break;
        case 1: c = enqueue_cmd("bad name!", "x"); break;
        case 2: c = nack_cmd(pick_queue(), "junk"); break;
        default: c = configure_cmd(pick_queue(), 0); break;
      }
    }
    c.now_ms = now;

    // Oracle for ack/nack from the state before the command.
    std::optional<message_info> before;
    if (c.kind == op::ack || c.kind == op::nack) before = s.find(c.queue, c.id);
    std::map<std::string, uint64_t> deliveries_before;
    if (c.kind == op::dequeue)
      for (const auto& [id, t] : alive)
        if (t.queue == c.queue) deliveries_before[id] = s.find(t.queue, id)->deliveries;
    std::vector<std::string> dead_before;
    if (c.kind == op::redrive || c.kind == op::purge_dead)
      for (const auto& m : s.list_dead(c.queue).messages) dead_before.push_back(m.id);

    std::vector<event> evs, shadow_evs;
    ++index;
    const outcome o = s.apply(index, c, evs);
    const outcome o2 = shadow.apply(index, c, shadow_evs);
    REQUIRE(o == o2);
    REQUIRE(evs == shadow_evs);
    REQUIRE(encode(o) == encode(o2));
    outcome decoded;
    REQUIRE(decode(encode(o), decoded));
    REQUIRE(decoded == o);
    command cd;
    REQUIRE(decode(encode(c), cd));

    if (!validate(c).empty()) {
      REQUIRE(o.result == code::bad_request);
    } else {
      switch (c.kind) {
        case op::enqueue:
          if (o.result == code::ok) {
            REQUIRE(o.id == format_id(shard_no, index));
            REQUIRE(alive.count(o.id) == 0);
            alive[o.id] = tracked{c.queue, index};
            never_delivered[c.queue].insert(index);
            all_ids.push_back(o.id);
            ++cov.enqueued;
          } else {
            REQUIRE(o.result == code::limit);
            ++cov.full;
          }
          break;
        case op::dequeue: {
          REQUIRE(o.result == code::ok);
          REQUIRE(o.messages.size() <= c.max);
          auto& nd = never_delivered[c.queue];
          for (const auto& d : o.messages) {
            REQUIRE(alive.count(d.id) == 1);  // acked/deleted messages never reappear
            REQUIRE(acked.count(d.id) == 0);
            REQUIRE(alive[d.id].queue == c.queue);
            REQUIRE(d.receipt == index);
            REQUIRE(d.deliveries == deliveries_before[d.id] + 1);
            ++(d.deliveries > 1 ? cov.redelivered : cov.delivered);
            if (delivered_ever.insert(d.id).second) {
              // First delivery: must be the oldest never-delivered message of the queue.
              REQUIRE(!nd.empty());
              REQUIRE(format_id(shard_no, *nd.begin()) == d.id);
              nd.erase(nd.begin());
            }
            last_receipt[d.id] = d.receipt;
          }
          break;
        }
        case op::ack:
        case op::nack:
          if (!before) {
            REQUIRE(o.result == code::not_found);
            ++cov.not_found;
          } else if (before->where != state::in_flight || (c.receipt != 0 && c.receipt != before->receipt)) {
            REQUIRE(o.result == code::stale_receipt);
            ++cov.stale;
          } else {
            REQUIRE(o.result == code::ok);
            ++(c.kind == op::ack ? cov.acked : cov.nacked);
            cov.dead_lettered += o.dead_lettered;
            if (c.kind == op::ack) {
              acked.insert(c.id);
              alive.erase(c.id);
            } else {
              const auto after = s.find(c.queue, c.id);
              REQUIRE(after);
              const bool should_die = before->deliveries >= s.stats(c.queue).max_deliveries;
              REQUIRE(o.dead_lettered == should_die);
              REQUIRE(after->where == (should_die ? state::dead : c.delay_ms ? state::delayed : state::ready));
            }
          }
          break;
        case op::redrive:
        case op::purge_dead:
          if (o.result == code::ok) {
            REQUIRE(o.count == std::min<uint64_t>(c.max, dead_before.size()));
            (c.kind == op::redrive ? cov.redriven : cov.purged) += o.count;
            for (size_t i = 0; i < o.count; ++i) {
              const auto m = s.find(c.queue, dead_before[i]);
              if (c.kind == op::redrive) {
                REQUIRE(m);
                REQUIRE(m->where == state::ready);
                REQUIRE(m->deliveries == 0);
              } else {
                REQUIRE_FALSE(m);
                alive.erase(dead_before[i]);
                deleted.insert(dead_before[i]);
              }
            }
          } else {
            REQUIRE(o.result == code::not_found);
          }
          break;
        case op::delete_queue:
          if (o.result == code::ok) {
            for (auto it = alive.begin(); it != alive.end();) {
              if (it->second.queue == c.queue) {
                deleted.insert(it->first);
                it = alive.erase(it);
              } else {
                ++it;
              }
            }
            never_delivered.erase(c.queue);
            ++cov.queues_deleted;
          }
          break;
        default: break;
      }
    }
    // Events only ever name queues, and ready events carry the queue's ready count.
    for (const auto& e : evs)
      if (e.what == event::kind::ready) REQUIRE(e.count == s.stats(e.queue).ready);

    // Invariants: every enqueued message is in exactly one state, or acked/dropped.
    std::map<std::string, queue_stats> counted;
    uint64_t min_deadline = UINT64_MAX;
    for (const auto& [id, t] : alive) {
      const auto m = s.find(t.queue, id);
      REQUIRE(m);
      auto& st = counted[t.queue];
      switch (m->where) {
        case state::ready: ++st.ready; break;
        case state::in_flight:
          ++st.in_flight;
          min_deadline = std::min(min_deadline, m->deadline_ms);
          break;
        case state::delayed:
          ++st.delayed;
          min_deadline = std::min(min_deadline, m->deadline_ms);
          break;
        case state::dead:
          ++st.dead;
          REQUIRE(m->reason == dead_reason::max_deliveries);
          REQUIRE(m->deliveries >= 1);
          break;
      }
      // Never-delivered messages are always ready (first deliveries stay FIFO).
      if (!delivered_ever.count(id)) REQUIRE(m->where == state::ready);
    }
    for (const auto& id : acked)
      for (const auto& q : queues) REQUIRE_FALSE(s.find(q, id));
    for (const auto& id : deleted)
      for (const auto& q : queues) REQUIRE_FALSE(s.find(q, id));
    uint64_t total = 0;
    for (const auto& q : queues) {
      const auto st = s.stats(q);
      const auto& want = counted[q];
      REQUIRE(st.ready == want.ready);
      REQUIRE(st.in_flight == want.in_flight);
      REQUIRE(st.delayed == want.delayed);
      REQUIRE(st.dead == want.dead);
      REQUIRE(s.list_dead(q).messages.size() == std::min<size_t>(st.dead, max_list_page));
      total += st.ready + st.in_flight + st.delayed + st.dead;
    }
    REQUIRE(total == s.message_count());
    REQUIRE(total == alive.size());
    if (min_deadline == UINT64_MAX) REQUIRE_FALSE(s.next_deadline());
    else REQUIRE(s.next_deadline() == min_deadline);

    // Snapshots: exact round trip; now and then the shadow continues from a restore.
    if (step % 7 == 0) {
      const auto bytes = s.snapshot();
      shard copy(shard_no, lim);
      REQUIRE(copy.restore(bytes));
      REQUIRE(copy.snapshot() == bytes);
      if (rng.chance(1, 3)) REQUIRE(shadow.restore(bytes));
    }
    REQUIRE(shadow.snapshot() == s.snapshot());
  }
}

}  // namespace

TEST_CASE("queue property: random command sequences keep every invariant (seeded)") {
  coverage cov;
  for (uint64_t seed = 1; seed <= 150; ++seed) run_random(seed, 400, cov);
  INFO("enqueued " << cov.enqueued << ", full " << cov.full << ", delivered " << cov.delivered << ", redelivered "
                      << cov.redelivered << ", acked " << cov.acked << ", nacked " << cov.nacked << ", dead-lettered "
                      << cov.dead_lettered << ", stale " << cov.stale << ", not found " << cov.not_found
                      << ", redriven " << cov.redriven << ", purged " << cov.purged << ", queues deleted "
                      << cov.queues_deleted);
  // A third of what the 150 seeds reach (14971 enqueued, 1980 full, 11684 first and 10118
  // later deliveries, 717 acks, 501 nacks, 110 dead-lettered, 5377 stale, 1726 not found,
  // 1936 redriven, 652 purged, 522 queues deleted): a generator change that starves a
  // transition fails here.
  CHECK(cov.enqueued > 5000);
  CHECK(cov.full > 600);
  CHECK(cov.delivered > 4000);
  CHECK(cov.redelivered > 3000);
  CHECK(cov.acked > 200);
  CHECK(cov.nacked > 150);
  CHECK(cov.dead_lettered > 30);
  CHECK(cov.stale > 1500);
  CHECK(cov.not_found > 500);
  CHECK(cov.redriven > 600);
  CHECK(cov.purged > 200);
  CHECK(cov.queues_deleted > 150);
}
