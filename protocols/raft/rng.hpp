// A small deterministic PRNG (splitmix64). The standard distributions are
// implementation-defined, so replicas and simulation replays would differ
// between standard libraries; this one gives the same sequence everywhere.
#pragma once

#include <cstdint>

namespace dsync::raft {

class rng {
 public:
  explicit rng(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n); n > 0. (The modulo bias is negligible for small n.)
  uint64_t below(uint64_t n) { return next() % n; }

  // True with probability num/den.
  bool chance(uint64_t num, uint64_t den) { return below(den) < num; }

 private:
  uint64_t state_;
};

} // namespace dsync::raft
