// Replacement order of a cache controller's lines: LRU or LFU.
//
// The controller asks for the first line in eviction order that it may evict (a line in
// a transient state may not be); the order itself knows nothing of states. Uses are
// counted by a logical clock that ticks once per touch, never by time.
//   lru: least recently used first.
//   lfu: fewest uses since the line was filled first; among equal counts the least
//        recently used. Counts start at 1 on fill and are forgotten on eviction (no aging).
// All operations are O(log n) for n lines; victim() walks in order until `evictable`
// accepts a key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "protocols/cache/types.hpp"

namespace dsync::cache {

class replacer {
 public:
  explicit replacer(replacement_kind kind) : kind_(kind) {}

  // A line was filled (or re-filled): one use, most recent. Re-inserting resets the count.
  void insert(const std::string& key);
  // A hit (`times` hits at once: LFU counts them all, LRU makes the key most recent).
  // Ignored for keys not inserted, or if times is 0.
  void touch(const std::string& key, uint64_t times = 1);
  void erase(const std::string& key);
  void clear();
  size_t size() const { return rank_.size(); }

  // The first key in eviction order for which evictable(key) is true, if any.
  template <class Pred>
  std::optional<std::string> victim(Pred&& evictable) const {
    for (const auto& [uses, last, key] : order_)
      if (evictable(key)) return key;
    return std::nullopt;
  }

  // Uses counted for `key` (0 if absent); for tests and metrics.
  uint64_t uses(const std::string& key) const;

 private:
  using entry = std::tuple<uint64_t, uint64_t, std::string>;  // (uses or 0 for lru, last use, key)

  replacement_kind kind_;
  uint64_t clock_ = 0;
  std::set<entry> order_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> rank_;  // key -> (uses, last use)
};

}  // namespace dsync::cache
