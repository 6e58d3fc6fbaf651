// A test cluster for the coherence protocols: every node has a cache controller and a
// directory; between components, FIFO channels per (sender component, receiver
// component) — what CAF guarantees between two actors — and nothing more; a memory
// (the Redis stand-in) whose operations complete when the driver says so.
//
// The driver decides everything (which channel head is delivered, which memory operation
// completes, who dies): the scenario scripts do it by hand, the simulation at random.
// Every message crosses the wire as bytes (encode, then decode) unless turned off.
// Every node also keeps a cache_mirror (actors/cache_mirror.hpp) of its readable lines,
// synced after every step of its controller as the cache service actor does, so that tests
// can read hits the way the HTTP fast path does and check the mirror never lags.
//
// A node may also be stopped (freeze) long enough for its peers to declare it dead, and
// resumed: it then drops its components and rejoins as the cache service does it
// (protocols/cache/lease.hpp): Rejoin to every peer, which forgets the old incarnation and
// acknowledges; meanwhile the messages for it are screened by its lease; new components
// start once the lease allows it.
// Header-only; used by tests/unit/cache and tests/sim/cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "actors/cache_mirror.hpp"
#include "protocols/cache/cache_controller.hpp"
#include "protocols/cache/directory.hpp"
#include "protocols/cache/lease.hpp"
#include "protocols/cache/messages.hpp"

namespace dsync::cache::testing {

// One end of a channel: a node's controller (dir == false) or directory (dir == true).
struct endpoint {
  std::string node;
  bool dir = false;
  std::string name() const { return node + (dir ? ".dir" : ".ctl"); }
  friend bool operator<(const endpoint& a, const endpoint& b) { return std::tie(a.node, a.dir) < std::tie(b.node, b.dir); }
  friend bool operator==(const endpoint& a, const endpoint& b) { return a.node == b.node && a.dir == b.dir; }
};

struct channel_id {
  endpoint from, to;
  std::string name() const { return from.name() + "->" + to.name(); }
  friend bool operator<(const channel_id& a, const channel_id& b) { return std::tie(a.from, a.to) < std::tie(b.from, b.to); }
};

struct memory_request {
  std::string node;  // whose component issued it
  bool dir = true;   // the directory (else the controller)
  memory_op op;
};

// What the driver observed (for printing and history checks).
struct event_log {
  std::vector<std::string> lines;
  void add(std::string s) { lines.push_back(std::move(s)); }
};

class cluster {
 public:
  struct options {
    protocol proto = protocol::mesi;
    write_policy policy = write_policy::write_back;
    size_t capacity = 16;
    replacement_kind replacement = replacement_kind::lru;
    std::vector<std::string> nodes;
    bool wire = true;  // encode and decode every message
  };

  struct node {
    std::string id;
    bool alive = true;
    std::unique_ptr<controller> ctl;  // null while it rejoins
    std::unique_ptr<directory> dir;
    // Its readable lines, synced after every controller step (always live).
    std::unique_ptr<cache_mirror> mirror = std::make_unique<cache_mirror>();
    // Stopped: nothing reaches it and it does nothing; what it sent is on the wire.
    bool frozen = false;
    std::unique_ptr<membership_lease> lease;
    // While it rejoins: messages held for the new components, the newest epoch it was
    // given, and the peers its own failure detector thinks down (all, after the pause).
    std::deque<std::pair<std::string, message>> held;
    uint64_t known_epoch = 0;
    std::set<std::string> thinks_down;
    // Takes part in the protocol now.
    bool running() const { return alive && !frozen && ctl; }
  };

  explicit cluster(options o, membership first) : opts_(std::move(o)) {
    epochs_[first.epoch] = first;
    for (const auto& id : opts_.nodes) add_node(id, first);
    for (const auto& [id, n] : nodes_) {
      index_[id] = static_cast<int>(ids_.size());
      ids_.push_back(id);
    }
    const size_t e = ids_.size() * 2;
    chans_.resize(e * e);
    pos_.assign(e * e, -1);
  }

