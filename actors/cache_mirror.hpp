// A thread-safe copy of this node's readable cache lines, so that a read hit is answered
// on the thread that received the request, without a message to any actor.
//
// Why it exists: a hit used to travel HTTP gateway -> node actor -> cache service actor
// and back (two actor hops each way, each a mailbox and a scheduler wake-up), which cost
// several times a Redis GET. The cache service actor stays the only writer of the
// protocol state; this mirror only publishes the result of each of its steps.
//
// What it holds: for every key whose line on this node is in a state that serves a load
// locally (S, E, O, M: cache::readable), the line's value (nullopt: cached as absent) and
// state. Nothing else: a key in any other state, or without a line, is absent here, and
// the request takes the actor path as before.
//
// Coherence (single writer / multiple readers, every read returns the latest write): the
// cache service actor calls sync() after EVERY call into its controller, before it sends
// any message that step produced (Inv-Ack, Recall-Ack, data forwarded on Fwd-GetM, Put
// on eviction, ...) and before it delivers any completion. A remote write completes only
// after this node answered the invalidation, recall or forward that took its copy away,
// so by then the entry is gone: a read that finds an entry reads a value that was current
// at the moment of the lookup (the entry was set by a step that happened before, and the
// step that ends it has not happened yet). clear() runs when the controller is dropped
// (a node that was stopped long enough to be declared dead). Reads are refused, whatever
// the entries, once the actor's heartbeat (live_until) is older than its lease (half of
// what the peers' failure detector allows, see cache_service.cpp): a process stopped long
// enough to be declared dead by its peers must not answer from its old lines before the
// actor has noticed and dropped them.
//
// Replacement: a hit served here counts for LRU/LFU too. The first use of an entry since
// the last take_uses() queues its key (a small per-shard list under its own mutex); later
// uses only bump an atomic; the actor drains them into the controller (note_hits).
//
// Threads: lookup() and hits() from any thread; everything else from the cache service
// actor only (the single writer). Each of 32 shards has a reader-writer lock: readers of a
// shard never block each other; the writer holds a shard's lock only to swap a pointer.
// The lock prefers the writer (glibc's std::shared_mutex prefers readers, and a steady
// stream of hits then starves the cache actor, whose update the next coherence message
// waits for: with three readers spinning on two cores, 175 us per update against 2.5 us
// with this lock, in tests/unit/actors/cache_mirror_test.cpp).
// Header-only; depends on protocols/cache only (the cache simulation uses it too).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <pthread.h>

#include "protocols/cache/cache_controller.hpp"
#include "protocols/cache/types.hpp"

namespace dsync {

// A reader-writer lock whose waiting writer goes before newly arriving readers (glibc's
// PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP); usable with std::shared_lock and
// std::unique_lock. Not recursive.
class writer_first_mutex {
 public:
  writer_first_mutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "pthread_rwlock_init");
  }
  ~writer_first_mutex() { pthread_rwlock_destroy(&lock_); }
  writer_first_mutex(const writer_first_mutex&) = delete;
  writer_first_mutex& operator=(const writer_first_mutex&) = delete;

  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

// The get latency histogram, recorded by the actor path (cache_service.cpp) and by the
// fast path (http_gateway.cpp): the same name, help and buckets on both sides.
inline constexpr const char* cache_get_seconds_metric = "dsync_cache_get_seconds";
inline constexpr const char* cache_get_seconds_help = "Cache get latency on this node";

class cache_mirror {
 public:
  using clock = std::chrono::steady_clock;

  // A readable line as the controller held it after some step.
  struct line_copy {
    cache::value value;  // nullopt: the key is cached as absent (a get answers not_found)
    cache::cache_state state = cache::cache_state::I;
  };
  using hit = std::shared_ptr<const line_copy>;

  static constexpr size_t shard_count = 32;

  cache_mirror() = default;
  cache_mirror(const cache_mirror&) = delete;
  cache_mirror& operator=(const cache_mirror&) = delete;

  // --- readers (any thread) ---------------------------------------------------------

  // The copy of `key`'s line if it is readable here and the mirror is live at `now`, else
  // nullptr (take the actor path). A hit is counted and remembered for replacement.
  hit lookup(const std::string& key, clock::time_point now) {
    if (now.time_since_epoch().count() >= live_until_.load(std::memory_order_acquire)) return nullptr;
    shard& s = shard_of(key);
    std::shared_lock<writer_first_mutex> lock(s.mu);
    auto it = s.lines.find(key);
    if (it == s.lines.end()) return nullptr;
    s.hits.fetch_add(1, std::memory_order_relaxed);
    if (it->second.uses.fetch_add(1, std::memory_order_relaxed) == 0) {
      std::lock_guard<std::mutex> g(s.used_mu);  // first use since the last take_uses()
      s.used.push_back(key);
      uses_pending_.store(true, std::memory_order_release);
    }
    return it->second.copy;
  }

