#include "tests/sim/cache/cache_sim.hpp"

#include <cstdio>
#include <deque>
#include <limits>
#include <stdexcept>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "protocols/raft/rng.hpp"
#include "protocols/ring/hash_ring.hpp"
#include "tests/sim/cache/cluster.hpp"
#include "tests/sim/cache/linearizability.hpp"

namespace dsync::cache::sim {

using testing::channel_id;
using testing::check_coherence;
using testing::check_linearizable;
using testing::check_mirror;
using testing::cluster;
using testing::endpoint;
using testing::history_op;

void sim_stats::add(const sim_stats& o) {
  steps += o.steps;
  messages += o.messages;
  ops += o.ops;
  hits += o.hits;
  fast_hits += o.fast_hits;
  misses += o.misses;
  evictions += o.evictions;
  mem_reads += o.mem_reads;
  mem_writes += o.mem_writes;
  deaths += o.deaths;
  restarts += o.restarts;
  freezes += o.freezes;
  epochs += o.epochs;
  for (size_t i = 0; i < 6; ++i) recoveries[i] += o.recoveries[i];
  for (const auto& [k, n] : o.transitions) transitions[k] += n;
}

std::string sim_stats::to_string() const {
  return "steps=" + std::to_string(steps) + " messages=" + std::to_string(messages) + " ops=" + std::to_string(ops) +
         " hits=" + std::to_string(hits) + " fast_hits=" + std::to_string(fast_hits) +
         " misses=" + std::to_string(misses) +
         " evictions=" + std::to_string(evictions) + " mem_reads=" + std::to_string(mem_reads) +
         " mem_writes=" + std::to_string(mem_writes) + " deaths=" + std::to_string(deaths) +
         " restarts=" + std::to_string(restarts) + " pauses=" + std::to_string(freezes) +
         " epochs=" + std::to_string(epochs) +
         "\n  node_down at directories: sharer=" + std::to_string(recoveries[0]) +
         " owner=" + std::to_string(recoveries[1]) + " requester=" + std::to_string(recoveries[2]) +
         " forwarded=" + std::to_string(recoveries[3]) + " invalidated=" + std::to_string(recoveries[4]) +
         " recalled=" + std::to_string(recoveries[5]);
}

namespace {

constexpr uint64_t no_response = std::numeric_limits<uint64_t>::max();

struct violation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class simulation {
 public:
  simulation(uint64_t seed, protocol proto, bool verbose)
      : rng_(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(proto) * 7919 + 1),
        fast_rng_(seed * 0xbf58476d1ce4e5b9ull + static_cast<uint64_t>(proto) * 104729 + 3),
        verbose_(verbose) {
    const size_t nodes = 2 + rng_.below(4);
    keys_ = 2 + rng_.below(3);
    cluster::options o;
    o.proto = proto;
    o.policy = rng_.chance(1, 3) ? write_policy::write_through : write_policy::write_back;
    o.replacement = rng_.chance(1, 2) ? replacement_kind::lru : replacement_kind::lfu;
    o.capacity = 1 + rng_.below(3);
    for (size_t i = 1; i <= nodes; ++i) o.nodes.push_back("n" + std::to_string(i));
    deaths_ = nodes >= 3 && rng_.chance(2, 5);
    steps_ = 300 + rng_.below(700);
    freezes_on_ = deaths_ && rng_.chance(1, 2);
    setup_ = std::to_string(nodes) + " nodes, " + std::to_string(keys_) + " keys, " +
             std::string(to_string(o.policy)) + ", " + std::string(to_string(o.replacement)) + ", capacity " +
             std::to_string(o.capacity) + (deaths_ ? ", deaths" : "") + (freezes_on_ ? ", pauses" : "");
    cl_ = std::make_unique<cluster>(o, ring_membership(1, o.nodes));
    cl_->on_effects = [this](const endpoint& from, const effects& fx) { observe(from, fx); };
  }

  const std::string& setup() const { return setup_; }
  sim_stats& stats() { return stats_; }

  void run() {
    cl_->start_all();
    for (uint64_t s = 0; s < steps_; ++s) step(true);
    // Quiet phase: no new requests or faults; everything pending must finish.
    settle();
    for (size_t k = 0; k < keys_; ++k) {  // one last read of every key
      auto live = cl_->running_nodes();
      submit(live[rng_.below(live.size())], op_kind::get, key(k));
    }
    settle();
    final_checks();
  }

