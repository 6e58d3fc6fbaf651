#include "actors/cache_service.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include <fmt/ranges.h>

#include "actors/deferred.hpp"
#include "actors/log.hpp"
#include "protocols/cache/cache_controller.hpp"
#include "protocols/cache/directory.hpp"
#include "protocols/cache/lease.hpp"
#include "protocols/ring/hash_ring.hpp"

namespace dsync {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr auto request_timeout = 4s;
constexpr auto max_tick_interval = 250ms;
constexpr auto redis_timeout = 3s;
constexpr auto memory_retry = 200ms;
constexpr auto lookup_retry = 200ms;
// A membership change is committed once the set of live members has been stable this long.
constexpr int stable_ticks = 4;

enum class component : uint8_t { controller = 0, directory = 1 };

using done_fn = std::function<void(cache::completion&)>;

struct pending_request {
  done_fn done;
  steady::time_point since;
  cache::op_kind kind;
};

struct service_state {
  cache_service_settings settings;
  peer_links_actor links;
  redis_actor redis;
  raft_host_actor raft;
  std::unique_ptr<cache::controller> ctrl;
  std::unique_ptr<cache::directory> dir;
  // This node's readable lines, for hits served without an actor (cache_mirror.hpp).
  std::shared_ptr<cache_mirror> mirror;
  uint64_t epoch = 0;
  std::vector<std::string> members;
  // Local deliveries, after the batch that produced them.
  std::deque<std::pair<std::string, cache::message>> local;
  bool draining = false;
  // Peers: node APIs, messages waiting for one, their last known state.
  std::map<std::string, node_api> apis;
  std::map<std::string, std::vector<std::string>> outbox;
  std::set<std::string> looking_up;
  std::map<std::string, std::string> peer_state;
  // Requests of clients, memory operations in flight.
  std::map<uint64_t, pending_request> requests;
  uint64_t next_request = 0;
  std::map<std::pair<uint8_t, uint64_t>, cache::memory_op> memory;
  deferred_calls later;
  std::string last_redis_error;
  steady::time_point last_redis_error_at;
  // Leader duties.
  bool leading = false;
  std::vector<std::string> proposed;
  int stable_for = 0;
  // A node rejoined (or came back) while this epoch was current: a newer one is due even if
  // the members stay the same, since the node's components start only in a newer epoch.
  uint64_t rejoin_after = 0;
  // This node's lease (protocols/cache/lease.hpp), and the timing derived from the peers'
  // failure detector: the tick, and how long the read fast path runs on after a tick.
  std::optional<cache::membership_lease> lease;
  // Partitions (lease.hpp, read_lease): round trips with the peers that could declare this
  // node dead; cached copies are served only while they are recent. `boot` names this
  // process in its Probes; Echo(dead) of a Probe sent before `fenced_at_ms` is ignored.
  std::optional<cache::read_lease> reads;
  uint64_t boot = 0;
  uint64_t fenced_at_ms = 0;
  // Peers this node declared dead (when) since its last round trip with them.
  std::map<std::string, uint64_t> declared_dead;
  steady::duration tick_interval = max_tick_interval;
  steady::duration mirror_lease = 1s;
  // Bumped when the components are replaced: answers for the old ones are ignored.
  uint64_t incarnation = 0;
  // Metrics.
  metrics::registry* registry = nullptr;
  std::map<std::string, uint64_t> published;
  metrics::histogram* get_seconds = nullptr;
  metrics::histogram* put_seconds = nullptr;
  uint64_t messages_sent = 0;
  static const char* name;
};
const char* service_state::name = "cache";

using self_ptr = cache_service_actor::stateful_pointer<service_state>;

void apply(self_ptr self, cache::effects fx, component from);

void send_remote(self_ptr self, const std::string& to, std::string bytes);

uint64_t now_ms() {
  return static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch()).count());
}

void lookup(self_ptr self, const std::string& to) {
  auto& st = self->state;
  if (!st.looking_up.insert(to).second) return;
  self->request(st.links, 3s, lookup_atom::value, to)
    .then(
      [=](node_api& api) {
        auto& st = self->state;
        st.looking_up.erase(to);
        st.apis[to] = api;
        auto waiting = std::move(st.outbox[to]);
        st.outbox.erase(to);
        for (auto& bytes : waiting) self->send(api, cache_msg_atom::value, st.settings.self, std::move(bytes));
      },
      [=](caf::error&) {
        auto& st = self->state;
        st.looking_up.erase(to);
        // The protocol needs every message between live nodes; keep them until the peer
        // is reachable or declared down (which drops them).
        if (st.outbox.count(to)) st.later.after(self, lookup_retry, cache_later_atom::value, [=] { lookup(self, to); });
      });
}

