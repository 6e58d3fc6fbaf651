// Peer links between two actor systems in one process, over real loopback sockets:
// handshake, subscription events, refusal of an incompatible peer, loss of a peer, which
// side connects.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "actors/node_actor.hpp"
#include "actors/peer_links.hpp"

using namespace dsync;
using namespace std::chrono_literals;

namespace {

struct test_config : caf::actor_system_config {
  test_config() {
    register_types(*this);
    load<caf::io::middleman>();
    set("scheduler.max-threads", 2);
  }
};

node_info info_of(const std::string& id, const std::string& cluster = "c1") {
  node_info i;
  i.node_id = id;
  i.cluster_id = cluster;
  i.software = software_version;
  i.coherence_protocol = "MESI";
  i.host = "127.0.0.1";
  return i;
}

// fallback_after is long, so that a link made within it was made by the connecting side.
peer_timing fast_timing() {
  return peer_timing{50ms, 300ms, 800ms, 800ms, 20ms, 200ms, 2500ms};
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// One node: an actor system with its node actor published on a free loopback port.
struct test_node {
  metrics::registry registry;  // outlives the actor system, whose actors record into it
  test_config cfg;
  caf::actor_system sys{cfg};
  node_info info;
  peer_links_actor links;
  node_api node;
  uint16_t port = 0;

  test_node(node_info self, std::vector<peer_address> peers, uint16_t at = free_port(), bool joining = false)
      : info(std::move(self)) {
    info.port = at;
    links = spawn_peer_links(sys, info, std::move(peers), joining, fast_timing(), registry);
    node = spawn_node_actor(sys, info, links, raft_host_actor{}, lock_service_actor{}, queue_service_actor{},
                            cache_service_actor{}, registry);  // no Raft, locks, queues or cache here
    caf::anon_send(links, start_atom::value, node);
    auto p = sys.middleman().publish(node, at, "127.0.0.1", true);
    REQUIRE(p);
    port = *p;
  }
  peer_address address() const { return peer_address{"127.0.0.1", port}; }

  double link_failures(const peer_address& to) {
    return registry
      .get_counter("dsync_peer_link_failures_total", "Failed attempts to link to a peer", {{"peer", to.to_string()}})
      .value();
  }
  ~test_node() { stop(); }
  void stop() {
    if (!node) return;
    sys.middleman().unpublish(node, port);
    caf::anon_send_exit(node, caf::exit_reason::kill);
    caf::anon_send_exit(links, caf::exit_reason::kill);
    node = nullptr;
  }
};

// Receives the membership events of a node's links.
struct watcher {
  caf::scoped_actor self;
  explicit watcher(test_node& n) : self{n.sys} {
    self->send(n.links, subscribe_atom::value, caf::actor_cast<membership_listener>(self));
  }

  // Waits for the next event whose state is `state`, skipping others.
  member_status next(const std::string& state) {
    member_status found;
    bool done = false;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      self->receive([&](member_atom, member_status& m) {
                      if (m.state == state) {
                        found = m;
                        done = true;
                      }
                    },
                    caf::after(std::chrono::milliseconds(100)) >> [] {});
    }
    REQUIRE_MESSAGE(done, "no member event with state " << state);
    return found;
  }
};

}  // namespace

TEST_CASE("a peer becomes alive after the handshake, subscribers see it, and see it go down") {
  auto a = std::make_unique<test_node>(info_of("a"), std::vector<peer_address>{});
  test_node b{info_of("b"), {peer_address{"127.0.0.1", a->port}}};
  watcher events{b};
  auto alive = events.next("alive");
  CHECK(alive.node_id == "a");
  CHECK(alive.address == "127.0.0.1:" + std::to_string(a->port));
  CHECK(alive.last_contact_ms > 0);

  std::vector<member_status> members;
  events.self->request(b.links, 2s, members_atom::value).receive(
    [&](std::vector<member_status>& m) { members = m; }, [](caf::error& e) { FAIL(caf::to_string(e)); });
  REQUIRE(members.size() == 1);
  CHECK(members[0].state == "alive");
  CHECK(b.registry.get_gauge("dsync_peers", "Peers of this node by link state", {{"state", "alive"}}).value() == 1);

  a.reset();  // the whole actor system of a goes away, closing the connection
  auto down = events.next("down");
  CHECK(down.node_id == "a");
  CHECK_FALSE(down.reason.empty());
}