 private:
  static std::string key(size_t k) { return "k" + std::to_string(k); }

  membership ring_membership(uint64_t e, std::vector<std::string> members) {
    return membership::from_ring(e, std::make_shared<ring::hash_ring>(std::move(members), 8));
  }

  void trace(const std::string& s) {
    if (verbose_) std::printf("  [%llu] %s\n", static_cast<unsigned long long>(stats_.steps), s.c_str());
  }

  // --- history ---

  void submit(const std::string& node, op_kind kind, const std::string& k) {
    client_op op;
    op.request = ++next_request_;
    op.kind = kind;
    op.key = k;
    if (kind == op_kind::put) op.value = "v" + std::to_string(++next_value_);
    history_op h;
    h.invoked = ++clock_;
    h.kind = kind == op_kind::get ? history_op::read : kind == op_kind::put ? history_op::write : history_op::erase;
    if (kind == op_kind::put) h.val = op.value;
    h.label = node + " #" + std::to_string(op.request) + " " + std::string(to_string(kind)) + " " + k +
              (kind == op_kind::put ? " " + op.value : "");
    if (kind != op_kind::invalidate) {
      history_[k].push_back(h);
      where_[{node, op.request}] = {k, history_[k].size() - 1};
    }
    pending_[node].insert(op.request);
    trace(h.label);
    cl_->submit(node, op);
  }

  void observe(const endpoint& from, const effects& fx) {
    stats_.messages += fx.messages.size();
    for (const auto& c : fx.completions) {
      pending_[from.node].erase(c.request);
      auto it = where_.find({from.node, c.request});
      std::string res = std::string(to_string(c.result)) + (c.result == status::error ? " " + c.error : "");
      if (c.kind == op_kind::get && c.result != status::error) res += " " + c.val.value_or("<absent>");
      trace(from.node + " #" + std::to_string(c.request) + " -> " + res + " (" + std::string(to_string(c.state)) + ")");
      if (c.result != status::error) ++stats_.ops;
      if (it == where_.end()) continue;
      auto& h = history_[it->second.first][it->second.second];
      if (c.result == status::error) {
        // May or may not have taken effect: stays optional. A failed read says nothing;
        // neither does a write the controller reports as not applied.
        if (h.kind == history_op::read || !c.maybe_applied) h.label = "";  // dropped below
        continue;
      }
      h.responded = ++clock_;
      if (h.kind == history_op::read) h.val = c.result == status::ok ? c.val : std::nullopt;
      h.label += " -> " + (h.kind == history_op::read ? h.val.value_or("<absent>") : std::string("ok")) + " @" +
                 std::to_string(h.invoked) + ".." + std::to_string(h.responded);
      if (c.kind == op_kind::put && c.state != cache_state::M)
        throw violation(from.node + " completed a put in " + std::string(to_string(c.state)));
      if (c.kind == op_kind::get && !readable(c.state))
        throw violation(from.node + " served a get in " + std::string(to_string(c.state)));
    }
  }

  // --- steps ---