void send_remote(self_ptr self, const std::string& to, std::string bytes) {
  auto& st = self->state;
  if (auto a = st.apis.find(to); a != st.apis.end() && st.outbox[to].empty()) {
    st.outbox.erase(to);
    self->send(a->second, cache_msg_atom::value, st.settings.self, std::move(bytes));
    return;
  }
  st.outbox[to].push_back(std::move(bytes));
  lookup(self, to);
}

std::string redis_reason(self_ptr self) {
  auto& st = self->state;
  if (st.last_redis_error.empty() || steady::now() - st.last_redis_error_at > 10s) return {};
  return "; Redis at " + st.settings.redis_address + " is failing: " + st.last_redis_error;
}

void issue_memory(self_ptr self, uint8_t source, uint64_t id) {
  auto& st = self->state;
  auto m = st.memory.find({source, id});
  if (m == st.memory.end()) return;
  auto op = m->second;
  const auto incarnation = st.incarnation;  // ids restart with new components
  auto failed = [=](caf::error& err) {
    auto& st = self->state;
    if (st.incarnation != incarnation) return;
    st.last_redis_error = error_reason(err);
    st.last_redis_error_at = steady::now();
    // Memory operations are idempotent; the protocol waits until one succeeds.
    st.later.after(self, memory_retry, cache_later_atom::value, [=] { issue_memory(self, source, id); });
  };
  auto done = [=](cache::value v) {
    auto& st = self->state;
    if (st.incarnation != incarnation || !st.memory.erase({source, id})) return;
    if (source == static_cast<uint8_t>(component::directory)) {
      if (st.dir) apply(self, st.dir->on_memory_done(id, std::move(v)), component::directory);
    } else if (st.ctrl) {
      apply(self, st.ctrl->on_memory_done(id), component::controller);
    }
  };
  switch (op.kind) {
    case cache::memory_kind::read:
      self->request(st.redis, redis_timeout, redis_get_atom::value, op.key)
        .then([=](redis_value& v) { done(v.found ? cache::value{std::move(v.value)} : std::nullopt); }, failed);
      break;
    case cache::memory_kind::write:
      self->request(st.redis, redis_timeout, redis_set_atom::value, op.key, op.value)
        .then([=](bool) { done(std::nullopt); }, failed);
      break;
    case cache::memory_kind::erase:
      self->request(st.redis, redis_timeout, redis_del_atom::value, op.key)
        .then([=](bool) { done(std::nullopt); }, failed);
      break;
  }
}

bool may_serve_reads(self_ptr self);

void finish(self_ptr self, cache::completion& c) {
  auto& st = self->state;
  auto r = st.requests.find(c.request);
  if (r == st.requests.end()) return;
  // A read is answered from this node's lines (a hit) or from its own directory, both of
  // which are stale once a peer may have declared this node dead: no value without the
  // read lease, whatever the completion holds.
  if (c.kind == cache::op_kind::get && c.result != cache::status::error && !may_serve_reads(self)) {
    c.result = cache::status::error;
    c.val.reset();
    c.error = "cut_off";
  }
  auto req = std::move(r->second);
  st.requests.erase(r);
  auto seconds = std::chrono::duration<double>(steady::now() - req.since).count();
  if (req.kind == cache::op_kind::get) st.get_seconds->observe(seconds);
  else if (req.kind == cache::op_kind::put) st.put_seconds->observe(seconds);
  req.done(c);
}

// Hits served from the mirror count for the replacement order too (LRU/LFU).
void note_mirror_hits(self_ptr self) {
  auto& st = self->state;
  if (!st.ctrl) return;
  for (auto& [key, times] : st.mirror->take_uses()) st.ctrl->note_hits(key, times);
}

void drain_local(self_ptr self) {
  auto& st = self->state;
  // Messages that arrive before this node knows the first membership wait for it.
  if (st.draining || !st.ctrl) return;
  st.draining = true;
  while (!st.local.empty()) {
    auto [from, msg] = std::move(st.local.front());
    st.local.pop_front();
    if (cache::for_directory(msg.kind)) {
      if (st.dir) apply(self, st.dir->on_message(from, msg), component::directory);
    } else if (st.ctrl) {
      apply(self, st.ctrl->on_message(from, msg), component::controller);
    }
  }
  st.draining = false;
}

