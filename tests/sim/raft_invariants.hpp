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
// Header-only so that unit tests can feed it broken histories.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
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
};

} // namespace dsync::sim