  void step(bool active) {
    ++stats_.steps;
    if (epoch_due_at_ && (stats_.steps >= epoch_due_at_ || !active)) {
      epoch_due_at_ = 0;
      new_epoch(members_now(), "");
    }
    const auto& mem = cl_->memory_in_flight();
    std::vector<std::string> live, dead, can_submit, stopped;
    for (auto& [id, n] : cl_->nodes()) {
      if (!n.alive) {
        dead.push_back(id);
        continue;
      }
      if (n.frozen) stopped.push_back(id);
      if (!n.running()) continue;
      live.push_back(id);
      if (n.ctl->pending_ops() < 3) can_submit.push_back(id);  // expired ones count too
    }
    // A stopped node receives nothing (what it sent still arrives).
    std::vector<size_t> deliverable;
    if (!stopped.empty())
      for (size_t i = 0; i < cl_->busy_channels(); ++i)
        if (cl_->deliverable(cl_->busy_channel(i))) deliverable.push_back(i);
    const size_t chans = stopped.empty() ? cl_->busy_channels() : deliverable.size();
    auto channel_at = [&](size_t i) { return cl_->busy_channel(stopped.empty() ? i : deliverable[i]); };
    std::vector<endpoint> epoch_due;
    for (const auto& [ep, q] : epoch_queue_)
      if (!q.empty() && !cl_->stopped(ep.node)) epoch_due.push_back(ep);

    // Weighted choice among what is possible.
    const uint64_t w_deliver = chans == 0 ? 0 : 50;
    const uint64_t w_mem = mem.empty() ? 0 : 15;
    const uint64_t w_submit = active && !can_submit.empty() ? 20 : 0;
    const uint64_t w_epoch = epoch_due.empty() ? 0 : 6;
    const uint64_t w_expire = active && w_deliver + w_mem > 0 ? 1 : 0;
    const uint64_t w_kill = active && deaths_ && live.size() > 2 && kills_ < 4 ? 2 : 0;
    const uint64_t w_restart =
        active && !dead.empty() && !cl_->downs_pending() && !epoch_due_at_ && restarts_ < 4 ? 2 : 0;
    const uint64_t w_freeze = active && freezes_on_ && live.size() > 2 && freezes_ < 3 ? 2 : 0;
    const uint64_t w_resume = stopped.empty() ? 0 : active ? 3 : 10;
    const uint64_t total = w_deliver + w_mem + w_submit + w_epoch + w_expire + w_kill + w_restart + w_freeze + w_resume;
    if (total == 0) return;
    uint64_t r = rng_.below(total);
    auto pick = [&](uint64_t w) {
      if (r < w) return true;
      r -= w;
      return false;
    };
    last_.clear();
    last_ch_.reset();
    touched_.reset();  // all keys, unless the step concerns one
    if (pick(w_deliver)) {
      const auto ch = channel_at(rng_.below(chans));
      if (const auto& k = cl_->channel(ch)->front().key; !k.empty()) touched_ = k;
      if (verbose_) {
        last_ = "deliver " + ch.name() + " " + describe(cl_->channel(ch)->front());
        trace(last_);
      } else {
        last_ch_ = ch;
      }
      cl_->deliver(ch);
    } else if (pick(w_mem)) {
      size_t i = rng_.below(mem.size());
      touched_ = mem[i].op.key;
      if (verbose_) trace("memory " + mem[i].node + " " + std::string(to_string(mem[i].op.kind)) + " " + mem[i].op.key);
      cl_->complete_memory(i);
    } else if (pick(w_submit)) {
      const auto& n = can_submit[rng_.below(can_submit.size())];
      uint64_t k = rng_.below(100);
      op_kind kind = k < 45 ? op_kind::get : k < 82 ? op_kind::put : k < 91 ? op_kind::del : op_kind::invalidate;
      touched_ = key(rng_.below(keys_));
      submit(n, kind, *touched_);
    } else if (pick(w_epoch)) {
      const auto& ep = epoch_due[rng_.below(epoch_due.size())];
      auto& q = epoch_queue_[ep];
      uint64_t e = q.front();
      if (rng_.chance(1, 4)) e = q.back();  // skip to the newest
      while (!q.empty() && q.front() <= e) q.pop_front();
      trace("epoch " + std::to_string(e) + " to " + ep.name());
      cl_->give_epoch(ep, e);
    } else if (pick(w_expire)) {
      std::vector<std::pair<std::string, uint64_t>> all;
      for (const auto& [n, reqs] : pending_)
        if (cl_->running(n))
          for (auto q : reqs) all.emplace_back(n, q);
      if (!all.empty()) {
        auto [n, q] = all[rng_.below(all.size())];
        trace("expire " + n + " #" + std::to_string(q));
        cl_->expire(n, q);
      }
    } else if (pick(w_kill)) {
      // Mostly a node in the middle of something: one with messages in flight.
      kill(pick_busy(live));
    } else if (pick(w_restart)) {
      restart(dead[rng_.below(dead.size())]);
    } else if (pick(w_freeze)) {
      freeze(pick_busy(live));
    } else if (pick(w_resume)) {
      resume(stopped[rng_.below(stopped.size())]);
    }
    check_step();
    if (active) fast_read();
  }