  const options& opts() const { return opts_; }
  std::map<std::string, node>& nodes() { return nodes_; }
  node& at(const std::string& id) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) throw std::runtime_error("no node " + id);
    return it->second;
  }
  bool alive(const std::string& id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.alive;
  }
  std::vector<std::string> live_nodes() const {
    std::vector<std::string> out;
    for (const auto& [id, n] : nodes_)
      if (n.alive) out.push_back(id);
    return out;
  }
  // Live nodes with their components, not stopped.
  std::vector<std::string> running_nodes() const {
    std::vector<std::string> out;
    for (const auto& [id, n] : nodes_)
      if (n.running()) out.push_back(id);
    return out;
  }
  bool running(const std::string& id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.running();
  }

  // Starts every node's components (they announce the first epoch).
  void start_all() {
    for (auto& [id, n] : nodes_) {
      route({id, false}, n.ctl->start());
      route({id, true}, n.dir->start());
    }
  }

  // --- inputs -----------------------------------------------------------------------

  void submit(const std::string& at_node, client_op op) {
    if (!alive(at_node)) throw std::logic_error(at_node + " is dead");
    route({at_node, false}, at(at_node).ctl->submit(std::move(op)));
  }
  void expire(const std::string& at_node, uint64_t request) { route({at_node, false}, at(at_node).ctl->expire(request)); }

  // Channels with messages, in a fixed order (by sender, then receiver).
  std::vector<channel_id> channels_with_messages() const {
    std::vector<int> idx = nonempty_;
    std::sort(idx.begin(), idx.end());
    std::vector<channel_id> out;
    for (int c : idx) out.push_back(id_of(c));
    return out;
  }
  // The same without sorting, for random picks: count and i-th.
  size_t busy_channels() const { return nonempty_.size(); }
  channel_id busy_channel(size_t i) const { return id_of(nonempty_.at(i)); }
  const std::deque<message>* channel(const channel_id& id) const { return &chans_[index_of(id)]; }

  // Delivers the head of channel `id`. Returns what was delivered.
  message deliver(const channel_id& id) {
    const int c = index_of(id);
    auto& q = chans_[c];
    message m = std::move(q.front());
    q.pop_front();
    if (q.empty()) unmark(c);
    ++delivered_;
    node& n = at(id.to.node);
    if (!n.alive) return m;  // sent to a node that died meanwhile
    if (n.frozen) throw std::logic_error("delivery to a stopped node");
    if (!n.ctl) screen(n, id.from.node, m);
    else if (id.to.dir) route(id.to, n.dir->on_message(id.from.node, m));
    else route(id.to, n.ctl->on_message(id.from.node, m));
    deliver_ready_downs();
    return m;
  }
  // Whether the head of `id` may be delivered now (a stopped node receives nothing).
  bool deliverable(const channel_id& id) const { return !nodes_.at(id.to.node).frozen; }

  const std::vector<memory_request>& memory_in_flight() const { return mem_; }
  // Completes memory_in_flight()[i] against the memory.
  memory_request complete_memory(size_t i) {
    memory_request r = mem_.at(i);
    mem_.erase(mem_.begin() + static_cast<long>(i));
    value v = apply_memory(r.op);
    if (alive(r.node)) {
      if (r.dir) route({r.node, true}, at(r.node).dir->on_memory_done(r.op.id, v));
      else route({r.node, false}, at(r.node).ctl->on_memory_done(r.op.id));
    }
    return r;
  }

  const std::map<std::string, std::string>& memory() const { return memory_; }
  value memory_value(const std::string& key) const {
    auto it = memory_.find(key);
    return it == memory_.end() ? value{} : value{it->second};
  }
  uint64_t memory_writes() const { return memory_writes_; }
  uint64_t memory_reads() const { return memory_reads_; }
  uint64_t memory_erases() const { return memory_erases_; }

  // Epochs: define one, then hand it to components one by one (or all at once).
  void define_epoch(const membership& m) { epochs_[m.epoch] = m; }
  const membership& epoch(uint64_t e) const { return epochs_.at(e); }
  uint64_t last_epoch() const { return epochs_.rbegin()->first; }
  void give_epoch(const endpoint& ep, uint64_t e) {
    node& n = at(ep.node);
    if (!n.alive) return;
    if (n.frozen) throw std::logic_error("epoch given to a stopped node");
    if (!n.ctl) {  // rejoining: its next components start in the newest epoch it knows
      n.known_epoch = std::max(n.known_epoch, e);
      try_rejoin(n);
      return;
    }
    if (ep.dir) route(ep, n.dir->on_membership(epochs_.at(e)));
    else route(ep, n.ctl->on_membership(epochs_.at(e)));
  }

  // The memory operations in flight of a node that dies or stops: each lands now or never.
  void settle_memory_of(const std::string& id, const std::function<bool(const memory_op&)>& lands) {
    for (size_t i = 0; i < mem_.size();) {
      if (mem_[i].node == id) {
        if (lands(mem_[i].op)) apply_memory(mem_[i].op);
        mem_.erase(mem_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
  }

  // `id` dies. Of each channel from it, the last `lost(channel)` messages are lost (in
  // flight in its send buffers); channels to it are emptied; each of its memory
  // operations in flight lands or not as `lands(op)` says. Every live component gets
  // node_down(id) once all messages from `id` to it were delivered (deliver() does it).
  void kill(const std::string& id, const std::function<size_t(const channel_id&, size_t)>& lost,
            const std::function<bool(const memory_op&)>& lands) {
    node& n = at(id);
    n.alive = false;
    for (int c = 0; c < static_cast<int>(chans_.size()); ++c) {
      auto& q = chans_[c];
      if (q.empty()) continue;
      const channel_id ch = id_of(c);
      if (ch.to.node == id) q.clear();
      if (ch.from.node == id) {
        size_t drop = std::min(q.size(), lost(ch, q.size()));
        for (size_t i = 0; i < drop; ++i) q.pop_back();
      }
      if (q.empty()) unmark(c);
    }
    settle_memory_of(id, lands);
    for (const auto& [other, o] : nodes_) {
      if (other == id || !o.alive) continue;
      downs_.emplace_back(endpoint{other, false}, id);
      downs_.emplace_back(endpoint{other, true}, id);
    }
    deliver_ready_downs();
  }
  bool downs_pending() const { return !downs_.empty(); }

  // `id` comes back empty, in epoch `e` (which must list it); everyone else learns that
  // it is up (node_up) at once. Precondition: every node_down about it was delivered.
  void restart(const std::string& id, uint64_t e) {
    node& n = at(id);
    if (n.alive) throw std::logic_error("restart of a live node");
    n.lease = std::make_unique<membership_lease>(  // a new process, its fences numbered on
        membership_lease::config{n.id, 1, 0, n.lease->rejoin().incarnation + 1});
    n.held.clear();
    n.thinks_down.clear();
    for (auto it = downed_.begin(); it != downed_.end();) it = it->first.node == id ? downed_.erase(it) : std::next(it);
    make_components(n, epochs_.at(e));
    n.alive = true;
    route({id, false}, n.ctl->start());
    route({id, true}, n.dir->start());
    for (auto& [other, o] : nodes_) {
      if (other == id || !o.alive) continue;
      if (o.running()) node_up(o, id);
      if (!o.frozen && !o.ctl) {  // rejoining: its link to `id` is back
        o.thinks_down.erase(id);
        // Its Rejoin goes there unless acknowledged already (by the old process, which
        // forgot it; the new one never knew it).
        if (!o.lease->acked(id)) notices_.emplace_back(other, id, o.lease->rejoin());
      }
    }
  }

  // `id` stops (SIGSTOP) for long enough to be declared dead: it receives and does nothing
  // until resume(); what it sent is on the wire and still arrives. Its memory operations
  // in flight land now or never (`lands`; one not handed to Redis yet is dropped by the
  // Redis pool for waiting too long). The components in `declare` (whose failure detector
  // noticed) get node_down(id) once all messages from it to them arrived.
  void freeze(const std::string& id, const std::vector<endpoint>& declare,
              const std::function<bool(const memory_op&)>& lands) {
    node& n = at(id);
    if (!n.running()) throw std::logic_error("freeze of a node that is not running");
    n.frozen = true;
    settle_memory_of(id, lands);
    for (const auto& ep : declare) downs_.emplace_back(ep, id);
    deliver_ready_downs();
  }

  // `id` runs again and notices the pause, as the cache service does on its first input:
  // its components go without a word, its lease is fenced at the epoch it was in, it sends
  // Rejoin to every peer, and it thinks every peer down until their link is back (their
  // Rejoin-Ack). New components start when try_rejoin() finds the lease allows it.
  void resume(const std::string& id) {
    node& n = at(id);
    if (!n.alive || !n.frozen) throw std::logic_error("resume of a node that is not stopped");
    n.frozen = false;
    if (n.ctl) {  // else stopped again while rejoining: a new incarnation ends all the same
      n.known_epoch = std::max(n.ctl->epoch(), n.dir->epoch());
      n.ctl.reset();
      n.dir.reset();
      n.mirror->clear();
    }
    n.lease->fence(n.known_epoch, 0);
    n.held.clear();
    for (bool a : {false, true})  // its messages to itself never left the process
      for (bool b : {false, true}) {
        const int c = index_of(channel_id{endpoint{id, a}, endpoint{id, b}});
        chans_[c].clear();
        unmark(c);
      }
    downs_.erase(std::remove_if(downs_.begin(), downs_.end(), [&](const auto& d) { return d.first.node == id; }),
                 downs_.end());
    for (auto it = downed_.begin(); it != downed_.end();) it = it->first.node == id ? downed_.erase(it) : std::next(it);
    for (const auto& [other, o] : nodes_) {
      if (other == id) continue;
      n.thinks_down.insert(other);
      if (o.alive) notices_.emplace_back(id, other, n.lease->rejoin());
    }
    deliver_ready_downs();
  }
  bool stopped(const std::string& id) const { return at_const(id).frozen; }
  bool rejoining(const std::string& id) const {
    const node& n = at_const(id);
    return n.alive && !n.frozen && !n.ctl;
  }

  // Everything still to do: channels, memory, downs, Rejoins.
  bool quiet() const { return nonempty_.empty() && mem_.empty() && downs_.empty() && notices_.empty(); }

  // Delivers and completes everything in a fixed order until quiet (scripts' "run").
  void run_to_quiet(size_t max_steps = 100000) {
    for (size_t step = 0; step < max_steps; ++step) {
      auto chans = channels_with_messages();
      if (!chans.empty()) {
        deliver(chans.front());
        continue;
      }
      if (!mem_.empty()) {
        complete_memory(0);
        continue;
      }
      return;
    }
    throw std::runtime_error("cluster did not become quiet");
  }

  // Completions observed, in order, with the node that produced them.
  std::vector<std::pair<std::string, completion>>& completions() { return completions_; }
  uint64_t delivered() const { return delivered_; }
  uint64_t wire_errors() const { return wire_errors_; }

  // Hook called for every effect batch routed (the simulation records histories).
  std::function<void(const endpoint&, const effects&)> on_effects;

 private:
  void add_node(const std::string& id, const membership& m) {
    node n;
    n.id = id;
    make_components(n, m);
    nodes_.emplace(id, std::move(n));
  }

  void make_components(node& n, const membership& m) {
    if (!n.lease) n.lease = std::make_unique<membership_lease>(membership_lease::config{n.id, 1, 0});
    controller::config cc;
    cc.self = n.id;
    cc.proto = opts_.proto;
    cc.policy = opts_.policy;
    cc.capacity = opts_.capacity;
    cc.replacement = opts_.replacement;
    cc.track_changes = true;
    n.ctl = std::make_unique<controller>(cc, m);
    n.mirror->clear();  // a new controller has no lines (as the cache service does)
    n.mirror->live_until(cache_mirror::clock::time_point::max());
    directory::config dc;
    dc.self = n.id;
    dc.proto = opts_.proto;
    n.dir = std::make_unique<directory>(dc, m);
  }

  void route(const endpoint& from, effects fx) {
    if (!from.dir) {  // the mirror first, as the cache service actor does
      node& n = at(from.node);
      n.mirror->sync(*n.ctl, n.ctl->take_changed());
    }
    if (on_effects) on_effects(from, fx);
    for (auto& env : fx.messages) {
      message m = std::move(env.msg);
      if (opts_.wire) {
        message back;
        if (!decode(encode(m), back) || back != m) {
          ++wire_errors_;
          continue;
        }
        m = std::move(back);
      }
      endpoint to{env.to, for_directory(m.kind)};
      if (!alive(env.to)) continue;
      const int c = index_of(channel_id{from, to});
      chans_[c].push_back(std::move(m));
      if (pos_[c] < 0) {
        pos_[c] = static_cast<int>(nonempty_.size());
        nonempty_.push_back(c);
      }
    }
    for (auto& op : fx.memory) mem_.push_back(memory_request{from.node, from.dir, std::move(op)});
    for (auto& c : fx.completions) completions_.emplace_back(from.node, std::move(c));
  }

  value apply_memory(const memory_op& op) {
    switch (op.kind) {
      case memory_kind::read: ++memory_reads_; return memory_value(op.key);
      case memory_kind::write: ++memory_writes_; memory_[op.key] = op.value; return {};
      case memory_kind::erase: ++memory_erases_; memory_.erase(op.key); return {};
    }
    return {};
  }

  int index_of(const channel_id& id) const {
    const int e = static_cast<int>(ids_.size()) * 2;
    const int from = index_.at(id.from.node) * 2 + (id.from.dir ? 1 : 0);
    const int to = index_.at(id.to.node) * 2 + (id.to.dir ? 1 : 0);
    return from * e + to;
  }
  channel_id id_of(int c) const {
    const int e = static_cast<int>(ids_.size()) * 2;
    const int from = c / e, to = c % e;
    return channel_id{endpoint{ids_[from / 2], from % 2 == 1}, endpoint{ids_[to / 2], to % 2 == 1}};
  }
  void unmark(int c) {
    const int p = pos_[c];
    if (p < 0) return;
    nonempty_[p] = nonempty_.back();
    pos_[nonempty_[p]] = p;
    nonempty_.pop_back();
    pos_[c] = -1;
  }

  // node_down(x) reaches a component only after everything x sent it.
  // node_down(x) reaches a component only after everything x sent it (a stopped component
  // gets it when it resumes; a rejoining node's next components learn who is dead then);
  // so does x's Rejoin, after the downs.
  void deliver_ready_downs() {
    auto drained = [&](const std::string& x, const std::string& to) {
      for (bool a : {false, true})
        for (bool b : {false, true})
          if (!chans_[index_of(channel_id{endpoint{x, a}, endpoint{to, b}})].empty()) return false;
      return true;
    };
    for (bool again = !downs_.empty() || !notices_.empty(); again;) {
      again = false;
      for (size_t i = 0; i < downs_.size(); ++i) {
        const auto [to, x] = downs_[i];
        bool pending = false;
        for (bool d : {false, true})
          if (!chans_[index_of(channel_id{endpoint{x, d}, to})].empty()) pending = true;
        node& n = at(to.node);
        if (pending || (n.alive && n.frozen)) continue;
        downs_.erase(downs_.begin() + static_cast<long>(i));
        if (n.alive && n.ctl) {
          downed_.insert({to, x});
          if (to.dir) route(to, n.dir->on_node_down(x));
          else route(to, n.ctl->on_node_down(x));
        }
        again = true;
        break;
      }
      if (again) continue;
      for (size_t i = 0; i < notices_.size(); ++i) {
        const auto [x, to, r] = notices_[i];
        node& o = at(to);
        if (o.alive && (o.frozen || at(x).frozen || !drained(x, to))) continue;
        notices_.erase(notices_.begin() + static_cast<long>(i));
        if (o.alive && at(x).alive) handle_rejoin(at(x), o, r);
        again = true;
        break;
      }
    }
  }

  void node_up(node& o, const std::string& x) {
    for (bool d : {false, true}) downed_.erase({endpoint{o.id, d}, x});
    route({o.id, true}, o.dir->on_node_up(x));
    route({o.id, false}, o.ctl->on_node_up(x));
  }

  // x's Rejoin at o (cache service: on_rejoin_message): o's components that had not
  // declared x dead forget it (node_down), the Ack goes back, then node_up.
  void handle_rejoin(node& x, node& o, const rejoin_message& r) {
    const uint64_t e = r.epoch;
    const bool news = o.lease->on_rejoin(x.id, r);
    if (news)  // what o holds for its own next components from x's old incarnation goes too
      o.held.erase(std::remove_if(o.held.begin(), o.held.end(),
                                  [&](const auto& h) { return h.first == x.id && h.second.epoch <= e; }),
                   o.held.end());
    if (o.ctl && news) {
      for (bool d : {false, true}) {
        endpoint ep{o.id, d};
        if (downed_.count({ep, x.id})) continue;
        if (d) route(ep, o.dir->on_node_down(x.id));
        else route(ep, o.ctl->on_node_down(x.id));
      }
    }
    if (!x.ctl && x.lease->fenced() && x.lease->rejoin().incarnation == r.incarnation) {
      // x reads the Ack after everything o sent it before: those are screened as such now.
      for (bool a : {false, true})
        for (bool b : {false, true}) {
          const int c = index_of(channel_id{endpoint{o.id, a}, endpoint{x.id, b}});
          auto before = std::move(chans_[c]);
          chans_[c].clear();
          unmark(c);
          for (auto& m : before) screen(x, o.id, m);
        }
      // The newest epoch o knows (its components may have been given different ones).
      const uint64_t current = o.ctl ? std::max(o.ctl->epoch(), o.dir->epoch()) : o.known_epoch;
      x.lease->on_ack(o.id, membership_lease::ack_for(r, current));
      x.thinks_down.erase(o.id);  // its link is back
    }
    if (o.ctl) node_up(o, x.id);
    try_rejoin(x);
  }

  // A message for a node without components, as its lease says (hold, refuse, drop).
  void screen(node& x, const std::string& from, const message& m) {
    switch (x.lease->screen(from, m)) {
      case membership_lease::verdict::hold: x.held.emplace_back(from, m); return;
      case membership_lease::verdict::refuse: {
        effects fx;
        fx.messages.push_back(envelope{from, *refusal(m)});
        route({x.id, true}, std::move(fx));
        return;
      }
      default: return;
    }
  }

  // New components for a rejoining node once its lease allows it (cache service:
  // try_rejoin), in the newest epoch it knows; the messages held for them come first.
  void try_rejoin(node& x) {
    if (!x.alive || x.frozen || x.ctl || !x.lease->fenced()) return;
    std::vector<std::string> linked;
    for (const auto& [id, o] : nodes_)
      if (id != x.id && o.alive && !o.frozen && !x.thinks_down.count(id)) linked.push_back(id);
    const membership& m = epochs_.at(x.known_epoch);
    if (!x.lease->may_rejoin(x.known_epoch, m.members, linked, x.thinks_down, 0)) return;
    x.lease->rejoined();
    make_components(x, m);
    route({x.id, false}, x.ctl->start());
    route({x.id, true}, x.dir->start());
    auto held = std::move(x.held);
    x.held.clear();
    for (auto& [from, msg] : held) {
      if (for_directory(msg.kind)) route({x.id, true}, x.dir->on_message(from, msg));
      else route({x.id, false}, x.ctl->on_message(from, msg));
    }
    for (const auto& [id, o] : nodes_) {
      if (id == x.id || (o.alive && !x.thinks_down.count(id))) continue;
      for (bool d : {false, true}) {
        downed_.insert({endpoint{x.id, d}, id});
        if (d) route({x.id, true}, x.dir->on_node_down(id));
        else route({x.id, false}, x.ctl->on_node_down(id));
      }
    }
    x.thinks_down.clear();
  }

  const node& at_const(const std::string& id) const {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) throw std::runtime_error("no node " + id);
    return it->second;
  }

  options opts_;
  std::map<uint64_t, membership> epochs_;
  std::map<std::string, node> nodes_;
  std::vector<std::string> ids_;           // node index -> id
  std::map<std::string, int> index_;
  std::vector<std::deque<message>> chans_;  // by (sender endpoint, receiver endpoint)
  std::vector<int> nonempty_;               // channels with messages
  std::vector<int> pos_;                    // channel -> position in nonempty_, or -1
  std::vector<memory_request> mem_;
  std::map<std::string, std::string> memory_;
  std::vector<std::pair<endpoint, std::string>> downs_;  // (receiver, dead node)
  std::set<std::pair<endpoint, std::string>> downed_;     // node_down delivered, no node_up since
  // Rejoins on the way: (rejoining node, peer, Rejoin).
  std::vector<std::tuple<std::string, std::string, rejoin_message>> notices_;
  std::vector<std::pair<std::string, completion>> completions_;
  uint64_t memory_writes_ = 0, memory_reads_ = 0, memory_erases_ = 0;
  uint64_t delivered_ = 0;
  uint64_t wire_errors_ = 0;
};

// --- invariants ------------------------------------------------------------------------

// Every live node's mirror holds exactly its readable lines of `key`, with their state and
// value. Returns a description of the difference, or "".
// One MOESI node "a" that is also the home of every key, started and quiet.
inline cluster one_node(size_t capacity, replacement_kind r = replacement_kind::lru) {
  cluster::options o;
  o.proto = protocol::moesi;
  o.capacity = capacity;
  o.replacement = r;
  o.nodes = {"a"};
  membership m;
  m.epoch = 1;
  m.members = {"a"};
  m.home = [](std::string_view) { return std::string("a"); };
  cluster c(o, m);
  c.start_all();
  c.run_to_quiet();
  return c;
}

inline std::string check_mirror(cluster& c, const std::string& key) {
  for (auto& [id, n] : c.nodes()) {
    if (!n.running()) continue;  // a stopped node serves nothing (its lease ran out)
    const cache_state s = n.ctl->state(key);
    auto copy = n.mirror->peek(key);
    if (!readable(s)) {
      if (copy)
        return key + ": " + id + "'s mirror serves " + std::string(to_string(copy->state)) + " " +
               copy->value.value_or("<absent>") + " but the line is " + std::string(to_string(s));
      continue;
    }
    const value* v = n.ctl->data(key);
    if (!copy) return key + ": " + id + "'s mirror lacks its " + std::string(to_string(s)) + " line";
    if (copy->state != s || !v || copy->value != *v)
      return key + ": " + id + "'s mirror has " + std::string(to_string(copy->state)) + " " +
             copy->value.value_or("<absent>") + ", the line is " + std::string(to_string(s)) + " " +
             (v ? v->value_or("<absent>") : std::string("<no data>"));
  }
  return {};
}

// Single writer / multiple readers and the data-value invariant over the live nodes'
// lines, for one key. Returns a description of the violation, or "".
//   - at most one line in M or E, and then no other readable line;
//   - at most one line in O (MOSI/MOESI), and then no M/E line;
//   - every readable line holds the same value.
inline std::string check_coherence(cluster& c, const std::string& key) {
  std::vector<std::pair<std::string, cache_state>> holders;
  std::optional<value> seen;
  std::string seen_at;
  int writers = 0, owners = 0;
  for (auto& [id, n] : c.nodes()) {
    if (!n.running()) continue;  // a stopped node serves nothing (its lease ran out)
    cache_state s = n.ctl->state(key);
    if (!readable(s)) continue;
    holders.emplace_back(id, s);
    if (s == cache_state::M || s == cache_state::E) ++writers;
    if (s == cache_state::O) ++owners;
    const value* v = n.ctl->data(key);
    if (!v) return key + ": " + id + " is " + std::string(to_string(s)) + " without data";
    if (!seen) {
      seen = *v;
      seen_at = id;
    } else if (*seen != *v) {
      return key + ": " + seen_at + " and " + id + " hold different values (" + (seen->value_or("<absent>")) +
             " vs " + v->value_or("<absent>") + ")";
    }
  }
  auto list = [&] {
    std::string s;
    for (const auto& [id, st] : holders) s += " " + id + "=" + std::string(to_string(st));
    return s;
  };
  if (writers > 1 || (writers == 1 && holders.size() > 1)) return key + ": SWMR violated:" + list();
  if (owners > 1 || (owners == 1 && writers > 0)) return key + ": more than one owner:" + list();
  return {};
}

}  // namespace dsync::cache::testing
