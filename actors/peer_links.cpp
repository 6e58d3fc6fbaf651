#include "actors/peer_links.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <utility>

#include "actors/log.hpp"

namespace dsync {

using namespace std::chrono_literals;

uint64_t wall_clock_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
}

peer_timing timing_from(const node_settings& s) {
  using ms = std::chrono::milliseconds;
  peer_timing t;
  t.ping_interval = ms{s.peer_ping_ms};
  t.suspect_after = ms{s.peer_suspect_ms};
  t.down_after = ms{s.peer_down_ms};
  t.handshake_timeout = ms{s.peer_down_ms};
  t.backoff_min = 50ms;
  // Short: a restarted peer waits for us to connect to it (see connects_first).
  t.backoff_max = 250ms;
  // Past the connecting peer's longest backoff, so that it normally links first.
  t.fallback_after = 2s;
  return t;
}

// Why only one peer of a pair connects. When both connect at once, CAF 0.17 closes one
// connection as redundant, but removes it from its routing table only later, through its
// message queue. If a new connection gets the closed socket's file descriptor meanwhile
// (connection handles are descriptors), that late removal deletes the new connection's
// entry: the peer's messages on it then arrive without a sender, so no request of the
// peer is ever answered, while the connection stays up and nothing reports a fault.
// With one connecting side nothing is closed as redundant.
bool connects_first(const node_info& self, const peer_address& peer) {
  return peer_address{self.host, self.port}.to_string() < peer.to_string();
}

std::optional<std::string> check_compatible(const node_info& mine, const node_info& theirs) {
  if (theirs.cluster_id != mine.cluster_id)
    return "cluster id " + theirs.cluster_id + " differs from ours (" + mine.cluster_id + ")";
  if (theirs.protocol != mine.protocol)
    return "protocol version " + std::to_string(theirs.protocol) + " differs from ours ("
           + std::to_string(mine.protocol) + ")";
  if (theirs.coherence_protocol != mine.coherence_protocol)
    return "coherence protocol " + theirs.coherence_protocol + " differs from ours ("
           + mine.coherence_protocol + ")";
  if (theirs.queue_shards != mine.queue_shards || theirs.queue_replicas != mine.queue_replicas)
    return "queue shards x replicas " + std::to_string(theirs.queue_shards) + "x" + std::to_string(theirs.queue_replicas)
           + " differ from ours (" + std::to_string(mine.queue_shards) + "x" + std::to_string(mine.queue_replicas) + ")";
  if (theirs.node_id == mine.node_id)
    return "node id " + theirs.node_id + " is ours too (node ids must be unique)";
  return std::nullopt;
}