  // A read served by the node's mirror without entering the controller, as the HTTP fast
  // path does, between any two steps (its own random stream, so that the seeds' other
  // choices stay as they were). It goes into the key's history as an instantaneous read;
  // the uses it records reach the replacement order now and then, as on the actor's tick.
  void fast_read() {
    if (!fast_rng_.chance(1, 3)) return;
    auto live = cl_->running_nodes();  // a stopped node's lease has run out
    const auto& n = live[fast_rng_.below(live.size())];
    const auto k = key(fast_rng_.below(keys_));
    auto& node = cl_->at(n);
    auto h = node.mirror->lookup(k, cache_mirror::clock::time_point{});
    if (fast_rng_.chance(1, 4))
      for (auto& [used, times] : node.mirror->take_uses()) node.ctl->note_hits(used, times);
    if (!h) return;
    ++stats_.fast_hits;
    if (!readable(node.ctl->state(k)))
      throw violation(n + "'s mirror served " + k + " while its line is " + std::string(to_string(node.ctl->state(k))));
    history_op op;
    op.kind = history_op::read;
    op.invoked = ++clock_;
    op.responded = ++clock_;
    op.val = h->value;
    op.label = n + " fast get " + k + " -> " + h->value.value_or("<absent>") + " (" +
               std::string(to_string(h->state)) + ") @" + std::to_string(op.invoked) + ".." +
               std::to_string(op.responded);
    trace(op.label);
    history_[k].push_back(op);
  }

  // Mostly a node in the middle of something: one with messages in flight.
  std::string pick_busy(const std::vector<std::string>& live) {
    std::vector<std::string> busy;
    for (size_t i = 0; i < cl_->busy_channels(); ++i)
      if (auto ch = cl_->busy_channel(i); cl_->running(ch.from.node)) busy.push_back(ch.from.node);
    return !busy.empty() && rng_.chance(3, 4) ? busy[rng_.below(busy.size())] : live[rng_.below(live.size())];
  }

  // Write-back's loss window: dirty data only x held may be gone; every key may revert
  // (once) to a value written before.
  void may_revert(const std::string& x, const std::string& why) {
    if (cl_->opts().policy != write_policy::write_back) return;
    for (size_t k = 0; k < keys_; ++k) {
      history_op h;
      h.kind = history_op::revert;
      h.invoked = ++clock_;
      h.label = "revert " + key(k) + " (" + why + " of " + x + ") @" + std::to_string(h.invoked);
      history_[key(k)].push_back(h);
    }
  }

  // x stops long enough to be declared dead: some of its peers' failure detectors notice
  // while it is stopped (maybe none: it may resume just before), the others learn it from
  // its Rejoin when it resumes; meanwhile a new epoch may leave it out.
  void freeze(const std::string& x) {
    ++freezes_;
    ++stats_.freezes;
    trace("FREEZE " + x);
    may_revert(x, "pause");
    std::vector<endpoint> declare;
    for (const auto& n : cl_->running_nodes())
      for (bool d : {false, true})
        if (n != x && rng_.chance(2, 3)) declare.push_back(endpoint{n, d});
    cl_->freeze(x, declare, [this](const memory_op&) { return rng_.chance(1, 2); });
    if (!declare.empty() && !epoch_due_at_) epoch_due_at_ = stats_.steps + rng_.below(300);
  }

  // x runs again: it drops its cache and rejoins; the membership leader commits a new
  // epoch for it (with the nodes that are not stopped), which x's next components start in.
  void resume(const std::string& x) {
    trace("RESUME " + x);
    // Its requests fail ("restarted", maybe applied) with the old components: a failed read
    // says nothing, a put may or may not have taken effect.
    for (auto request : pending_[x]) {
      auto it = where_.find({x, request});
      if (it == where_.end()) continue;
      auto& h = history_[it->second.first][it->second.second];
      if (h.kind == history_op::read) h.label = "";
    }
    pending_[x].clear();
    cl_->resume(x);
    new_epoch(members_now(), "");
  }

  std::vector<std::string> members_now() {
    std::vector<std::string> out;
    for (const auto& n : cl_->live_nodes())
      if (!cl_->stopped(n)) out.push_back(n);
    return out;
  }