void count_message(self_ptr self, cache::msg_kind kind) {
  auto& st = self->state;
  ++st.messages_sent;
  st.registry
    ->get_counter("dsync_cache_messages_total", "Coherence messages sent, by type",
                  {{"type", std::string{cache::to_string(kind)}}})
    .inc();
}

void apply(self_ptr self, cache::effects fx, component from) {
  auto& st = self->state;
  // The mirror first: before any message of this step leaves (an Inv-Ack, a Recall-Ack,
  // data forwarded to a new owner, a Put) and before any completion is delivered, the
  // mirror must no longer serve what the step took away, and must serve what it wrote.
  if (from == component::controller && st.ctrl) st.mirror->sync(*st.ctrl, st.ctrl->take_changed());
  for (auto& e : fx.messages) {
    count_message(self, e.msg.kind);
    if (e.to == st.settings.self) st.local.emplace_back(st.settings.self, std::move(e.msg));
    else send_remote(self, e.to, cache::encode(e.msg));
  }
  for (auto& op : fx.memory) {
    auto key = std::make_pair(static_cast<uint8_t>(from), op.id);
    st.memory[key] = op;
    issue_memory(self, key.first, key.second);
  }
  for (auto& c : fx.completions) finish(self, c);
  drain_local(self);
}

cache::membership membership_of(uint64_t epoch, const std::vector<std::string>& members) {
  return cache::membership::from_ring(epoch, std::make_shared<const ring::hash_ring>(members));
}

// Forgets this node's controller and directory without acting on them: nothing of theirs
// is served, sent or written any more. Messages already queued here were for them too,
// unless there were none yet.
void drop_components(self_ptr self) {
  auto& st = self->state;
  st.mirror->clear();
  // Requests in flight belong to the old components: they fail and may be retried.
  auto requests = std::move(st.requests);
  st.requests.clear();
  st.memory.clear();
  if (st.ctrl) st.local.clear();
  st.ctrl.reset();
  st.dir.reset();
  ++st.incarnation;
  for (auto& [id, r] : requests) {
    cache::completion c;
    c.request = id;
    c.kind = r.kind;
    c.result = cache::status::error;
    c.error = "restarted";
    c.maybe_applied = true;
    r.done(c);
  }
}

// Creates this node's controller and directory, empty, in the current epoch: at the first
// membership, and when it rejoins after a pause (then only in an epoch newer than the one
// it was in, see fence()).
void start_components(self_ptr self) {
  auto& st = self->state;
  cache::controller::config cc;
  cc.self = st.settings.self;
  cache::parse(st.settings.protocol, cc.proto);
  cc.policy = st.settings.write_through ? cache::write_policy::write_through : cache::write_policy::write_back;
  cc.capacity = st.settings.capacity;
  cc.replacement = st.settings.lfu ? cache::replacement_kind::lfu : cache::replacement_kind::lru;
  cc.track_changes = true;  // for the mirror
  cache::directory::config dc;
  dc.self = st.settings.self;
  dc.proto = cc.proto;
  drop_components(self);
  st.ctrl = std::make_unique<cache::controller>(cc, membership_of(st.epoch, st.members));
  st.dir = std::make_unique<cache::directory>(dc, membership_of(st.epoch, st.members));
  apply(self, st.ctrl->start(), component::controller);
  apply(self, st.dir->start(), component::directory);
  drain_local(self);
  for (auto& [node, state] : st.peer_state)
    if (state == "down") {
      apply(self, st.ctrl->on_node_down(node), component::controller);
      apply(self, st.dir->on_node_down(node), component::directory);
    }
}

// Peers linked to this node now, and those it thinks down.
std::vector<std::string> linked_peers(self_ptr self) {
  std::vector<std::string> out;
  for (auto& [node, state] : self->state.peer_state)
    if (state == "alive" || state == "suspected") out.push_back(node);
  return out;
}

// The peers that could declare this node dead and act for it: the members of the current
// epoch (also those it thinks down: they may be cut off and think the same of it, until an
// epoch without them is committed) and every peer it is linked to (a home in a coming
// epoch). Reads are served only after a recent round trip with each (read_lease).
std::vector<std::string> lease_peers(self_ptr self) {
  auto& st = self->state;
  std::set<std::string> out(st.members.begin(), st.members.end());
  for (auto& p : linked_peers(self)) out.insert(p);
  out.erase(st.settings.self);
  return {out.begin(), out.end()};
}

bool may_serve_reads(self_ptr self) {
  auto& st = self->state;
  return st.reads->may_serve(lease_peers(self), now_ms());
}

