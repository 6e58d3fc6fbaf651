// One line per event: time, level, node id, subsystem, message. Lines are written with a
// single write(2) so concurrent actors never tear each other's lines.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <string>

#include "app/settings.hpp"

namespace dsync::log {

// Set once at start-up, before any actor runs.
void init(std::string node_id, log_level level);
bool enabled(log_level level);
void write(log_level level, const char* subsystem, const std::string& message);

template <class... Ts>
void trace(const char* subsystem, fmt::format_string<Ts...> f, Ts&&... xs) {
  if (enabled(log_level::trace)) write(log_level::trace, subsystem, fmt::format(f, std::forward<Ts>(xs)...));
}
template <class... Ts>
void debug(const char* subsystem, fmt::format_string<Ts...> f, Ts&&... xs) {
  if (enabled(log_level::debug)) write(log_level::debug, subsystem, fmt::format(f, std::forward<Ts>(xs)...));
}
template <class... Ts>
void info(const char* subsystem, fmt::format_string<Ts...> f, Ts&&... xs) {
  if (enabled(log_level::info)) write(log_level::info, subsystem, fmt::format(f, std::forward<Ts>(xs)...));
}
template <class... Ts>
void warn(const char* subsystem, fmt::format_string<Ts...> f, Ts&&... xs) {
  if (enabled(log_level::warn)) write(log_level::warn, subsystem, fmt::format(f, std::forward<Ts>(xs)...));
}
template <class... Ts>
void error(const char* subsystem, fmt::format_string<Ts...> f, Ts&&... xs) {
  if (enabled(log_level::error)) write(log_level::error, subsystem, fmt::format(f, std::forward<Ts>(xs)...));
}

}  // namespace dsync::log
