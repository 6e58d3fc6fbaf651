// Raft safety invariants as code (LogCabin's RaftConsensusInvariants,
// TigerBeetle's state_checker). The simulation reports what it observes;
// the checker keeps the history and records the first violation.
//
// Invariants (Raft paper Figure 3 and §5.4.3, plus durability):
//   election safety      at most one leader per term
//   log matching         an (index, term) pair names one entry, and that
//                        entry's predecessor has one term: by induction, two
//                        logs holding the same (index, term) agree up to it
//   leader completeness  a leader holds every entry committed before or in
//                        its term
//   state machine safety no two nodes apply different entries (or reach
//                        different states) at the same index; every node
//                        applies indices in order without gaps
//   monotonicity         a node's term and commit index never decrease
//                        within one incarnation; its durable term and commit
//                        never decrease across restarts
//   no committed entry lost  once an index is committed its entry never
//                        changes, and when it commits a majority of the
//                        voters holds it durably
//   linearizable reads   a read index is at least every commit index known
//                        anywhere when the read was issued
//
// And of the replicated lock table (protocols/locks) every node applies:
//   mutual exclusion     at most one exclusive holder per lock, and no shared
//                        holder beside it
//   fencing              every new grant's token exceeds every earlier one;
//                        a node's token counter and clock never go back
//                        within one incarnation (a restart may go back to an
//                        older snapshot), and across all nodes they never
//                        decrease in log order
//
// And of the replicated queue shard (protocols/queue) every node applies. The
// log-order observations come from the first application of each committed
// queue command anywhere (first applications happen in index order); the
// per-node ones from each node after it applied or restored an index:
//   state machine safety nodes that applied the same index hold the same
//                        shard (snapshot digest; answers and events are in
//                        the per-index state hash chain)
//   unique ids           an enqueue's id is new and ends in "-<its index>"
//   no loss              every committed enqueue whose outcome was ok (every
//                        enqueue acknowledged to a client among them) is, at
//                        every index a node reaches after it, in exactly one
//                        of ready / in flight / delayed / dead, until an ack,
//                        a purge of its DLQ or the deletion of its queue ends
//                        it; the queue's counters and DLQ list hold exactly
//                        these messages (so nothing ended ever reappears)
//   acked stays acked    an ended message is never delivered again
//   FIFO                 first deliveries per queue follow the log order of
//                        the committed enqueues (acknowledged or not)
//   exclusive delivery   a message in flight is not delivered again until
//                        its delivery fails (nack, or an expire at a shard
//                        time past its deadline); an ack or nack succeeds only
//                        for the current delivery; an expire moves exactly
//                        the deliveries whose deadline passed
//   dead letters         a failed delivery goes to the DLQ iff its count
//                        reached the queue's max_deliveries; dead messages
//                        are not delivered; redrive and purge_dead take the
//                        oldest dead ones; delivery counts go up by one per
//                        delivery and restart after a redrive
//   delivery (liveness)  once drained, every committed enqueue of the queue
//                        was delivered at least once and acked
//
// Header-only so that unit tests can feed it broken histories.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dsync::sim {

// FNV-1a, used to fingerprint entries and state machine states.
inline uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