  void kill(const std::string& x) {
    ++kills_;
    ++stats_.deaths;
    trace("KILL " + x);
    may_revert(x, "death");
    cl_->kill(
        x, [this](const channel_id&, size_t n) { return static_cast<size_t>(rng_.below(n + 1)); },
        [this](const memory_op&) { return rng_.chance(1, 2); });
    for (auto& [ep, q] : epoch_queue_)
      if (ep.node == x) q.clear();
    // The membership change follows the death later (failure detection, then the
    // control group): meanwhile the directories recover from node_down alone, and the
    // dead node's keys wait for their new home.
    epoch_due_at_ = stats_.steps + rng_.below(400);
  }

  void restart(const std::string& x) {
    ++restarts_;
    ++stats_.restarts;
    auto members = members_now();
    members.push_back(x);
    uint64_t e = new_epoch(members, x);
    trace("RESTART " + x + " in epoch " + std::to_string(e));
    pending_[x].clear();
    cl_->restart(x, e);
  }

  // Defines the next epoch and schedules its delivery to every live component (but
  // `skip`, which starts in it).
  uint64_t new_epoch(std::vector<std::string> members, const std::string& skip) {
    ++stats_.epochs;
    uint64_t e = cl_->last_epoch() + 1;
    cl_->define_epoch(ring_membership(e, members));
    for (const auto& n : cl_->live_nodes()) {
      if (n == skip) continue;
      epoch_queue_[endpoint{n, false}].push_back(e);
      epoch_queue_[endpoint{n, true}].push_back(e);
    }
    return e;
  }

  void settle() {
    for (uint64_t s = 0; s < 200000; ++s) {
      bool epochs_due = false, stopped = false, rejoining = false;
      for (const auto& [ep, q] : epoch_queue_)
        if (!q.empty()) epochs_due = true;
      for (const auto& n : cl_->live_nodes()) {
        stopped = stopped || cl_->stopped(n);
        rejoining = rejoining || cl_->rejoining(n);
      }
      if (cl_->quiet() && !epochs_due && !epoch_due_at_ && !stopped) {
        if (rejoining) throw violation("liveness: a node cannot rejoin" + stuck());
        return;
      }
      step(false);
    }
    throw violation("liveness: not quiet after 200000 steps of the quiet phase");
  }

  void check_step() {
    if (touched_) {
      if (auto v = check_coherence(*cl_, *touched_); !v.empty()) throw violation(v);
    } else {
      for (size_t k = 0; k < keys_; ++k)
        if (auto v = check_coherence(*cl_, key(k)); !v.empty()) throw violation(v);
    }
    // The read fast path's mirror is never behind its controller (any key: a step may
    // evict or drop lines of other keys).
    for (size_t k = 0; k < keys_; ++k)
      if (auto v = check_mirror(*cl_, key(k)); !v.empty()) throw violation("mirror: " + v);
    if (cl_->wire_errors()) throw violation("a message did not survive encode/decode");
    std::set<std::string> in_flight;
    for (const auto& m : cl_->memory_in_flight())
      if (cl_->alive(m.node) && !in_flight.insert(m.op.key).second)
        throw violation("two memory operations in flight for " + m.op.key);
    for (auto& [id, n] : cl_->nodes()) {
      if (!n.ctl) continue;
      const std::string last = !last_.empty() ? last_ : last_ch_ ? "a message on " + last_ch_->name() : "no delivery";
      if (n.ctl->stats().unexpected_messages)
        throw violation(id + "'s controller got an impossible message, last step: " + last);
      if (n.dir->stats().unexpected_messages)
        throw violation(id + "'s directory got an impossible message, last step: " + last);
    }
  }