// The read fast path serves while this node keeps ticking (its pause lease) and while its
// read lease lasts; recomputed on every tick, Echo and change of members or links.
void refresh_live(self_ptr self) {
  auto& st = self->state;
  auto until = steady::now() + st.mirror_lease;
  const uint64_t reads_until = st.reads->serving_until(lease_peers(self));
  if (reads_until != UINT64_MAX)
    until = std::min(until, steady::time_point{std::chrono::duration_cast<steady::duration>(
                              std::chrono::milliseconds{reads_until})});
  st.mirror->live_until(until);
}

// Probe to every lease peer (not while one is queued for it: the link will take it).
void send_probes(self_ptr self) {
  auto& st = self->state;
  auto bytes = cache::encode_probe(cache::probe_message{false, false, now_ms(), st.boot});
  for (auto& peer : lease_peers(self))
    if (!st.outbox.count(peer)) send_remote(self, peer, bytes);
}

std::set<std::string> down_peers(self_ptr self) {
  std::set<std::string> out;
  for (auto& [node, state] : self->state.peer_state)
    if (state == "down") out.insert(node);
  return out;
}

// Rejoin(e) to every linked peer that has not acknowledged it (again on each tick: the
// link may have dropped it; a peer answers every copy).
void send_rejoin(self_ptr self) {
  auto& st = self->state;
  if (!st.lease->fenced()) return;
  auto bytes = cache::encode_rejoin(st.lease->rejoin());
  for (auto& peer : linked_peers(self))
    if (!st.lease->acked(peer) && !st.outbox.count(peer)) send_remote(self, peer, bytes);
}

// Starts new components once the rejoin may end (cache::membership_lease::may_rejoin).
void try_rejoin(self_ptr self) {
  auto& st = self->state;
  if (!st.lease->fenced() ||
      !st.lease->may_rejoin(st.epoch, st.members, linked_peers(self), down_peers(self), now_ms()))
    return;
  log::info("cache", "rejoining the cache in epoch {}", st.epoch);
  st.lease->rejoined();
  start_components(self);
}

// This node was silent long enough to have been declared dead (stopped, stalled): its
// peers may have acted for it since, so what its components hold may be stale and what
// they would still send or write older than what happened meanwhile. They go without a
// word, and the node rejoins as a new incarnation in a newer epoch (protocols/cache/lease.hpp).
void fence(self_ptr self, uint64_t gap_ms, const std::string& by = {}) {
  auto& st = self->state;
  if (by.empty())
    log::warn("cache", "this node was unresponsive for {} ms and may have been declared dead: dropping its cache, "
              "rejoining in an epoch after {}", gap_ms, st.epoch);
  else
    log::warn("cache", "{} declared this node dead (cut off from it): dropping its cache, rejoining in an epoch "
              "after {}", by, st.epoch);
  drop_components(self);
  st.outbox.clear();  // the old components' messages
  st.local.clear();   // held for the next components: the peers may forget this node again
  st.fenced_at_ms = now_ms();
  st.reads->forget_all();
  st.declared_dead.clear();
  refresh_live(self);
  st.lease->fence(st.epoch, now_ms());
  st.rejoin_after = std::max(st.rejoin_after, st.epoch);
  send_rejoin(self);
}

// Every input first: a node that was stopped long enough to have been declared dead must
// not act on its old lines, not even once, whatever input comes first after the pause.
void awake(self_ptr self) {
  auto& st = self->state;
  auto now = now_ms();
  auto last = st.lease->last_input_ms();
  if (st.lease->on_input(now) && (st.ctrl || st.lease->fenced())) fence(self, now - last);
}

// Probe and Echo (lease.hpp, read_lease), in order with the coherence messages.
void on_probe_message(self_ptr self, const std::string& from, const cache::probe_message& m) {
  auto& st = self->state;
  if (!m.echo) return send_remote(self, from, cache::encode_probe(st.reads->answer(from, m)));
  if (m.boot != st.boot || m.stamp < st.fenced_at_ms) return;  // for an incarnation that is over
  if (m.dead) {
    // Both sides declared each other dead and this one moved on without the peer: nothing
    // here depends on it any more; the peer fences on this node's Echo(dead) instead.
    if (st.declared_dead.count(from) && !std::count(st.members.begin(), st.members.end(), from)) return;
    return fence(self, 0, from);
  }
  // An Echo of a Probe sent before the declaration (held up in the link) changes nothing.
  if (auto d = st.declared_dead.find(from); d != st.declared_dead.end() && m.stamp >= d->second)
    st.declared_dead.erase(d);
  st.reads->on_echo(from, m.stamp);
  refresh_live(self);
}

