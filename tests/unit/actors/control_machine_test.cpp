// The control group's state machine: members' addresses are replicated, survive a
// snapshot, are reported to the peer links on apply and on restore, and malformed
// address commands are refused alike on every replica.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "actors/control_machine.hpp"
#include "protocols/codec.hpp"

using namespace dsync;

namespace {

using address = std::tuple<std::string, std::string, uint16_t>;

struct recorder {
  std::vector<address> seen;
  member_observer observer() {
    member_observer o;
    o.address = [this](const std::string& id, const std::string& host, uint16_t port) {
      seen.emplace_back(id, host, port);
    };
    return o;
  }
};

}  // namespace

TEST_CASE("a member's address is reported when applied and forgotten when removed") {
  recorder r;
  control_machine m{{}, {}, r.observer()};
  CHECK(m.apply(1, control::member_address_command("node-4", "127.0.0.1", 5004)) == "ok");
  CHECK(m.apply(2, control::member_address_command("node-5", "10.0.0.5", 5005)) == "ok");
  REQUIRE(r.seen.size() == 2);
  CHECK(r.seen[0] == address{"node-4", "127.0.0.1", 5004});
  CHECK(r.seen[1] == address{"node-5", "10.0.0.5", 5005});

  CHECK(m.apply(3, control::member_address_command("node-4", "", 0)) == "ok");  // removed
  recorder restored;
  control_machine copy{{}, {}, restored.observer()};
  REQUIRE(copy.restore(m.snapshot()));
  CHECK(restored.seen == std::vector<address>{{"node-5", "10.0.0.5", 5005}});
}

TEST_CASE("a snapshot keeps the addresses beside the KV store and the cache members") {
  control_machine m;
  REQUIRE(m.apply(1, control::kv_command(kv::command{kv::op::put, "k", "v"})) != "malformed");
  REQUIRE(m.apply(2, control::cache_members_command({"node-1", "node-2"})) == "ok");
  REQUIRE(m.apply(3, control::member_address_command("node-3", "::1", 7000)) == "ok");

  recorder r;
  control_machine copy{{}, {}, r.observer()};
  REQUIRE(copy.restore(m.snapshot()));
  CHECK(r.seen == std::vector<address>{{"node-3", "::1", 7000}});
  std::optional<kv::value_record> v;
  REQUIRE(control::decode_kv_answer(copy.query(control::kv_query("k")), v));
  REQUIRE(v);
  CHECK(v->value == "v");
  CHECK(copy.snapshot() == m.snapshot());
}

TEST_CASE("a snapshot from before addresses were replicated still restores") {
  control_machine m;
  REQUIRE(m.apply(1, control::kv_command(kv::command{kv::op::put, "k", "v"})) != "malformed");
  auto with_addresses = m.snapshot();
  // The old format: the same three sections, without the fourth.
  codec::reader r{with_addresses};
  std::string kv_bytes, lock_bytes, cache_bytes, old;
  REQUIRE(r.get_string(kv_bytes));
  REQUIRE(r.get_string(lock_bytes));
  REQUIRE(r.get_string(cache_bytes));
  codec::put_string(old, kv_bytes);
  codec::put_string(old, lock_bytes);
  codec::put_string(old, cache_bytes);
  control_machine copy;
  CHECK(copy.restore(old));
  CHECK(copy.snapshot() == with_addresses);
}

TEST_CASE("malformed address commands are refused and change nothing") {
  recorder r;
  control_machine m{{}, {}, r.observer()};
  std::string no_id = control::member_address_command("", "127.0.0.1", 5000);
  std::string long_id = control::member_address_command(std::string(65, 'n'), "127.0.0.1", 5000);
  std::string no_host = control::member_address_command("node-4", "", 5000);
  std::string truncated = control::member_address_command("node-4", "127.0.0.1", 5000);
  truncated.pop_back();
  std::string trailing = control::member_address_command("node-4", "127.0.0.1", 5000) + "x";
  std::string big_port = "A";
  codec::put_string(big_port, "node-4");
  codec::put_string(big_port, "127.0.0.1");
  codec::put_u64(big_port, 70000);
  for (auto& bad : {no_id, long_id, no_host, truncated, trailing, big_port}) CHECK(m.apply(1, bad) == "malformed");
  CHECK(r.seen.empty());
  control_machine empty;
  CHECK(m.snapshot() == empty.snapshot());
}