namespace {

const char* const subsystem = "peers";

struct peer {
  peer_address address;
  bool connects = true;  // we make the connection (lower address); else the peer does
  node_api handle;  // empty while not linked
  std::string node_id;
  uint16_t http_port = 0;
  std::string state = "connecting";
  std::string reason;
  uint64_t since_ms = 0;
  uint64_t last_contact_ms = 0;
  caf::actor_clock::time_point last_contact;  // steady clock, for the silence checks
  uint64_t generation = 0;  // bumped by every new link attempt; older callbacks are stale
  bool attempt_in_flight = false;
  caf::timespan backoff{};
  uint64_t ping_seq = 0;
};

// A lookup of a peer whose link is being made: answered when it is made, failed when the
// attempt fails or after lookup_wait.
struct parked_lookup {
  std::string node_id;
  caf::typed_response_promise<node_api> rp;
  caf::actor_clock::time_point until;
};

// Long enough for a handshake between live nodes, short of the callers' 3 s.
constexpr auto lookup_wait = std::chrono::seconds(2);

// A peer that refused us (other cluster settings) is asked again this rarely: each refusal
// is logged as an error on its side.
constexpr auto refused_retry = std::chrono::seconds(2);

struct peer_links_state {
  node_info self;
  caf::strong_actor_ptr api;  // ours, sent in handshakes; links wait for it
  peer_timing timing;
  std::vector<peer> peers;
  std::vector<membership_listener> listeners;
  std::vector<parked_lookup> parked;
  std::map<std::string, std::vector<raft::message>> outbox;  // by node id, until raft_flush_atom
  std::minstd_rand rng{std::random_device{}()};
  bool flush_scheduled = false;
  caf::actor_clock::time_point last_ping_round{};
  metrics::registry* metrics = nullptr;
  metrics::histogram* ping_seconds = nullptr;
  metrics::counter* raft_sent = nullptr;
  metrics::counter* raft_batches = nullptr;
  metrics::counter* raft_dropped = nullptr;
  static const char* name;
};
const char* peer_links_state::name = "peer-links";

using self_ptr = peer_links_actor::stateful_pointer<peer_links_state>;

member_status status_of(const peer& p) {
  return member_status{p.address.to_string(), p.node_id, p.state, p.reason,
                       p.since_ms, p.last_contact_ms, p.http_port};
}

void update_gauges(self_ptr self) {
  auto& st = self->state;
  for (auto* state : {"connecting", "alive", "suspected", "down", "refused"}) {
    auto n = std::count_if(st.peers.begin(), st.peers.end(), [&](const peer& p) { return p.state == state; });
    st.metrics->get_gauge("dsync_peers", "Peers of this node by link state", {{"state", state}})
      .set(static_cast<double>(n));
  }
}

void set_state(self_ptr self, peer& p, const std::string& state, const std::string& reason) {
  if (p.state == state && p.reason == reason) return;
  auto label = p.node_id.empty() ? p.address.to_string() : p.node_id + "@" + p.address.to_string();
  if (state == "alive")
    log::info(subsystem, "peer {} is alive", label);
  else if (state == "refused")
    log::error(subsystem, "peer {} refused: {}", label, reason);
  else if (p.state != state)
    log::warn(subsystem, "peer {} is {}{}{}", label, state, reason.empty() ? "" : ": ", reason);
  p.state = state;
  p.reason = reason;
  p.since_ms = wall_clock_ms();
  self->state.metrics
    ->get_counter("dsync_peer_state_changes_total", "Link state changes of peers", {{"state", state}})
    .inc();
  update_gauges(self);
  auto status = status_of(p);
  for (auto& l : self->state.listeners) self->send(l, member_atom::value, status);
}

void connect(self_ptr self, size_t index);

caf::error unreachable(const std::string& node_id) {
  return make_error(errc::unavailable, "node " + node_id + " is not reachable from here");
}

const peer* linked(self_ptr self, const std::string& node_id) {
  for (auto& p : self->state.peers)
    if (p.handle && p.node_id == node_id) return &p;
  return nullptr;
}

// A link attempt under way may turn out to be to `node_id` (right after a restart a
// peer's id is known only from its handshake).
bool being_linked(self_ptr self, const std::string& node_id) {
  return std::any_of(self->state.peers.begin(), self->state.peers.end(), [&](const peer& p) {
    return p.attempt_in_flight && (p.node_id.empty() || p.node_id == node_id);
  });
}

// Answers the parked lookups that can be answered now.
void settle_parked(self_ptr self) {
  auto& parked = self->state.parked;
  auto now = self->clock().now();
  for (auto i = parked.begin(); i != parked.end();) {
    if (auto* p = linked(self, i->node_id)) {
      i->rp.deliver(p->handle);
    } else if (now >= i->until || !being_linked(self, i->node_id)) {
      i->rp.deliver(unreachable(i->node_id));
    } else {
      ++i;
      continue;
    }
    i = parked.erase(i);
  }
}

// fallback_after plus up to half of it at random: two nodes that both wait for the other
// (their configured addresses do not order them the same way, e.g. host names on one side
// and IP addresses on the other) do not then connect at the same moment.
caf::timespan fallback_delay(self_ptr self) {
  auto base = self->state.timing.fallback_after;
  std::uniform_int_distribution<caf::timespan::rep> extra{0, base.count() / 2};
  return base + caf::timespan{extra(self->state.rng)};
}

// Forgets the current link and tries again after the backoff.
void schedule_relink(self_ptr self, size_t index, caf::timespan delay) {
  auto& p = self->state.peers[index];
  if (p.handle) self->demonitor(p.handle.address());
  p.handle = nullptr;
  p.attempt_in_flight = false;
  auto gen = ++p.generation;
  if (!p.connects) delay = std::max(delay, fallback_delay(self));
  self->delayed_send(self, delay, retry_atom::value, uint64_t{index}, gen);
}

void fail_attempt(self_ptr self, size_t index, uint64_t gen, const std::string& state,
                  const std::string& reason) {
  auto& p = self->state.peers[index];
  if (gen != p.generation) return;
  auto& t = self->state.timing;
  p.backoff = p.backoff.count() == 0 ? t.backoff_min : std::min(p.backoff * 2, t.backoff_max);
  log::debug(subsystem, "link attempt {} to {} failed ({}): {}", gen, p.address.to_string(), state, reason);
  set_state(self, p, state, reason);
  self->state.metrics
    ->get_counter("dsync_peer_link_failures_total", "Failed attempts to link to a peer",
                  {{"peer", p.address.to_string()}})
    .inc();
  schedule_relink(self, index, state == "refused" ? caf::timespan{refused_retry} : p.backoff);
  settle_parked(self);
}

void handshake(self_ptr self, size_t index, uint64_t gen, node_api hdl) {
  self->request(hdl, self->state.timing.handshake_timeout, hello_atom::value, self->state.self, self->state.api)
    .then(
      [=](node_info& info) {
        auto& p = self->state.peers[index];
        if (gen != p.generation) return;
        p.node_id = info.node_id;
        p.http_port = info.http_port;
        if (auto why = check_compatible(self->state.self, info)) {
          self->state.metrics
            ->get_counter("dsync_peer_handshakes_refused_total",
                          "Handshakes refused because cluster settings disagree", {{"by", "us"}})
            .inc();
          fail_attempt(self, index, gen, "refused", *why);
          return;
        }
        bool fresh = !p.handle || p.handle.address() != hdl.address();  // else monitored already
        p.handle = hdl;
        p.attempt_in_flight = false;
        p.backoff = {};
        p.last_contact = self->clock().now();
        p.last_contact_ms = wall_clock_ms();
        if (fresh) self->monitor(hdl);
        set_state(self, p, "alive", "");
        settle_parked(self);
      },
      [=](caf::error& err) {
        if (err == errc::handshake_refused) {
          self->state.metrics
            ->get_counter("dsync_peer_handshakes_refused_total",
                          "Handshakes refused because cluster settings disagree", {{"by", "peer"}})
            .inc();
          fail_attempt(self, index, gen, "refused", "it refused us: " + error_reason(err));
          return;
        }
        fail_attempt(self, index, gen, "down", "handshake failed: " + self->system().render(err));
      });
}

void connect(self_ptr self, size_t index) {
  auto& p = self->state.peers[index];
  if (p.attempt_in_flight || p.handle) return;
  p.attempt_in_flight = true;
  auto gen = ++p.generation;
  auto mm = self->system().middleman().actor_handle();
  self->request(mm, self->state.timing.handshake_timeout, caf::connect_atom::value, p.address.host,
                p.address.port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>& ifs) {
        if (gen != self->state.peers[index].generation) return;
        if (!ptr || !self->system().assignable<node_api>(ifs)) {
          fail_attempt(self, index, gen, "down", "no dsync node API at this address");
          return;
        }
        handshake(self, index, gen, caf::actor_cast<node_api>(std::move(ptr)));
      },
      [=](caf::error& err) {
        fail_attempt(self, index, gen, "down", "cannot connect: " + self->system().render(err));
      });
}