// Rejoin and Rejoin-Ack (lease.hpp), in order with the coherence messages from `from`.
void on_rejoin_message(self_ptr self, const std::string& from, const cache::rejoin_message& r) {
  auto& st = self->state;
  if (r.ack) {
    st.lease->on_ack(from, r);
    return try_rejoin(self);
  }
  const bool news = st.lease->on_rejoin(from, r);
  // A node this one thinks down was forgotten already; node_up comes with its link.
  const bool forget = news && st.ctrl && st.peer_state[from] != "down";
  if (news) {
    log::info("cache", "{} rejoins after a pause: forgetting its cache of epochs up to {}", from, r.epoch);
    st.reads->rejoined(from);
    st.local.erase(std::remove_if(st.local.begin(), st.local.end(),
                                  [&](const auto& l) { return l.first == from && l.second.epoch <= r.epoch; }),
                   st.local.end());
    st.rejoin_after = std::max(st.rejoin_after, st.epoch);
  }
  if (forget) {
    apply(self, st.ctrl->on_node_down(from), component::controller);
    apply(self, st.dir->on_node_down(from), component::directory);
  }
  // Before node_up: what the components send it from now on must come after the Ack.
  send_remote(self, from, cache::encode_rejoin(cache::membership_lease::ack_for(r, st.epoch)));
  if (forget) {
    apply(self, st.ctrl->on_node_up(from), component::controller);
    apply(self, st.dir->on_node_up(from), component::directory);
  }
}

void on_members(self_ptr self, uint64_t epoch, std::vector<std::string>& members) {
  auto& st = self->state;
  if (epoch <= st.epoch) return;
  st.epoch = epoch;
  st.members = members;
  log::info("cache", "directory epoch {}: homes {}", epoch, fmt::join(members, ","));
  refresh_live(self);
  if (st.lease->fenced()) return try_rejoin(self);
  if (!st.ctrl) return start_components(self);
  apply(self, st.ctrl->on_membership(membership_of(epoch, members)), component::controller);
  apply(self, st.dir->on_membership(membership_of(epoch, members)), component::directory);
}

void on_peer(self_ptr self, const member_status& m) {
  auto& st = self->state;
  if (m.node_id.empty() || m.node_id == st.settings.self) return;
  auto& prev = st.peer_state[m.node_id];
  auto was_down = prev == "down";
  prev = m.state;
  if (m.state == "down" && !was_down) {
    // Only components act on a death (a fenced node has none: its declaration is moot).
    if (st.ctrl) {
      st.reads->declared_dead(m.node_id);
      st.declared_dead[m.node_id] = now_ms();
    }
    st.apis.erase(m.node_id);
    st.outbox.erase(m.node_id);
    if (st.ctrl) {
      apply(self, st.ctrl->on_node_down(m.node_id), component::controller);
      apply(self, st.dir->on_node_down(m.node_id), component::directory);
    }
  } else if (m.state == "alive" && was_down) {
    st.apis.erase(m.node_id);  // a restarted node publishes a new handle
    // Its components start in a newer epoch only (a restart, or a rejoin after a pause).
    if (std::count(st.members.begin(), st.members.end(), m.node_id))
      st.rejoin_after = std::max(st.rejoin_after, st.epoch);
    if (st.ctrl) {
      apply(self, st.ctrl->on_node_up(m.node_id), component::controller);
      apply(self, st.dir->on_node_up(m.node_id), component::directory);
    }
  }
  if (m.state == "alive" || m.state == "suspected") send_probes(self);
  refresh_live(self);
  if (st.lease->fenced()) {
    send_rejoin(self);
    try_rejoin(self);
  }
}

// The leader commits a new cache membership once the live voters have differed from it
// for a moment.
void check_membership(self_ptr self) {
  auto& st = self->state;
  if (!st.leading || !st.raft) return;
  self->request(st.raft, 1s, status_atom::value)
    .then(
      [=](std::vector<group_status>& groups) {
        auto& st = self->state;
        if (groups.empty() || groups.front().group != control_group) return;
        std::vector<std::string> live;
        for (auto& v : groups.front().voters)
          if (v == st.settings.self || (st.peer_state.count(v) && st.peer_state[v] != "down")) live.push_back(v);
        std::sort(live.begin(), live.end());
        const bool rejoin_due = st.rejoin_after > 0 && st.epoch <= st.rejoin_after;
        if (live.empty() || (live == st.members && !rejoin_due)) {
          st.stable_for = 0;
          return;
        }
        if (live != st.proposed) {
          st.proposed = live;
          st.stable_for = 0;
        }
        if (++st.stable_for < stable_ticks) return;
        st.stable_for = 0;
        self->request(st.raft, 3s, propose_atom::value, control_group, control::cache_members_command(live))
          .then([](std::string&) {}, [](caf::error& err) {
            log::warn("cache", "committing a new cache membership: {}", error_reason(err));
          });
      },
      [](caf::error&) {});
}