  // What every live component still waits for.
  std::string stuck() {
    std::string out;
    for (auto& [id, n] : cl_->nodes()) {
      if (!n.alive) continue;
      if (!n.running()) {
        out += "\n  " + id +
               (n.frozen ? ": stopped"
                         : ": rejoining after epoch " + std::to_string(n.lease->fenced_epoch()) + ", knows epoch " +
                               std::to_string(n.known_epoch) + ", waits for:");
        if (!n.frozen && !n.ctl) {
          std::vector<std::string> linked;
          for (const auto& o : cl_->live_nodes())
            if (o != id && !cl_->stopped(o) && !n.thinks_down.count(o)) linked.push_back(o);
          for (const auto& w : n.lease->waiting_for(cl_->epoch(n.known_epoch).members, linked, n.thinks_down))
            out += " " + w;
        }
        continue;
      }
      out += "\n  " + id + ": epoch ctl " + std::to_string(n.ctl->epoch()) + " dir " + std::to_string(n.dir->epoch()) +
             ", " + std::to_string(n.ctl->pending_ops()) + " requests pending";
      for (const auto& k : n.ctl->keys())
        out += ", " + k + "=" + std::string(to_string(n.ctl->state(k))) + "(e" + std::to_string(n.ctl->line_epoch(k)) +
               ")";
      if (!n.dir->serving()) {
        out += "; directory waits for Flushed from:";
        for (const auto& w : n.dir->barrier_waiting()) out += " [" + w + "]";
      }
      if (n.dir->closing()) out += "; directory still closing";
      for (size_t k = 0; k < keys_; ++k) {
        auto v = n.dir->view(key(k));
        if (v.state == "I" && !v.queued) continue;
        out += "; dir " + key(k) + "=" + v.state + " owner=" + v.owner + " sharers=";
        for (const auto& sh : v.sharers) out += sh + ",";
        out += " queued=" + std::to_string(v.queued);
      }
    }
    return out;
  }

  void final_checks() {
    for (auto& [id, n] : cl_->nodes()) {
      if (!n.alive) continue;
      if (!n.running()) throw violation("liveness: " + id + " did not rejoin" + stuck());
      if (n.ctl->pending_ops() != 0 || !pending_[id].empty())
        throw violation("liveness: " + id + " still has " + std::to_string(n.ctl->pending_ops()) +
                        " requests pending when quiet" + stuck());
      if (!n.ctl->idle()) throw violation("liveness: " + id + "'s controller is not idle when quiet" + stuck());
      if (!n.dir->idle()) throw violation("liveness: " + id + "'s directory is not idle when quiet" + stuck());
      stats_.hits += n.ctl->stats().hits;
      stats_.misses += n.ctl->stats().misses;
      stats_.evictions += n.ctl->stats().evictions;
    }
    for (auto& [id, n] : cl_->nodes()) {
      if (!n.ctl) continue;
      for (size_t st = 0; st < cache_state_count; ++st)
        for (size_t e = 0; e < cache_event_count; ++e)
          if (auto c = n.ctl->transitions(static_cast<cache_state>(st), static_cast<cache_event>(e)))
            stats_.transitions["cache " + std::string(to_string(static_cast<cache_state>(st))) + " " +
                               std::string(to_string(static_cast<cache_event>(e)))] += c;
      for (size_t r = 0; r < dir_row_count; ++r)
        for (size_t e = 0; e < dir_event_count; ++e)
          if (auto c = n.dir->transitions(static_cast<dir_row>(r), static_cast<dir_event>(e)))
            stats_.transitions["directory " + std::string(to_string(static_cast<dir_row>(r))) + " " +
                               std::string(to_string(static_cast<dir_event>(e)))] += c;
    }
    for (auto& [id, n] : cl_->nodes())
      for (size_t r = 0; r < dir_row_count && n.dir; ++r)
        for (auto e : {dir_event::down_sharer, dir_event::down_owner, dir_event::down_requester,
                       dir_event::down_forwarded, dir_event::down_invalidated, dir_event::down_recalled})
          stats_.recoveries[static_cast<size_t>(e) - static_cast<size_t>(dir_event::down_sharer)] +=
              n.dir->transitions(static_cast<dir_row>(r), e);
    stats_.mem_reads = cl_->memory_reads();
    stats_.mem_writes = cl_->memory_writes() + cl_->memory_erases();
    // Clean copies equal memory.
    for (size_t k = 0; k < keys_; ++k) {
      bool dirty = false;
      std::optional<value> copy;
      for (auto& [id, n] : cl_->nodes()) {
        if (!n.running() || !readable(n.ctl->state(key(k)))) continue;
        dirty = dirty || n.ctl->dirty(key(k));
        copy = *n.ctl->data(key(k));
      }
      if (copy && !dirty && *copy != cl_->memory_value(key(k)))
        throw violation(key(k) + ": a clean copy (" + copy->value_or("<absent>") + ") differs from memory (" +
                        cl_->memory_value(key(k)).value_or("<absent>") + ")");
    }
    for (auto& [k, ops] : history_) {
      std::vector<history_op> h;
      for (const auto& o : ops)
        if (!o.label.empty()) h.push_back(o);
      auto r = check_linearizable(h);
      if (!r.ok) throw violation(k + ": " + r.why);
    }
  }