class raft_checker {
 public:
  bool ok() const { return violation_.empty(); }
  const std::string& violation() const { return violation_; }
  uint64_t max_committed() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }

  // Term and digest of a committed index, if known.
  bool committed_at(uint64_t index, uint64_t& term, uint64_t& digest) const {
    auto i = committed_.find(index);
    if (i == committed_.end())
      return false;
    term = i->second.first;
    digest = i->second.second;
    return true;
  }
  const std::map<uint64_t, std::pair<uint64_t, uint64_t>>& committed() const { return committed_; }

  // ---- election safety ----
  void on_leader(const std::string& node, uint64_t term) {
    auto [i, fresh] = leaders_.emplace(term, node);
    if (!fresh && i->second != node)
      fail("election safety: two leaders in term " + std::to_string(term) + ": " + i->second
           + " and " + node);
  }

  // ---- monotonicity ----
  void on_term(const std::string& node, uint64_t incarnation, uint64_t term) {
    check_monotonic(terms_, node, incarnation, term, "term");
  }
  void on_commit_index(const std::string& node, uint64_t incarnation, uint64_t commit) {
    check_monotonic(commits_, node, incarnation, commit, "commit index");
  }
  // A hard state written to durable storage.
  void on_persisted(const std::string& node, uint64_t term, uint64_t commit) {
    auto& [t, c] = persisted_[node];
    if (term < t)
      fail("durable term of " + node + " decreased from " + std::to_string(t) + " to "
           + std::to_string(term));
    if (commit < c)
      fail("durable commit index of " + node + " decreased from " + std::to_string(c) + " to "
           + std::to_string(commit));
    t = std::max(t, term);
    c = std::max(c, commit);
  }
  // A restarted node must come back with at least the durable term.
  void on_restart(const std::string& node, uint64_t term, uint64_t commit) {
    auto i = persisted_.find(node);
    if (i == persisted_.end())
      return;
    if (term < i->second.first)
      fail(node + " restarted with term " + std::to_string(term) + " below its durable term "
           + std::to_string(i->second.first));
    if (commit < i->second.second)
      fail(node + " restarted with commit " + std::to_string(commit)
           + " below its durable commit " + std::to_string(i->second.second));
  }

  // ---- log matching ----
  void on_entry(const std::string& node, uint64_t index, uint64_t term, uint64_t prev_term,
                uint64_t digest) {
    auto [i, fresh] = entries_.emplace(std::make_pair(index, term), std::make_pair(digest, prev_term));
    if (fresh)
      return;
    if (i->second.first != digest)
      fail("log matching: " + node + " holds a different entry at index " + std::to_string(index)
           + " term " + std::to_string(term));
    else if (i->second.second != prev_term)
      fail("log matching: " + node + " holds entry " + std::to_string(index) + "/"
           + std::to_string(term) + " after term " + std::to_string(prev_term) + ", others after "
           + std::to_string(i->second.second));
  }

  // ---- committed entries ----
  // Returns true if the index was newly registered.
  bool on_committed(const std::string& node, uint64_t index, uint64_t term, uint64_t digest) {
    auto [i, fresh] = committed_.emplace(index, std::make_pair(term, digest));
    if (!fresh && i->second != std::make_pair(term, digest))
      fail("committed entry lost: " + node + " committed index " + std::to_string(index)
           + " with term " + std::to_string(term) + ", previously committed with term "
           + std::to_string(i->second.first) + (i->second.first == term ? " (other data)" : ""));
    return fresh;
  }

  // Leader completeness for one index: `has` tells whether the leader's log
  // (or its snapshot) holds the committed entry.
  void on_leader_holds(const std::string& leader, uint64_t leader_term, uint64_t index, bool has) {
    if (!has)
      fail("leader completeness: leader " + leader + " of term " + std::to_string(leader_term)
           + " lacks committed index " + std::to_string(index));
  }

  // Durability when an index commits: how many voters hold it durably.
  void on_commit_durability(uint64_t index, size_t durable_holders, size_t voters) {
    if (durable_holders < voters / 2 + 1)
      fail("committed entry not durable: index " + std::to_string(index) + " is on "
           + std::to_string(durable_holders) + " of " + std::to_string(voters) + " voters' storage");
  }

  // ---- state machine safety ----
  void on_applied(const std::string& node, uint64_t index, uint64_t term, uint64_t digest,
                  uint64_t prev_applied, uint64_t state_hash) {
    if (index != prev_applied + 1)
      fail("state machine safety: " + node + " applied index " + std::to_string(index)
           + " after " + std::to_string(prev_applied));
    uint64_t ct = 0;
    uint64_t cd = 0;
    if (committed_at(index, ct, cd) && (ct != term || cd != digest))
      fail("state machine safety: " + node + " applied index " + std::to_string(index)
           + " term " + std::to_string(term) + ", the committed entry has term "
           + std::to_string(ct));
    on_state(node, index, state_hash);
  }
  // A state machine state reached at `index` (by applying or restoring).
  void on_state(const std::string& node, uint64_t index, uint64_t state_hash) {
    auto [i, fresh] = states_.emplace(index, state_hash);
    if (!fresh && i->second != state_hash)
      fail("state machine safety: " + node + " reached a different state at index "
           + std::to_string(index));
  }

  // The lock table's snapshot on a node that applied or restored `index`: all nodes must
  // hold the same table at the same index.
  void on_lock_table(const std::string& node, uint64_t index, uint64_t table_hash) {
    auto [i, fresh] = lock_tables_.emplace(index, table_hash);
    if (!fresh && i->second != table_hash)
      fail("state machine safety: " + node + " holds a different lock table at index "
           + std::to_string(index));
  }

  // ---- reads ----
  void on_read_issued(const std::string& node, uint64_t request_id) {
    reads_[key_read(node, request_id)] = max_committed();
  }
  void on_read_served(const std::string& node, uint64_t request_id, uint64_t index) {
    auto i = reads_.find(key_read(node, request_id));
    if (i == reads_.end())
      return;
    if (index < i->second)
      fail("linearizability: read " + std::to_string(request_id) + " on " + node
           + " served at index " + std::to_string(index) + " but index "
           + std::to_string(i->second) + " was committed before it was issued");
    reads_.erase(i);
  }

  // ---- the lock table ----
  // Holders of one lock on a node after it applied or restored `index`.
  void on_lock_holders(const std::string& node, uint64_t index, const std::string& lock,
                       size_t exclusive, size_t shared) {
    if (exclusive > 1 || (exclusive == 1 && shared > 0))
      fail("mutual exclusion: " + node + " at index " + std::to_string(index) + " has "
           + std::to_string(exclusive) + " exclusive and " + std::to_string(shared)
           + " shared holders of " + lock);
  }
  // A new grant applied at `index`; `floor` is the newest token issued before it.
  void on_lock_grant(const std::string& node, uint64_t index, uint64_t token, uint64_t floor) {
    if (token <= floor)
      fail("fencing: " + node + " granted token " + std::to_string(token) + " at index "
           + std::to_string(index) + ", not above " + std::to_string(floor));
  }
  // A node's table after it applied or restored `index`.
  void on_lock_state(const std::string& node, uint64_t incarnation, uint64_t index,
                     uint64_t last_token, uint64_t now_ms) {
    auto i = lock_seen_.find(node);
    if (i != lock_seen_.end() && i->second.incarnation == incarnation) {
      if (last_token < i->second.last_token)
        fail("fencing: the token counter of " + node + " went back from "
             + std::to_string(i->second.last_token) + " to " + std::to_string(last_token));
      if (now_ms < i->second.now_ms)
        fail("lock table time of " + node + " went back from " + std::to_string(i->second.now_ms)
             + " to " + std::to_string(now_ms));
    }
    lock_seen_[node] = lock_seen{incarnation, last_token, now_ms};
    const auto values = std::make_pair(last_token, now_ms);
    auto [at, fresh] = lock_by_index_.emplace(index, values);
    if (!fresh && at->second != values)
      fail("state machine safety: " + node + " has another lock table counter or clock at index "
           + std::to_string(index));
    auto out_of_order = [](const std::pair<uint64_t, uint64_t>& lo, const std::pair<uint64_t, uint64_t>& hi) {
      return lo.first > hi.first || lo.second > hi.second;
    };
    if ((at != lock_by_index_.begin() && out_of_order(std::prev(at)->second, values))
        || (std::next(at) != lock_by_index_.end() && out_of_order(values, std::next(at)->second)))
      fail("fencing: the lock table counter or clock of " + node + " at index "
           + std::to_string(index) + " is out of log order");
  }

  // ---- the queue shard ----
  // The shard's snapshot on a node whose last applied queue command is `index` (its
  // state at every index from there up to the next queue command).
  void on_queue_shard(const std::string& node, uint64_t index, uint64_t shard_hash) {
    auto [i, fresh] = queue_shards_.emplace(index, shard_hash);
    if (!fresh && i->second != shard_hash)
      fail("state machine safety: " + node + " holds a different queue shard at index "
           + std::to_string(index));
  }

  // Log order: every committed queue command, before its effects below. The shard's
  // time is the newest now_ms of the commands so far.
  void on_queue_command(uint64_t index, uint64_t now_ms) {
    if (index <= q_last_)
      fail("queue: command " + std::to_string(index) + " observed after " + std::to_string(q_last_));
    q_last_ = index;
    q_now_ = std::max(q_now_, now_ms);
  }
  // An enqueue at `index` whose outcome was ok, with the id it answered.
  void on_enqueued(uint64_t index, const std::string& queue, const std::string& id) {
    const auto suffix = "-" + std::to_string(index);
    if (id.size() <= suffix.size() || id.compare(id.size() - suffix.size(), suffix.size(), suffix) != 0)
      fail("queue: enqueue at index " + std::to_string(index) + " answered id " + id);
    auto [at, fresh] = q_ids_.emplace(id, index);
    if (!fresh) {
      fail("queue: message id " + id + " given twice, at index " + std::to_string(at->second)
           + " and " + std::to_string(index));
      return;
    }
    auto& m = q_msgs_[index];
    m.queue = queue;
    m.id = id;
    q_order_[queue].insert(index);
    q_undelivered_[queue].insert(index);
  }
  // The client that proposed the enqueue saw its ok.
  void on_enqueue_acknowledged(const std::string& id) {
    if (auto* m = q_find(id, "acknowledged enqueue"))
      m->acknowledged = true;
  }
  // A configure at `index` whose outcome was ok (it creates the queue if need be).
  void on_queue_configured(uint64_t /*index*/, const std::string& queue, uint64_t max_deliveries) {
    q_max_deliveries_[queue] = max_deliveries;
  }
  // One delivery of a dequeue at `index` (in the outcome's order), with its count.
  void on_delivered(uint64_t index, const std::string& queue, const std::string& id,
                    uint64_t receipt, uint64_t deliveries, uint64_t visibility_ms) {
    auto* m = q_find(id, "delivery");
    if (!m)
      return;
    const auto where = " at index " + std::to_string(index);
    if (m->queue != queue)
      return fail("queue: a dequeue of " + queue + where + " delivered " + id + " of " + m->queue);
    if (m->ended != 0)
      return fail("queue: " + id + " delivered" + where + " after it was " + m->end_reason
                  + " at index " + std::to_string(m->ended));
    if (receipt != index)
      return fail("queue: delivery of " + id + where + " has receipt " + std::to_string(receipt));
    if (m->in_flight)
      return fail("queue: " + id + " delivered again" + where + " while its delivery "
                  + std::to_string(m->receipt) + " is in flight (deadline "
                  + std::to_string(m->deadline_ms) + ", shard time " + std::to_string(q_now_) + ")");
    if (m->dead)
      return fail("queue: " + id + " delivered" + where + " from the dead-letter queue");
    if (deliveries != m->deliveries + 1)
      return fail("queue: delivery of " + id + where + " counts " + std::to_string(deliveries)
                  + " deliveries, expected " + std::to_string(m->deliveries + 1));
    if (m->first_delivery == 0) {
      auto& waiting = q_undelivered_[queue];
      const auto e = q_ids_.at(id);
      if (waiting.empty() || *waiting.begin() != e)
        return fail("queue: first deliveries of " + queue + " out of FIFO order: " + id + where
                    + " before " + (waiting.empty() ? std::string("?") : q_msgs_.at(*waiting.begin()).id)
                    + ", enqueued earlier");
      waiting.erase(waiting.begin());
      m->first_delivery = index;
    }
    m->deliveries = deliveries;
    m->in_flight = true;
    m->receipt = receipt;
    m->deadline_ms = q_now_ + visibility_ms;
    q_in_flight_.insert(q_ids_.at(id));
  }
  // An ack at `index` whose outcome was ok; receipt as the command quoted it.
  void on_acked(uint64_t index, const std::string& queue, const std::string& id, uint64_t receipt) {
    if (auto* m = q_settle(index, queue, id, receipt, "ack"))
      q_end(*m, index, "acked");
  }
  // A nack at `index` whose outcome was ok; dead_lettered as the outcome said.
  void on_nacked(uint64_t index, const std::string& queue, const std::string& id, uint64_t receipt,
                 bool dead_lettered) {
    if (auto* m = q_settle(index, queue, id, receipt, "nack"))
      q_failed(index, *m, dead_lettered, "nack");
  }
  // An expire at `index`, the ids whose delivery it reported expired and those it
  // reported dead-lettered: exactly the deliveries in flight whose deadline is at or
  // before the shard's time expire. (The shard moves at most max_expire_per_command per
  // command; the simulation stays far below.)
  void on_expired(uint64_t index, const std::vector<std::string>& ids,
                  const std::vector<std::string>& dead_ids) {
    const auto what = "queue: expire at index " + std::to_string(index) + " (shard time "
                      + std::to_string(q_now_) + ")";
    std::set<uint64_t> reported;
    for (const auto& id : ids) {
      auto* m = q_find(id, "expiry");
      if (!m)
        return;
      if (!m->in_flight || m->deadline_ms > q_now_)
        return fail(what + " expired " + id + (m->in_flight ? ", due at "
                    + std::to_string(m->deadline_ms) : ", which is not in flight"));
      reported.insert(q_ids_.at(id));
    }
    std::set<std::string> dead(dead_ids.begin(), dead_ids.end());
    for (auto e : std::set<uint64_t>(q_in_flight_)) {
      auto& m = q_msgs_.at(e);
      if (m.deadline_ms > q_now_)
        continue;
      if (!reported.count(e))
        return fail(what + " left " + m.id + " in flight, due at " + std::to_string(m.deadline_ms));
      const bool died = dead.erase(m.id) > 0;
      q_failed(index, m, died, "visibility timeout");
    }
    if (!dead.empty())
      fail(what + " dead-lettered " + *dead.begin() + ", whose delivery did not time out");
  }
  // A redrive at `index` whose outcome was ok moved `count` dead messages (at most
  // `max`): the oldest ones of the queue's DLQ.
  void on_redriven(uint64_t index, const std::string& queue, uint64_t max, uint64_t count) {
    for (auto e : q_oldest_dead(index, queue, max, count, "redrive")) {
      auto& m = q_msgs_.at(e);
      m.dead = false;
      m.deliveries = 0;
    }
  }
  // A purge_dead at `index` whose outcome was ok dropped `count` dead messages (at most
  // `max`): the oldest ones of the queue's DLQ.
  void on_purged(uint64_t index, const std::string& queue, uint64_t max, uint64_t count) {
    for (auto e : q_oldest_dead(index, queue, max, count, "purge_dead"))
      q_end(q_msgs_.at(e), index, "purged from the DLQ");
  }
  // delete_queue at `index` succeeded: every message of the queue ends, its settings go.
  void on_queue_deleted(uint64_t index, const std::string& queue) {
    auto& order = q_order_[queue];
    for (auto e : order) {
      auto& m = q_msgs_.at(e);
      if (m.ended == 0)
        q_end(m, index, "deleted with its queue");
    }
    q_undelivered_[queue].clear();
    q_max_deliveries_.erase(queue);
  }

  // A node's `queue` after it applied or restored `index`. where_is(id) gives the state
  // of a message on the node (0: not found, 1 ready, 2 in flight, 3 delayed, 4 dead);
  // counts are its counters (ready, in flight, delayed, dead); dead_ids its DLQ list.
  template <class WhereIs>
  void on_queue_contents(const std::string& node, uint64_t index, const std::string& queue,
                         WhereIs&& where_is, const std::array<uint64_t, 4>& counts,
                         const std::vector<std::string>& dead_ids) {
    std::array<uint64_t, 4> expected{};
    std::vector<std::string> dead;
    auto order = q_order_.find(queue);
    if (order != q_order_.end()) {
      for (auto it = order->second.begin(); it != order->second.end() && *it <= index; ++it) {
        const auto& m = q_msgs_.at(*it);
        if (m.ended != 0 && m.ended <= index)
          continue;
        const int w = where_is(m.id);
        if (w < 1 || w > 4)
          return fail("queue: " + std::string(m.acknowledged ? "acknowledged" : "committed")
                      + " enqueue " + m.id + " of " + queue + " is lost on " + node + " at index "
                      + std::to_string(index));
        ++expected[static_cast<size_t>(w - 1)];
        if (w == 4)
          dead.push_back(m.id);
      }
    }
    static const char* const names[] = {"ready", "in flight", "delayed", "dead"};
    for (size_t k = 0; k < 4; ++k)
      if (counts[k] != expected[k])
        return fail("queue: " + node + " counts " + std::to_string(counts[k]) + " " + names[k]
                    + " messages in " + queue + " at index " + std::to_string(index) + ", but "
                    + std::to_string(expected[k]) + " of its live messages are " + names[k]
                    + " (one in two states, or an ended one back)");
    if (dead != dead_ids)
      fail("queue: the DLQ list of " + queue + " on " + node + " at index " + std::to_string(index)
           + " is not its dead messages in id order");
  }

  // Liveness, after `queue` was drained empty: every committed enqueue of it was
  // delivered at least once and acked (unless its queue was deleted).
  void check_queue_drained(const std::string& queue) {
    auto order = q_order_.find(queue);
    if (order == q_order_.end())
      return;
    for (auto e : order->second) {
      const auto& m = q_msgs_.at(e);
      const std::string who = std::string(m.acknowledged ? "acknowledged" : "committed") + " enqueue "
                              + m.id + " of " + queue;
      if (m.first_delivery == 0 && m.ended == 0)
        return fail("liveness: " + who + " was never delivered");
      if (m.ended == 0)
        return fail("liveness: " + who + " was delivered but is still in the drained queue");
    }
  }
  // Messages of `queue` delivered at least once / all committed (for the trace).
  size_t queue_messages(const std::string& queue) const {
    auto order = q_order_.find(queue);
    return order == q_order_.end() ? 0 : order->second.size();
  }

  // Records a violation found by the caller (e.g. liveness).
  void fail(const std::string& what) {
    if (violation_.empty())
      violation_ = what;
  }

 private:
  struct pair_hash {
    size_t operator()(const std::pair<uint64_t, uint64_t>& p) const {
      return static_cast<size_t>(mix(p.first * 0x9e3779b97f4a7c15ull, p.second));
    }
  };
  static std::string key_read(const std::string& node, uint64_t id) {
    return node + "#" + std::to_string(id);
  }
  void check_monotonic(std::unordered_map<std::string, std::pair<uint64_t, uint64_t>>& seen,
                       const std::string& node, uint64_t incarnation, uint64_t value,
                       const char* what) {
    auto i = seen.find(node); // find first: emplace would copy the key every call
    if (i == seen.end()) {
      seen.emplace(node, std::make_pair(incarnation, value));
      return;
    }
    auto& [inc, v] = i->second;
    if (inc == incarnation && value < v)
      fail(std::string(what) + " of " + node + " decreased from " + std::to_string(v) + " to "
           + std::to_string(value));
    inc = incarnation;
    v = value;
  }

  struct queue_message {
    std::string queue;
    std::string id;
    uint64_t ended = 0;          // index of the ack / purge / deletion that ended it; 0: live
    const char* end_reason = "";
    uint64_t first_delivery = 0; // index of its first delivery; 0: never delivered
    uint64_t deliveries = 0;     // its delivery count (a redrive resets it)
    uint64_t receipt = 0;        // its latest delivery
    uint64_t deadline_ms = 0;    // when that delivery's visibility ends (shard time)
    bool in_flight = false;      // that delivery has not failed yet
    bool dead = false;           // in the dead-letter queue
    bool acknowledged = false;   // its client saw the enqueue's ok
  };
  uint64_t q_max_deliveries(const std::string& queue) const {
    auto i = q_max_deliveries_.find(queue);
    return i == q_max_deliveries_.end() ? 5 : i->second; // queue::default_max_deliveries
  }
  // The checks of a successful ack or nack: only of the current delivery.
  queue_message* q_settle(uint64_t index, const std::string& queue, const std::string& id,
                          uint64_t receipt, const char* kind) {
    auto* m = q_find(id, kind);
    if (!m)
      return nullptr;
    const auto what = std::string(kind) + " of " + id + " at index " + std::to_string(index);
    if (m->queue != queue)
      fail("queue: " + what + " in " + queue + " succeeded, it is in " + m->queue);
    else if (m->ended != 0)
      fail("queue: " + what + " succeeded after it was " + m->end_reason + " at index "
           + std::to_string(m->ended));
    else if (!m->in_flight)
      fail("queue: " + what + " succeeded, but it is not in flight");
    else if (receipt != 0 && receipt != m->receipt)
      fail("queue: " + what + " succeeded with receipt " + std::to_string(receipt)
           + ", the current delivery is " + std::to_string(m->receipt));
    else
      return m;
    return nullptr;
  }
  // A delivery failed (nack or visibility timeout): it dies iff its count reached the
  // queue's max_deliveries (as configured when it fails).
  void q_failed(uint64_t index, queue_message& m, bool died, const char* why) {
    m.in_flight = false;
    q_in_flight_.erase(q_ids_.at(m.id));
    const auto limit = q_max_deliveries(m.queue);
    if (died != (m.deliveries >= limit))
      fail("queue: " + m.id + " after " + std::to_string(m.deliveries) + " deliveries (max "
           + std::to_string(limit) + ") failed by " + why + " at index " + std::to_string(index)
           + (died ? " and went" : " but did not go") + " to the dead-letter queue");
    m.dead = died;
  }
  // The `count` oldest dead messages of `queue`, which must be min(max, its DLQ size).
  std::vector<uint64_t> q_oldest_dead(uint64_t index, const std::string& queue, uint64_t max,
                                      uint64_t count, const char* what) {
    std::vector<uint64_t> dead;
    size_t all = 0;
    if (auto order = q_order_.find(queue); order != q_order_.end())
      for (auto e : order->second) {
        const auto& m = q_msgs_.at(e);
        if (m.ended == 0 && m.dead && all++ < count)
          dead.push_back(e);
      }
    if (count != std::min<uint64_t>(max, all))
      fail("queue: " + std::string(what) + " of " + queue + " at index " + std::to_string(index)
           + " moved " + std::to_string(count) + " of max " + std::to_string(max) + ", the DLQ held "
           + std::to_string(all));
    return dead;
  }
  queue_message* q_find(const std::string& id, const char* what) {
    auto i = q_ids_.find(id);
    if (i == q_ids_.end()) {
      fail(std::string("queue: ") + what + " of " + id + ", which no committed enqueue created");
      return nullptr;
    }
    return &q_msgs_.at(i->second);
  }
  void q_end(queue_message& m, uint64_t index, const char* why) {
    m.ended = index;
    m.end_reason = why;
    m.dead = false;
    if (m.in_flight) {
      m.in_flight = false;
      q_in_flight_.erase(q_ids_.at(m.id));
    }
    if (m.first_delivery == 0)
      q_undelivered_[m.queue].erase(q_ids_.at(m.id));
  }

  struct lock_seen {
    uint64_t incarnation;
    uint64_t last_token;
    uint64_t now_ms;
  };

  std::string violation_;
  std::map<uint64_t, std::string> leaders_;
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> terms_;   // node -> (incarnation, term)
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> commits_; // node -> (incarnation, commit)
  std::map<std::string, std::pair<uint64_t, uint64_t>> persisted_; // node -> (term, commit)
  // (index, term) -> (digest, term of the previous entry)
  std::unordered_map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, uint64_t>, pair_hash> entries_;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> committed_; // index -> (term, digest)
  std::unordered_map<uint64_t, uint64_t> states_;                // index -> state hash
  std::map<std::string, uint64_t> reads_;                        // read -> min index
  std::unordered_map<std::string, lock_seen> lock_seen_;         // node -> last lock table state
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> lock_by_index_; // index -> (last token, now_ms)
  std::unordered_map<uint64_t, uint64_t> lock_tables_;            // index -> lock table hash
  std::unordered_map<uint64_t, uint64_t> queue_shards_;           // index -> queue shard hash
  uint64_t q_last_ = 0;                                   // last queue command observed
  uint64_t q_now_ = 0;                                    // the shard's time after it
  std::map<uint64_t, queue_message> q_msgs_;              // enqueue index -> message
  std::unordered_map<std::string, uint64_t> q_ids_;       // id -> enqueue index
  std::map<std::string, std::set<uint64_t>> q_order_;     // queue -> enqueue indexes
  std::map<std::string, std::set<uint64_t>> q_undelivered_; // queue -> live, never delivered
  std::set<uint64_t> q_in_flight_;                        // enqueue indexes in flight
  std::map<std::string, uint64_t> q_max_deliveries_;      // configured queues
};

} // namespace dsync::sim
