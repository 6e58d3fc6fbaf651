#include "actors/log.hpp"

#include <chrono>
#include <ctime>
#include <unistd.h>

namespace dsync::log {

namespace {
std::string node_name = "-";
std::atomic<int> min_level{static_cast<int>(log_level::info)};
}  // namespace

void init(std::string node_id, log_level level) {
  node_name = std::move(node_id);
  min_level = static_cast<int>(level);
}

bool enabled(log_level level) {
  return level != log_level::off && static_cast<int>(level) >= min_level.load(std::memory_order_relaxed);
}

void write(log_level level, const char* subsystem, const std::string& message) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  auto line = fmt::format("{}.{:03}Z {:<5} {} [{}] {}\n", stamp, ms, to_string(level), node_name,
                          subsystem, message);
  // One write per line; a short write on a pipe is retried so the line stays whole.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    auto n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace dsync::log