  // The entry of `key` (nullptr if none), whether live or not, without counting a use: for
  // tests and checks.
  hit peek(const std::string& key) const {
    const shard& s = shard_of(key);
    std::shared_lock<writer_first_mutex> lock(s.mu);
    auto it = s.lines.find(key);
    return it == s.lines.end() ? nullptr : it->second.copy;
  }

  // Hits served by lookup() since construction (never reset, not even by clear()).
  uint64_t hits() const {
    uint64_t n = 0;
    for (const auto& s : shards_) n += s.hits.load(std::memory_order_relaxed);
    return n;
  }

  // --- the writer (the cache service actor) -----------------------------------------

  void set(const std::string& key, cache::cache_state state, const cache::value& v) {
    auto copy = std::make_shared<const line_copy>(line_copy{v, state});
    shard& s = shard_of(key);
    std::unique_lock<writer_first_mutex> lock(s.mu);
    s.lines[key].copy.swap(copy);
    lock.unlock();  // the old copy (if any) is freed outside the lock
  }

  void erase(const std::string& key) {
    shard& s = shard_of(key);
    hit old;
    std::unique_lock<writer_first_mutex> lock(s.mu);
    auto it = s.lines.find(key);
    if (it == s.lines.end()) return;
    old = std::move(it->second.copy);
    s.lines.erase(it);
  }

  // Forgets every line (the controller was replaced: its lines are gone).
  void clear() {
    for (auto& s : shards_) {
      std::unordered_map<std::string, slot> old;
      {
        std::unique_lock<writer_first_mutex> lock(s.mu);
        old.swap(s.lines);
      }
      std::lock_guard<std::mutex> g(s.used_mu);
      s.used.clear();
    }
  }

  // Brings the entries of `keys` in line with `ctrl`: a readable line is copied, any
  // other state (or no line) erases the entry. Call with ctrl.take_changed() after each
  // step of the controller, before acting on the step's effects.
  void sync(const cache::controller& ctrl, const std::vector<std::string>& keys) {
    for (const auto& key : keys) {
      auto st = ctrl.state(key);
      const cache::value* v = cache::readable(st) ? ctrl.data(key) : nullptr;
      if (v) set(key, st, *v);
      else erase(key);
    }
  }

  // Lookups are served only while now < t. The actor pushes t forward on its tick.
  void live_until(clock::time_point t) {
    live_until_.store(t.time_since_epoch().count(), std::memory_order_release);
  }

  // Keys read through lookup() since the last call, each with its number of reads (keys
  // erased meanwhile are left out). Cheap when nothing was read.
  std::vector<std::pair<std::string, uint64_t>> take_uses() {
    std::vector<std::pair<std::string, uint64_t>> out;
    if (!uses_pending_.exchange(false, std::memory_order_acq_rel)) return out;
    for (auto& s : shards_) {
      std::vector<std::string> keys;
      {
        std::lock_guard<std::mutex> g(s.used_mu);
        keys.swap(s.used);
      }
      if (keys.empty()) continue;
      std::shared_lock<writer_first_mutex> lock(s.mu);
      for (auto& k : keys) {
        auto it = s.lines.find(k);
        if (it == s.lines.end()) continue;
        if (auto n = it->second.uses.exchange(0, std::memory_order_relaxed)) out.emplace_back(std::move(k), n);
      }
    }
    return out;
  }

  // Entries (tests).
  size_t size() const {
    size_t n = 0;
    for (const auto& s : shards_) {
      std::shared_lock<writer_first_mutex> lock(s.mu);
      n += s.lines.size();
    }
    return n;
  }

 private:
  struct slot {
    hit copy;
    std::atomic<uint64_t> uses{0};  // reads since the key was last queued in `used`
  };
  struct alignas(64) shard {
    mutable writer_first_mutex mu;  // guards `lines` (its structure and each slot's copy)
    std::unordered_map<std::string, slot> lines;
    std::atomic<uint64_t> hits{0};
    std::mutex used_mu;
    std::vector<std::string> used;  // keys whose `uses` went from 0 to 1
  };

  shard& shard_of(const std::string& key) { return shards_[std::hash<std::string>{}(key) % shard_count]; }
  const shard& shard_of(const std::string& key) const {
    return shards_[std::hash<std::string>{}(key) % shard_count];
  }

  std::array<shard, shard_count> shards_;
  std::atomic<bool> uses_pending_{false};
  std::atomic<clock::rep> live_until_{0};  // steady_clock ticks; 0: not live yet
};

}  // namespace dsync