  raft::rng rng_;
  raft::rng fast_rng_;  // fast reads only
  bool verbose_;
  size_t keys_ = 0;
  bool deaths_ = false;
  uint64_t steps_ = 0;
  std::string setup_;
  std::unique_ptr<cluster> cl_;
  sim_stats stats_;

  uint64_t clock_ = 0;
  uint64_t next_request_ = 0;
  uint64_t next_value_ = 0;
  std::map<std::string, std::vector<history_op>> history_;
  std::map<std::pair<std::string, uint64_t>, std::pair<std::string, size_t>> where_;
  std::map<std::string, std::set<uint64_t>> pending_;
  std::map<endpoint, std::deque<uint64_t>> epoch_queue_;
  int kills_ = 0, restarts_ = 0, freezes_ = 0;
  bool freezes_on_ = false;
  uint64_t epoch_due_at_ = 0;  // step at which the epoch after a death is defined
  std::string last_;           // the last message delivered (-v)
  std::optional<channel_id> last_ch_;  // its channel (without -v)
  std::optional<std::string> touched_;  // the only key the last step could change
};

}  // namespace

sim_result run_cache_seed(uint64_t seed, protocol proto, bool verbose) {
  sim_result r;
  simulation s(seed, proto, verbose);
  r.setup = s.setup();
  try {
    s.run();
  } catch (const violation& v) {
    r.ok = false;
    r.violation = v.what();
  } catch (const std::exception& e) {
    r.ok = false;
    r.violation = std::string("exception: ") + e.what();
  }
  r.stats = s.stats();
  return r;
}

std::string run_checker_self_test() {
  auto op = [](history_op::kind_t k, uint64_t inv, uint64_t resp, std::optional<std::string> v) {
    history_op h;
    h.kind = k;
    h.invoked = inv;
    h.responded = resp;
    h.val = std::move(v);
    h.label = "op";
    return h;
  };
  const auto R = history_op::read, W = history_op::write, E = history_op::erase, X = history_op::revert;
  struct test_case {
    const char* name;
    std::vector<history_op> ops;
  };
  const test_case broken[] = {
      {"read of a value never written", {op(W, 1, 2, "a"), op(R, 3, 4, "b")}},
      {"stale read after a completed write", {op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(R, 5, 6, "a")}},
      {"read of absent after a write", {op(W, 1, 2, "a"), op(R, 3, 4, std::nullopt)}},
      {"value read after its erase", {op(W, 1, 2, "a"), op(E, 3, 4, std::nullopt), op(R, 5, 6, "a")}},
      {"two readers see the writes in different orders",
       {op(W, 1, 10, "a"), op(W, 2, 11, "b"), op(R, 3, 4, "a"), op(R, 5, 6, "b"), op(R, 7, 8, "a")}},
      {"a revert to a value never written", {op(W, 1, 2, "a"), op(X, 3, no_response, {}), op(R, 4, 5, "z")}},
      {"a value coming back after a revert", 
       {op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(X, 5, no_response, {}), op(R, 6, 7, "a"), op(R, 8, 9, "b")}},
  };
  std::string missed;
  for (const auto& t : broken)
    if (check_linearizable(t.ops).ok) missed += std::string(missed.empty() ? "" : ", ") + t.name;
  const test_case fine[] = {
      {"concurrent write and read", {op(W, 1, 4, "a"), op(R, 2, 3, "a")}},
      {"pending write seen", {op(W, 1, no_response, "a"), op(R, 2, 3, "a")}},
      {"pending write not seen", {op(W, 1, no_response, "a"), op(R, 2, 3, std::nullopt)}},
      {"revert to an older value", {op(W, 1, 2, "a"), op(W, 3, 4, "b"), op(X, 5, no_response, {}), op(R, 6, 7, "a")}},
  };
  for (const auto& t : fine)
    if (!check_linearizable(t.ops).ok) missed += std::string(missed.empty() ? "" : ", ") + "(false alarm) " + t.name;
  return missed;
}

}  // namespace dsync::cache::sim
