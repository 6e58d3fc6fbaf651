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
    std::unique_ptr<controller> ctl;
    std::unique_ptr<directory> dir;
    // Its readable lines, synced after every controller step (always live).
    std::unique_ptr<cache_mirror> mirror = std::make_unique<cache_mirror>();
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
    if (id.to.dir) route(id.to, n.dir->on_message(id.from.node, m));
    else route(id.to, n.ctl->on_message(id.from.node, m));
    deliver_ready_downs();
    return m;
  }

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
    if (ep.dir) route(ep, n.dir->on_membership(epochs_.at(e)));
    else route(ep, n.ctl->on_membership(epochs_.at(e)));
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
    for (size_t i = 0; i < mem_.size();) {
      if (mem_[i].node == id) {
        if (lands(mem_[i].op)) apply_memory(mem_[i].op);
        mem_.erase(mem_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
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
    make_components(n, epochs_.at(e));
    n.alive = true;
    route({id, false}, n.ctl->start());
    route({id, true}, n.dir->start());
    for (auto& [other, o] : nodes_) {
      if (!o.alive || other == id) continue;
      route({other, true}, o.dir->on_node_up(id));
      route({other, false}, o.ctl->on_node_up(id));
    }
  }

  // Everything still to do: channels, memory, downs.
  bool quiet() const { return nonempty_.empty() && mem_.empty() && downs_.empty(); }

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
  void deliver_ready_downs() {
    for (bool again = !downs_.empty(); again;) {
      again = false;
      for (size_t i = 0; i < downs_.size(); ++i) {
        const auto [to, x] = downs_[i];
        bool pending = false;
        for (bool d : {false, true})
          if (!chans_[index_of(channel_id{endpoint{x, d}, to})].empty()) pending = true;
        if (pending) continue;
        downs_.erase(downs_.begin() + static_cast<long>(i));
        node& n = at(to.node);
        if (n.alive) {
          if (to.dir) route(to, n.dir->on_node_down(x));
          else route(to, n.ctl->on_node_down(x));
        }
        again = true;
        break;
      }
    }
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
  std::vector<std::pair<std::string, completion>> completions_;
  uint64_t memory_writes_ = 0, memory_reads_ = 0, memory_erases_ = 0;
  uint64_t delivered_ = 0;
  uint64_t wire_errors_ = 0;
};

// --- invariants ------------------------------------------------------------------------

// Every live node's mirror holds exactly its readable lines of `key`, with their state and
// value. Returns a description of the difference, or "".
inline std::string check_mirror(cluster& c, const std::string& key) {
  for (auto& [id, n] : c.nodes()) {
    if (!n.alive) continue;
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
    if (!n.alive) continue;
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