// Two ports, the first the lower address: the side that connects.
std::pair<uint16_t, uint16_t> ordered_ports() {
  auto x = free_port();
  auto y = free_port();
  while (y == x) y = free_port();
  auto addr = [](uint16_t p) { return peer_address{"127.0.0.1", p}.to_string(); };
  if (addr(y) < addr(x)) std::swap(x, y);
  return {x, y};
}

TEST_CASE("of two peers configured with each other only the lower connects; the other links over its connection") {
  auto [low, high] = ordered_ports();
  // The higher starts first, so that the lower finds it listening.
  test_node h{info_of("h"), {peer_address{"127.0.0.1", low}}, high};
  test_node l{info_of("l"), {peer_address{"127.0.0.1", high}}, low};
  CHECK(connects_first(l.info, h.address()));
  CHECK_FALSE(connects_first(h.info, l.address()));
  watcher on_h{h};
  watcher on_l{l};
  auto t0 = std::chrono::steady_clock::now();
  CHECK(on_l.next("alive").node_id == "h");
  CHECK(on_h.next("alive").node_id == "l");
  // Well within fallback_after: h did not wait to connect itself, it used l's connection.
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(h.link_failures(l.address()) == 0);
}

TEST_CASE("a higher peer that the lower does not know connects itself after fallback_after") {
  auto [low, high] = ordered_ports();
  test_node l{info_of("l"), {}, low};
  test_node h{info_of("h"), {peer_address{"127.0.0.1", low}}, high};
  watcher on_h{h};
  watcher on_l{l};
  auto t0 = std::chrono::steady_clock::now();
  CHECK(on_h.next("alive").node_id == "l");
  CHECK(std::chrono::steady_clock::now() - t0 >= 2s);  // waited for l first
  // l learned h from its handshake and linked back over h's connection.
  CHECK(on_l.next("alive").node_id == "h");
}

TEST_CASE("a node joining a running cluster connects at once, even to lower addresses") {
  auto [low, high] = ordered_ports();
  test_node l{info_of("l"), {}, low};
  test_node h{info_of("h"), {peer_address{"127.0.0.1", low}}, high, true};
  watcher on_h{h};
  auto t0 = std::chrono::steady_clock::now();
  CHECK(on_h.next("alive").node_id == "l");
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("a peer of another cluster is refused on both sides, with the reason") {
  test_node a{info_of("a", "c1"), {}};
  test_node b{info_of("b", "c2"), {peer_address{"127.0.0.1", a.port}}};
  watcher events{b};
  auto refused = events.next("refused");
  CHECK(refused.reason.find("cluster id") != std::string::npos);
  CHECK(a.registry.get_counter("dsync_peer_handshakes_refused_total",
                               "Handshakes refused because cluster settings disagree", {{"by", "us"}})
          .value() >= 1);
}

TEST_CASE("check_compatible names the setting that differs") {
  auto mine = info_of("a");
  CHECK_FALSE(check_compatible(mine, info_of("b")));
  auto other = info_of("b");
  other.coherence_protocol = "MOESI";
  CHECK(*check_compatible(mine, other) == "coherence protocol MOESI differs from ours (MESI)");
  other = info_of("b");
  other.protocol = 99;
  CHECK(check_compatible(mine, other)->find("protocol version 99") != std::string::npos);
  CHECK(check_compatible(mine, info_of("a"))->find("node id a is ours too") != std::string::npos);
  CHECK(check_compatible(mine, info_of("b", "zz"))->find("cluster id zz") != std::string::npos);
}