// Counters of the components as Prometheus counters (they only grow).
void publish(self_ptr self, const char* name, const char* help, uint64_t value) {
  auto& st = self->state;
  auto& last = st.published[name];
  if (value > last) st.registry->get_counter(name, help).inc(static_cast<double>(value - last));
  last = value;
}

void publish_metrics(self_ptr self) {
  auto& st = self->state;
  if (!st.ctrl) return;
  auto& c = st.ctrl->stats();
  auto& d = st.dir->stats();
  const uint64_t hits = c.hits + st.mirror->hits();
  publish(self, "dsync_cache_hits_total", "Cache reads served from a line of this node", hits);
  publish(self, "dsync_cache_misses_total", "Cache reads that needed the home directory", c.misses);
  publish(self, "dsync_cache_evictions_total", "Lines evicted to make room", c.evictions);
  publish(self, "dsync_cache_write_backs_total", "Dirty data sent home or to Redis", c.write_backs);
  publish(self, "dsync_cache_invalidations_received_total", "Copies dropped on Inv, Recall or Fwd-GetM",
          c.invalidations);
  publish(self, "dsync_cache_invalidations_sent_total", "Inv and Recall sent by this node's directory",
          d.invalidations);
  publish(self, "dsync_cache_memory_reads_total", "Redis reads by this node's directory", d.mem_reads);
  publish(self, "dsync_cache_memory_writes_total", "Redis writes by this node's directory", d.mem_writes);
  auto ratio = hits + c.misses ? static_cast<double>(hits) / static_cast<double>(hits + c.misses) : 0.0;
  st.registry->get_gauge("dsync_cache_hit_ratio", "Hits / (hits + misses) since start").set(ratio);
  for (auto s : {cache::cache_state::M, cache::cache_state::O, cache::cache_state::E, cache::cache_state::S})
    st.registry
      ->get_gauge("dsync_cache_lines", "Lines of this node's cache by state", {{"state", std::string{cache::to_string(s)}}})
      .set(static_cast<double>(st.ctrl->lines_in(s)));
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  // The read fast path serves only while this node keeps ticking (awake() ran just now);
  // a pause longer than the lease ends it before anyone may have declared the node dead.
  // And only while its round trips with its peers are recent (a partition).
  send_probes(self);
  refresh_live(self);
  if (st.lease->fenced()) {
    send_rejoin(self);
    try_rejoin(self);
  }
  note_mirror_hits(self);
  check_membership(self);
  publish_metrics(self);
  self->delayed_send(self, st.tick_interval, cache_tick_atom::value);
}

// Submits a client operation; `done` gets its completion (or an error completion).
void submit(self_ptr self, cache::op_kind kind, const std::string& key, const std::string& value, done_fn done) {
  auto& st = self->state;
  if (!st.ctrl) {
    cache::completion c;
    c.result = cache::status::error;
    c.error = st.lease->fenced() ? "rejoining" : "not_serving";
    return done(c);
  }
  note_mirror_hits(self);  // so that a miss evicting a line sees the latest uses
  auto id = ++st.next_request;
  st.requests.emplace(id, pending_request{std::move(done), steady::now(), kind});
  apply(self, st.ctrl->submit(cache::client_op{id, kind, key, value}), component::controller);
  if (st.requests.count(id))
    st.later.after(self, request_timeout, cache_later_atom::value, [=] {
      auto& st = self->state;
      if (st.requests.count(id) && st.ctrl) apply(self, st.ctrl->expire(id), component::controller);
    });
}