// Links over the connection the peer made: its handshake brought its node API.
void adopt(self_ptr self, size_t index, node_api hdl) {
  auto& p = self->state.peers[index];
  p.attempt_in_flight = true;
  handshake(self, index, ++p.generation, std::move(hdl));
}

// Starts linking to a peer that is not linked: at once if we connect, else after a wait
// for the peer's connection.
void start_link(self_ptr self, size_t index) {
  auto& p = self->state.peers[index];
  if (p.connects) connect(self, index);
  else schedule_relink(self, index, caf::timespan{0});  // which waits fallback_delay for such a peer
}

// A member this node was not configured with (or not yet): returns its index.
size_t add_peer(self_ptr self, const peer_address& at, const std::string& node_id = {}) {
  auto& st = self->state;
  peer p;
  p.address = at;
  p.node_id = node_id;
  p.connects = connects_first(st.self, at);
  p.since_ms = wall_clock_ms();
  st.peers.push_back(p);
  update_gauges(self);
  return st.peers.size() - 1;
}

// Silence of a peer counts from its last contact; if this node itself did not run for a
// while (SIGSTOP, a stalled VM), that silence says nothing about the peers, and judging
// them by it would declare every peer down on waking: they get a fresh window instead.
void forgive_own_pause(self_ptr self, caf::actor_clock::time_point now) {
  auto& st = self->state;
  auto last = std::exchange(st.last_ping_round, now);
  if (last == caf::actor_clock::time_point{} || now - last < st.timing.suspect_after) return;
  log::warn(subsystem, "this node did not run for {} ms: its peers are judged afresh",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count());
  for (auto& p : st.peers)
    if (p.handle) p.last_contact = std::max(p.last_contact, now - st.timing.ping_interval);
}

