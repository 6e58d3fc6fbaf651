// Linearizability of one key's history, seen as a register (Herlihy & Wing 1990), by the
// search of Wing & Gong with Lowe's memoisation ("Testing for linearizability", 2017):
// repeatedly pick an operation that may take effect next (no other pending operation
// finished before it started), apply it to the register, backtrack on a mismatch, and
// remember (set of operations applied, register value) pairs that failed.
//
// Operations: reads (with the value they returned), writes and erases. An operation
// without a response (its node died, it failed with an indeterminate error, it expired)
// is optional: it may take effect at any time after its invocation, or never.
// A revert (write-back's loss window when a node dies) is an optional operation that
// sets the register to any value written before it (or to "absent").
//
// The directory serialises each key, so histories are short and the search is fast;
// `max_states` bounds it anyway (the result is then `gave_up`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

namespace dsync::cache::testing {

struct history_op {
  enum kind_t { read, write, erase, revert } kind = read;
  uint64_t invoked = 0;
  uint64_t responded = std::numeric_limits<uint64_t>::max();  // max: no response
  std::optional<std::string> val;  // read: returned; write: written
  std::string label;               // for messages, e.g. "n1 #17 put v3"
  bool optional() const { return responded == std::numeric_limits<uint64_t>::max(); }
};

struct lin_result {
  bool ok = true;
  bool gave_up = false;
  std::string why;
};

inline lin_result check_linearizable(const std::vector<history_op>& ops, size_t max_states = 2000000) {
  lin_result res;
  const size_t n = ops.size();
  if (n == 0) return res;
  // Values as small integers; 0 is "absent". A revert makes the register "wild": any of
  // its candidate values, fixed by the next read.
  std::map<std::optional<std::string>, int> ids;
  ids[std::nullopt] = 0;
  auto id_of = [&](const std::optional<std::string>& v) {
    auto it = ids.find(v);
    if (it != ids.end()) return it->second;
    int id = static_cast<int>(ids.size());
    ids.emplace(v, id);
    return id;
  };
  std::vector<int> vid(n, 0);
  for (size_t i = 0; i < n; ++i)
    if (ops[i].kind != history_op::revert) vid[i] = ops[i].kind == history_op::erase ? 0 : id_of(ops[i].val);
  std::vector<std::set<int>> wild_sets;  // per revert op: candidates
  std::vector<int> wild_of(n, -1);
  for (size_t i = 0; i < n; ++i) {
    if (ops[i].kind != history_op::revert) continue;
    std::set<int> cand{0};
    for (size_t j = 0; j < n; ++j)
      if (ops[j].kind == history_op::write && ops[j].invoked < ops[i].invoked) cand.insert(vid[j]);
    wild_of[i] = static_cast<int>(wild_sets.size());
    wild_sets.push_back(std::move(cand));
  }

  size_t required = 0;
  for (const auto& o : ops)
    if (!o.optional()) ++required;

  const size_t words = (n + 63) / 64;
  struct key_hash {
    size_t operator()(const std::vector<uint64_t>& k) const {
      size_t h = 1469598103934665603ull;
      for (auto w : k) h = (h ^ w) * 1099511628211ull;
      return h;
    }
  };
  std::unordered_set<std::vector<uint64_t>, key_hash> failed;
  std::vector<uint64_t> done(words + 1, 0);  // last word: register state
  // Register state encoding: value id >= 0, or -(wild index) - 1.
  size_t states = 0;
  size_t deepest = 0;
  std::vector<size_t> best_prefix, prefix;

  std::function<bool(int, size_t)> search = [&](int reg, size_t applied_required) -> bool {
    if (applied_required == required) return true;
    if (++states > max_states) {
      res.gave_up = true;
      return false;
    }
    done[words] = static_cast<uint64_t>(static_cast<int64_t>(reg));
    if (failed.count(done)) return false;
    uint64_t min_resp = std::numeric_limits<uint64_t>::max();
    for (size_t i = 0; i < n; ++i)
      if (!(done[i / 64] >> (i % 64) & 1)) min_resp = std::min(min_resp, ops[i].responded);
    for (size_t i = 0; i < n; ++i) {
      if (done[i / 64] >> (i % 64) & 1) continue;
      if (ops[i].invoked > min_resp) continue;
      int next = reg;
      const auto& o = ops[i];
      if (o.kind == history_op::read) {
        if (reg >= 0) {
          if (reg != vid[i]) continue;
        } else if (!wild_sets[static_cast<size_t>(-reg - 1)].count(vid[i])) {
          continue;
        }
        next = vid[i];
      } else if (o.kind == history_op::revert) {
        next = -wild_of[i] - 1;
      } else {
        next = vid[i];
      }
      done[i / 64] |= uint64_t{1} << (i % 64);
      prefix.push_back(i);
      if (prefix.size() > deepest) {
        deepest = prefix.size();
        best_prefix = prefix;
      }
      bool ok = search(next, applied_required + (o.optional() ? 0 : 1));
      prefix.pop_back();
      done[i / 64] &= ~(uint64_t{1} << (i % 64));
      if (ok) return true;
      if (res.gave_up) return false;
    }
    done[words] = static_cast<uint64_t>(static_cast<int64_t>(reg));
    failed.insert(done);
    return false;
  };

  if (search(0, 0)) return res;
  res.ok = false;
  if (res.gave_up) {
    res.why = "checker gave up after " + std::to_string(max_states) + " states";
    return res;
  }
  // Explain: the longest linearizable prefix, and the operations that could not follow.
  std::string why = "not linearizable; longest linearizable prefix:";
  std::vector<bool> in_prefix(n, false);
  for (auto i : best_prefix) {
    why += "\n    " + ops[i].label;
    in_prefix[i] = true;
  }
  why += "\n  then none of these fits:";
  uint64_t min_resp = std::numeric_limits<uint64_t>::max();
  for (size_t i = 0; i < n; ++i)
    if (!in_prefix[i]) min_resp = std::min(min_resp, ops[i].responded);
  for (size_t i = 0; i < n; ++i)
    if (!in_prefix[i] && ops[i].invoked <= min_resp) why += "\n    " + ops[i].label;
  res.why = why;
  return res;
}

}  // namespace dsync::cache::testing