caf::error failure(self_ptr self, const cache::completion& c) {
  if (c.error == "not_serving")
    return make_error(errc::unavailable, "the cache is not serving yet: waiting for the cluster's cache membership");
  if (c.error == "cut_off")
    return make_error(errc::unavailable, "this node has had no recent round trip with every peer of the cache "
                                         "(cut off?); it serves no cached copy until contact or a new membership");
  if (c.error == "rejoining")
    return make_error(errc::unavailable, "this node was unresponsive long enough to be declared dead and is rejoining "
                                         "the cache; retry shortly");
  if (c.error == cache::errc::invalid) return make_error(errc::bad_request, "invalid key or value");
  if (c.error == cache::errc::expired)
    return make_error(errc::unavailable, "no answer from the key's home directory within 4 s"
                                           + std::string{c.maybe_applied ? " (the write may still take effect)" : ""}
                                           + redis_reason(self));
  if (c.error == cache::errc::home_down)
    return make_error(errc::unavailable, "the key's home directory died during the request; it may or may not have "
                                         "taken effect");
  if (c.error == cache::errc::overloaded) return make_error(errc::unavailable, "too many cache requests pending");
  return make_error(errc::unavailable, "cache request failed: " + c.error);
}

std::optional<std::string> check(const std::string& key, const std::string* value) {
  if (key.empty()) return "the key is empty";
  if (key.size() > cache::max_key_bytes)
    return "the key is " + std::to_string(key.size()) + " bytes; the limit is " + std::to_string(cache::max_key_bytes);
  if (value && value->size() > cache::max_value_bytes)
    return "the value is " + std::to_string(value->size()) + " bytes; the limit is "
           + std::to_string(cache::max_value_bytes);
  return std::nullopt;
}

template <class T, class OnOk>
caf::result<T> run(self_ptr self, cache::op_kind kind, const std::string& key, const std::string& value, OnOk ok) {
  auto rp = self->make_response_promise<T>();
  submit(self, kind, key, value, [=](cache::completion& c) mutable {
    if (c.result == cache::status::error) {
      rp.deliver(failure(self, c));
      return;
    }
    ok(rp, c);
  });
  return rp;
}

}  // namespace