// A peer's message proves it is there now.
void heard_from(self_ptr self, peer& p) {
  p.last_contact = self->clock().now();
  p.last_contact_ms = wall_clock_ms();
  if (p.state == "suspected") set_state(self, p, "alive", "");
}

void ping_round(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  forgive_own_pause(self, now);
  for (size_t i = 0; i < st.peers.size(); ++i) {
    auto& p = st.peers[i];
    if (!p.handle) continue;
    auto silent = now - p.last_contact;
    if (silent >= st.timing.down_after) {
      set_state(self, p, "down", "no answer for " + std::to_string(
                                   std::chrono::duration_cast<std::chrono::milliseconds>(silent).count())
                                   + " ms");
      p.backoff = {};
      schedule_relink(self, i, st.timing.backoff_min);
      continue;
    }
    if (silent >= st.timing.suspect_after && p.state == "alive")
      set_state(self, p, "suspected", "no answer for " + std::to_string(
                                         std::chrono::duration_cast<std::chrono::milliseconds>(silent).count())
                                         + " ms");
    auto gen = p.generation;
    auto sent = now;
    self->request(p.handle, st.timing.down_after, ping_atom::value, st.self.node_id, ++p.ping_seq)
      .then(
        [=](bool linked_there) {
          auto& q = self->state.peers[i];
          if (gen != q.generation) return;
          heard_from(self, q);
          self->state.ping_seconds->observe(std::chrono::duration<double>(q.last_contact - sent).count());
          if (!linked_there && !q.attempt_in_flight) {
            log::info(subsystem, "peer {} dropped its link to us: handshaking again", q.node_id);
            q.attempt_in_flight = true;
            handshake(self, i, ++q.generation, q.handle);
          }
        },
        [](caf::error&) { /* silence is judged by the next round */ });
  }
}

}  // namespace

