// dsync-cache-sim: randomized simulation of MESI / MOSI / MOESI (cache_sim.hpp).
//
//   dsync-cache-sim --seeds N [--first S] [--protocol mesi|mosi|moesi|all]
//   dsync-cache-sim --seed S [--protocol P] [-v]     replay one seed (-v: every step)
//   --coverage: also print how often each table entry was taken, per protocol
//
// Exit status 0 if every seed kept every invariant, 1 on the first violation (after
// printing the seed, the protocol and the invariant), 2 on bad usage.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/sim/cache/cache_sim.hpp"

namespace {

int usage(const std::string& why) {
  std::fprintf(stderr,
               "dsync-cache-sim: %s\n"
               "usage: dsync-cache-sim --seeds N [--first S] [--protocol mesi|mosi|moesi|all] [--coverage]\n"
               "       dsync-cache-sim --seed S [--protocol mesi|mosi|moesi|all] [-v]\n",
               why.c_str());
  return 2;
}

bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s || s[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsync::cache;
  uint64_t first = 1, count = 0;
  bool have_count = false, verbose = false, coverage = false;
  std::vector<protocol> protos{protocol::mesi, protocol::mosi, protocol::moesi};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](uint64_t& out) { return i + 1 < argc && parse_u64(argv[++i], out); };
    if (arg == "--seeds") {
      if (!value(count)) return usage("--seeds needs a number");
      have_count = true;
    } else if (arg == "--first") {
      if (!value(first)) return usage("--first needs a number");
    } else if (arg == "--seed") {
      if (!value(first)) return usage("--seed needs a number");
      count = 1;
      have_count = true;
    } else if (arg == "--protocol") {
      if (i + 1 >= argc) return usage("--protocol needs mesi, mosi, moesi or all");
      std::string p = argv[++i];
      protocol one{};
      if (p == "all") protos = {protocol::mesi, protocol::mosi, protocol::moesi};
      else if (parse(p, one)) protos = {one};
      else return usage("unknown protocol " + p);
    } else if (arg == "--coverage") {
      coverage = true;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else {
      return usage("unknown argument " + arg);
    }
  }
  if (!have_count) return usage("say which seeds to run");

  if (auto missed = sim::run_checker_self_test(); !missed.empty()) {
    std::fprintf(stderr, "dsync-cache-sim: checker self-test FAILED, not caught: %s\n", missed.c_str());
    return 1;
  }

  auto started = std::chrono::steady_clock::now();
  sim::sim_stats total;
  for (auto proto : protos) {
    sim::sim_stats per_proto;
    for (uint64_t seed = first; seed < first + count; ++seed) {
      auto r = sim::run_cache_seed(seed, proto, verbose);
      total.add(r.stats);
      per_proto.add(r.stats);
      const std::string name{to_string(proto)};
      if (verbose || count == 1)
        std::printf("seed %llu %s (%s): %s\n", static_cast<unsigned long long>(seed), name.c_str(), r.setup.c_str(),
                    r.stats.to_string().c_str());
      if (!r.ok) {
        std::printf("seed %llu %s (%s): FAILED: %s\nreplay: dsync-cache-sim --seed %llu --protocol %s -v\n",
                    static_cast<unsigned long long>(seed), name.c_str(), r.setup.c_str(), r.violation.c_str(),
                    static_cast<unsigned long long>(seed), name.c_str());
        return 1;
      }
    }
    if (coverage)
      for (const auto& [t, n] : per_proto.transitions)
        std::printf("%s %s %llu\n", std::string(to_string(proto)).c_str(), t.c_str(), static_cast<unsigned long long>(n));
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("dsync-cache-sim: %llu seeds (%llu..%llu) x %zu protocols passed in %.1f s\n  totals: %s\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + count - 1), protos.size(), secs, total.to_string().c_str());
  return 0;
}