cache_service_actor spawn_cache_service(caf::actor_system& sys, cache_service_settings settings,
                                        peer_links_actor links, redis_actor redis, metrics::registry& registry,
                                        std::shared_ptr<cache_mirror> mirror) {
  if (!mirror) mirror = std::make_shared<cache_mirror>();
  return sys.spawn([=, &registry](self_ptr self) -> cache_service_actor::behavior_type {
    auto& st = self->state;
    st.settings = settings;
    st.mirror = mirror;
    st.links = links;
    st.redis = redis;
    st.registry = &registry;
    st.get_seconds = &registry.get_histogram(cache_get_seconds_metric, cache_get_seconds_help,
                                             metrics::latency_buckets_seconds());
    st.put_seconds = &registry.get_histogram("dsync_cache_put_seconds", "Cache put latency on this node",
                                             metrics::latency_buckets_seconds());
    // Peers may declare this node dead after down_ms of silence, which they count from the
    // last ping it answered, up to one ping interval before it stopped: a pause of down_ms -
    // ping_ms ends its lease. The tick (which keeps the fast path's lease) comes often enough
    // that a running node never gets near it; the fast path stops at half of it.
    const auto ping = std::chrono::milliseconds{settings.peer_ping_ms};
    const auto limit = std::max(std::chrono::milliseconds{settings.peer_down_ms} - ping, std::chrono::milliseconds{4});
    st.tick_interval = std::min<steady::duration>(max_tick_interval, limit / 4);
    st.mirror_lease = limit / 2;
    cache::membership_lease::config lc;
    lc.self = settings.self;
    lc.freeze_limit_ms = static_cast<uint64_t>(limit.count());
    lc.settle_ms = static_cast<uint64_t>(2 * ping.count());
    // Peers remember the last fence of this node they handled: numbers grow across restarts.
    lc.first_incarnation = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                   std::chrono::system_clock::now().time_since_epoch())
                                                   .count());
    st.lease.emplace(lc, now_ms());
    // Peers may declare this node dead down_ms after their last answer from it, which may
    // be one ping interval older than its last round trip with them: it serves reads for
    // half of that after a round trip (the other half is the margin), as its fast path.
    st.reads.emplace(static_cast<uint64_t>(limit.count()) / 2);
    st.boot = lc.first_incarnation;
    self->send(links, subscribe_atom::value, caf::actor_cast<membership_listener>(self));
    self->delayed_send(self, st.tick_interval, cache_tick_atom::value);
    return {
      [=](cache_get_atom, std::string& key) -> caf::result<cache_entry> {
        awake(self);
        if (auto bad = check(key, nullptr)) return make_error(errc::bad_request, *bad);
        return run<cache_entry>(self, cache::op_kind::get, key, {},
                                [=](caf::typed_response_promise<cache_entry>& rp, cache::completion& c) {
                                  if (c.result == cache::status::not_found || !c.val) {
                                    rp.deliver(make_error(errc::not_found, "no value for key " + key));
                                    return;
                                  }
                                  rp.deliver(cache_entry{key, *c.val, std::string{cache::to_string(c.state)}});
                                });
      },
      [=](cache_put_atom, std::string& key, std::string& value) -> caf::result<bool> {
        awake(self);
        if (auto bad = check(key, &value)) return make_error(errc::bad_request, *bad);
        return run<bool>(self, cache::op_kind::put, key, value,
                         [](caf::typed_response_promise<bool>& rp, cache::completion&) { rp.deliver(true); });
      },
      [=](cache_del_atom, std::string& key) -> caf::result<bool> {
        awake(self);
        if (auto bad = check(key, nullptr)) return make_error(errc::bad_request, *bad);
        return run<bool>(self, cache::op_kind::del, key, {},
                         [](caf::typed_response_promise<bool>& rp, cache::completion&) { rp.deliver(true); });
      },
      [=](cache_inval_atom, std::string& key) -> caf::result<bool> {
        awake(self);
        if (auto bad = check(key, nullptr)) return make_error(errc::bad_request, *bad);
        return run<bool>(self, cache::op_kind::invalidate, key, {},
                         [](caf::typed_response_promise<bool>& rp, cache::completion&) { rp.deliver(true); });
      },
      [=](cache_stats_atom) {
        auto& st = self->state;
        cache_stats out;
        out.node_id = st.settings.self;
        out.protocol = st.settings.protocol;
        out.write_policy = st.settings.write_through ? "write-through" : "write-back";
        out.eviction = st.settings.lfu ? "lfu" : "lru";
        out.capacity = st.settings.capacity;
        out.epoch = st.epoch;
        out.members = st.members;
        out.messages_sent = st.messages_sent;
        if (st.ctrl) {
          out.lines_m = st.ctrl->lines_in(cache::cache_state::M);
          out.lines_o = st.ctrl->lines_in(cache::cache_state::O);
          out.lines_e = st.ctrl->lines_in(cache::cache_state::E);
          out.lines_s = st.ctrl->lines_in(cache::cache_state::S);
          auto& c = st.ctrl->stats();
          out.hits = c.hits + st.mirror->hits();
          out.misses = c.misses;
          out.evictions = c.evictions;
          out.write_backs = c.write_backs;
          out.invalidations = c.invalidations;
          out.memory_reads = st.dir->stats().mem_reads;
          out.memory_writes = st.dir->stats().mem_writes;
        }
        return out;
      },
      [=](cache_msg_atom, std::string& from, std::string& bytes) {
        awake(self);
        auto& st = self->state;
        if (cache::rejoin_message r; cache::decode_rejoin(bytes, r)) return on_rejoin_message(self, from, r);
        if (cache::probe_message p; cache::decode_probe(bytes, p)) return on_probe_message(self, from, p);
        cache::message m;
        if (!cache::decode(bytes, m)) {
          log::warn("cache", "dropping a malformed coherence message from {}", from);
          return;
        }
        switch (st.lease->screen(from, m)) {
          case cache::membership_lease::verdict::deliver:
          case cache::membership_lease::verdict::hold: break;  // no components: it waits for the next ones
          case cache::membership_lease::verdict::refuse:
            return send_remote(self, from, cache::encode(*cache::refusal(m)));
          case cache::membership_lease::verdict::drop: return;
        }
        st.local.emplace_back(std::move(from), std::move(m));
        drain_local(self);
      },
      [=](cache_attach_atom, raft_host_actor& raft) { self->state.raft = std::move(raft); },
      [=](cache_members_atom, uint64_t epoch, std::vector<std::string>& members) {
        awake(self);
        on_members(self, epoch, members);
      },
      [=](cache_leader_atom, bool leading) { self->state.leading = leading; },
      [=](member_atom, const member_status& m) {
        awake(self);
        on_peer(self, m);
      },
      [=](cache_tick_atom) {
        awake(self);
        on_tick(self);
      },
      [=](cache_later_atom, uint64_t id) {
        awake(self);
        self->state.later.run(id);
      },
    };
  });
}

cache_observer observe_cache(cache_service_actor service) {
  cache_observer o;
  o.members = [service](uint64_t epoch, std::vector<std::string> members) {
    caf::anon_send(service, cache_members_atom::value, epoch, std::move(members));
  };
  o.leadership = [service](bool leading) { caf::anon_send(service, cache_leader_atom::value, leading); };
  return o;
}

}  // namespace dsync
