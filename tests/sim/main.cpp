// dsync-sim: deterministic cluster simulation.
//
//   dsync-sim --seeds N [--first S]   run seeds S .. S+N-1 (S defaults to 1)
//   dsync-sim --seed S [-v]           replay one seed, -v prints a trace
//
// Exit status 0 if every seed kept every invariant, 1 on the first
// violation (after printing the seed and the invariant), 2 on bad usage.
#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/sim/raft_sim.hpp"

namespace {

int usage(const char* why) {
  std::fprintf(stderr,
               "dsync-sim: %s\n"
               "usage: dsync-sim --seeds N [--first S] [-v]\n"
               "       dsync-sim --seed S [-v]\n",
               why);
  return 2;
}

bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s)
    return false;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || s[0] == '-')
    return false;
  out = v;
  return true;
}

} // namespace

int main(int argc, char** argv) {
  uint64_t first = 1;
  uint64_t count = 0;
  bool have_count = false;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    auto arg = std::string(argv[i]);
    auto value = [&](uint64_t& out) {
      return i + 1 < argc && parse_u64(argv[++i], out);
    };
    if (arg == "--seeds") {
      if (!value(count))
        return usage("--seeds needs a number");
      have_count = true;
    } else if (arg == "--first") {
      if (!value(first))
        return usage("--first needs a number");
    } else if (arg == "--seed") {
      if (!value(first))
        return usage("--seed needs a number");
      count = 1;
      have_count = true;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else {
      return usage(("unknown argument " + arg).c_str());
    }
  }
  if (!have_count)
    return usage("say which seeds to run");

  // The checkers must be able to fail: feed them broken histories first.
  if (auto missed = dsync::sim::run_checker_self_test(); !missed.empty()) {
    std::fprintf(stderr, "dsync-sim: invariant checker self-test FAILED, not caught: %s\n",
                 missed.c_str());
    return 1;
  }

  auto started = std::chrono::steady_clock::now();
  dsync::sim::sim_stats total;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    auto r = dsync::sim::run_raft_seed(seed, verbose);
    total.add(r.stats);
    if (verbose || count == 1)
      std::printf("seed %llu: %s\n", static_cast<unsigned long long>(seed),
                  r.stats.to_string().c_str());
    if (!r.ok) {
      std::printf("seed %llu: FAILED: %s\nreplay: dsync-sim --seed %llu -v\n",
                  static_cast<unsigned long long>(seed), r.violation.c_str(),
                  static_cast<unsigned long long>(seed));
      return 1;
    }
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("dsync-sim: %llu seeds (%llu..%llu) passed in %.1f s\n  totals: %s\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + count - 1), secs, total.to_string().c_str());
  return 0;
}
