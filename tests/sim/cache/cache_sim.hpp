// dsync-cache-sim: randomized simulation of the coherence protocols.
//
// One seed drives everything: 2-5 nodes (each a cache controller and a directory over a
// consistent-hash ring), write-back or write-through, LRU or LFU, 1-3 lines per cache
// over 2-4 keys (so evictions are constant), random client gets/puts/deletes/invalidates
// and expiries, random delivery order of messages (FIFO per pair of components, as CAF
// keeps it) and of memory completions, and — in some seeds — node deaths (losing the
// messages still in their send buffers and, at random, their memory writes in flight),
// restarts, the directory epochs that move keys to new homes, and pauses: a node stopped
// long enough for some (or none) of its peers to declare it dead, which then drops its
// cache and rejoins as the cache service does (protocols/cache/lease.hpp).
//
// Between steps, reads are also served from each node's cache_mirror as the HTTP fast
// path serves them (actors/cache_mirror.hpp), and go into the histories.
//
// After every step: single writer / multiple readers, every readable copy of a key holds
// the same value, every node's mirror holds exactly its readable lines, at most one memory
// operation per key in flight, no message any component found impossible, no message
// corrupted on the wire. Then a quiet phase
// without new faults must complete every request, and every key's history must be
// linearizable (write-back's loss window on a death admits one revert per key).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "protocols/cache/types.hpp"

namespace dsync::cache::sim {

struct sim_stats {
  uint64_t steps = 0;
  uint64_t messages = 0;
  uint64_t ops = 0;          // client requests completed
  uint64_t hits = 0, misses = 0, evictions = 0;
  uint64_t fast_hits = 0;    // reads served by a node's mirror (the HTTP fast path)
  uint64_t mem_reads = 0, mem_writes = 0;
  uint64_t deaths = 0, restarts = 0, epochs = 0;
  uint64_t freezes = 0;      // nodes stopped long enough to be declared dead, then resumed
  // node_down handled at directories, by role of the dead node: sharer, owner,
  // requester, forwarded-to owner, invalidated sharer, recalled holder.
  uint64_t recoveries[6] = {};
  // Table entries taken: "cache <state> <event>" / "directory <row> <event>" -> count.
  std::map<std::string, uint64_t> transitions;

  void add(const sim_stats& o);
  std::string to_string() const;
};

struct sim_result {
  bool ok = true;
  std::string violation;  // the first invariant violated
  std::string setup;      // what the seed chose
  sim_stats stats;
};

// Runs one seed of `proto`. verbose: print every step.
sim_result run_cache_seed(uint64_t seed, protocol proto, bool verbose);

// Feeds broken histories to the checkers; empty if every one was caught, else what
// slipped through.
std::string run_checker_self_test();

}  // namespace dsync::cache::sim