peer_links_actor spawn_peer_links(caf::actor_system& sys, node_info self_info,
                                  std::vector<peer_address> addresses, bool joining, peer_timing timing,
                                  metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> peer_links_actor::behavior_type {
    auto& st = self->state;
    st.self = self_info;
    st.timing = timing;
    st.metrics = &registry;
    st.ping_seconds = &registry.get_histogram("dsync_peer_ping_seconds", "Round trip of peer pings",
                                              metrics::latency_buckets_seconds());
    for (auto& a : addresses) {
      auto i = add_peer(self, a);
      if (joining) st.peers[i].connects = true;  // the members do not know us yet
    }
    st.raft_sent = &registry.get_counter("dsync_raft_messages_sent_total", "Raft messages sent to peers");
    st.raft_batches = &registry.get_counter("dsync_raft_batches_sent_total",
                                            "Sends of Raft messages to peers (each carries all ready for that peer)");
    st.raft_dropped = &registry.get_counter("dsync_raft_messages_unroutable_total",
                                            "Raft messages dropped because their peer was not linked");
    update_gauges(self);
    self->set_down_handler([=](caf::down_msg& dm) {
      auto& peers = self->state.peers;
      for (size_t i = 0; i < peers.size(); ++i) {
        auto& p = peers[i];
        if (!p.handle || p.handle.address() != dm.source) continue;
        p.handle = nullptr;  // already gone: nothing to demonitor
        set_state(self, p, "down", "connection lost: " + self->system().render(dm.reason));
        p.backoff = {};
        schedule_relink(self, i, self->state.timing.backoff_min);
      }
    });
    self->send(self, tick_atom::value);
    return {
      [=](members_atom) {
        std::vector<member_status> out;
        for (auto& p : self->state.peers) out.push_back(status_of(p));
        return out;
      },
      [=](subscribe_atom, membership_listener listener) {
        for (auto& p : self->state.peers) self->send(listener, member_atom::value, status_of(p));
        self->state.listeners.push_back(std::move(listener));
      },
      [=](start_atom, node_api& api) {
        auto& st = self->state;
        if (st.api) return;
        st.api = caf::actor_cast<caf::strong_actor_ptr>(api);
        for (size_t i = 0; i < st.peers.size(); ++i) start_link(self, i);
      },
      [=](hello_atom, const node_info& info, node_api& api) {
        auto& peers = self->state.peers;
        peer_address from{info.host, info.port};
        auto known = std::any_of(peers.begin(), peers.end(), [&](const peer& p) {
          return same_address(p.address, from) || (!p.node_id.empty() && p.node_id == info.node_id);
        });
        if (!known) {
          // A member we were not configured with (one added to a running cluster): link to it too.
          log::info(subsystem, "learned peer {} at {} from its handshake", info.node_id, from.to_string());
          add_peer(self, from);
        }
        for (size_t i = 0; i < peers.size(); ++i) {
          auto& p = peers[i];
          if (!same_address(p.address, peer_address{info.host, info.port}) && !(p.node_id == info.node_id && !p.node_id.empty())) continue;
          p.node_id = info.node_id;
          p.http_port = info.http_port;
          if (p.handle && api && p.handle.address() != api.address()) {
            // Restarted before we noticed (its old connection's down message is still on
            // its way): link over its new connection now rather than after our fallback wait.
            log::info(subsystem, "peer {} is back with a new API: linking to it", info.node_id);
            self->demonitor(p.handle.address());
            p.handle = nullptr;
            p.attempt_in_flight = false;
          } else if (p.handle) {
            // It made a new connection to us (it had found us silent): we are linked already.
            heard_from(self, p);
          }
          if (!p.handle && !p.attempt_in_flight && self->state.api && api) {
            p.backoff = {};
            adopt(self, i, api);
          }
        }
      },
      [=](address_atom, const std::string& node_id, const std::string& host, uint16_t port) {
        auto& st = self->state;
        peer_address at{host, port};
        if (node_id == st.self.node_id) return;
        for (auto& p : st.peers)
          if (same_address(p.address, at) || p.node_id == node_id) return;
        log::info(subsystem, "learned member {} at {} from the control group", node_id, at.to_string());
        auto i = add_peer(self, at, node_id);
        if (st.api) start_link(self, i);
      },
      [=](ping_atom, const std::string& from, uint64_t) {
        return linked(self, from) != nullptr || being_linked(self, from);
      },
      [=](raft_atom, raft::message& m) {
        auto& st = self->state;
        st.outbox[m.to].push_back(std::move(m));
        if (st.flush_scheduled) return;
        st.flush_scheduled = true;
        self->send(self, raft_flush_atom::value);
      },
      [=](raft_flush_atom) {
        auto& st = self->state;
        st.flush_scheduled = false;
        for (auto& [to, msgs] : st.outbox) {
          if (msgs.empty()) continue;
          if (auto* p = linked(self, to)) {
            st.raft_sent->inc(static_cast<double>(msgs.size()));
            st.raft_batches->inc();
            self->send(p->handle, raft_atom::value, std::move(msgs));
          } else {
            st.raft_dropped->inc(static_cast<double>(msgs.size()));
          }
          msgs.clear();
        }
      },
      [=](lookup_atom, const std::string& node_id) -> caf::result<node_api> {
        if (auto* p = linked(self, node_id)) return p->handle;
        // A peer whose link is being made (just after a restart, its node knows the leader
        // from the leader's own messages before its link back is up): wait for it rather
        // than fail a request that would succeed a moment later. Not for a peer known down.
        if (!being_linked(self, node_id)) return unreachable(node_id);
        auto rp = self->make_response_promise<node_api>();
        self->state.parked.push_back(parked_lookup{node_id, rp, self->clock().now() + lookup_wait});
        return rp;
      },
      [=](tick_atom) {
        settle_parked(self);
        ping_round(self);
        self->delayed_send(self, self->state.timing.ping_interval, tick_atom::value);
      },
      [=](retry_atom, uint64_t index, uint64_t gen) {
        if (index >= self->state.peers.size()) return;
        auto& p = self->state.peers[index];
        if (gen != p.generation || p.handle) return;
        p.attempt_in_flight = false;
        connect(self, index);
      },
    };
  });
}

member_observer observe_members(peer_links_actor links) {
  member_observer o;
  o.address = [links](const std::string& node_id, const std::string& host, uint16_t port) {
    caf::anon_send(links, address_atom::value, node_id, host, port);
  };
  return o;
}

}  // namespace dsync
