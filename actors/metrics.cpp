#include "actors/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace dsync::metrics {

static_assert(std::atomic<double>::is_always_lock_free,
              "recording must not take a lock: std::atomic<double> must be lock-free");
static_assert(std::atomic<uint64_t>::is_always_lock_free);

namespace {

// C++17 has no atomic<double>::fetch_add. A CAS loop compares object representations, so
// it terminates even when the stored value is NaN.
void atomic_add(std::atomic<double>& target, double v) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

bool is_alpha_or_underscore(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_valid_metric_name(std::string_view s) {
  if (s.empty() || !(is_alpha_or_underscore(s[0]) || s[0] == ':')) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return is_alpha_or_underscore(c) || is_digit(c) || c == ':'; });
}

bool is_valid_label_name(std::string_view s) {
  if (s.empty() || !is_alpha_or_underscore(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return is_alpha_or_underscore(c) || is_digit(c); });
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
// Prometheus rejects a scrape that is not valid UTF-8, so one bad label value would
// hide every metric of the node.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string quoted(const std::string& name) { return "metric '" + name + "'"; }

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw std::invalid_argument(quoted(name) + ": " + what);
}

// Drops a trailing +Inf (the +Inf bucket always exists) and checks the rest.
std::vector<double> normalize_bounds(std::vector<double> bounds, const std::string& context) {
  if (!bounds.empty() && bounds.back() == HUGE_VAL) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw std::invalid_argument(context + ": histogram bound " + format_value(bounds[i]) +
                                  " is not finite");
    }
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      throw std::invalid_argument(context + ": histogram bounds must be strictly increasing, got " +
                                  format_value(bounds[i - 1]) + " then " + format_value(bounds[i]));
    }
  }
  return bounds;
}

void append_escaped(std::string& out, std::string_view s, bool escape_quote) {
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"':
        if (escape_quote) {
          out += "\\\"";
        } else {
          out += c;
        }
        break;
      default: out += c;
    }
  }
}

// Writes `name{l1="v1",...,extra_name="extra_value"} value\n`; braces only if any label.
void append_sample(std::string& out, const std::string& name, std::string_view suffix,
                   const labels& l, std::string_view extra_name, std::string_view extra_value,
                   const std::string& value) {
  out += name;
  out += suffix;
  if (!l.empty() || !extra_name.empty()) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : l) {
      if (!first) out += ',';
      first = false;
      out += k;
      out += "=\"";
      append_escaped(out, v, true);
      out += '"';
    }
    if (!extra_name.empty()) {
      if (!first) out += ',';
      out += extra_name;
      out += "=\"";
      out += extra_value;  // a formatted number: nothing to escape
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

// --- values -----------------------------------------------------------------------------

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::to_chars_result r;
  // 2^53: beyond it not every integer is a double, so a fraction-free form says nothing.
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    if (v == 0) return "0";  // also for -0
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  } else {
    // %g-style choice of fixed/scientific with the shortest digits that round-trip.
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  }
  return std::string(buf, r.ptr);
}

void counter::inc(double v) {
  if (!(v >= 0)) return;  // negative or NaN: see the header
  atomic_add(value_, v);
}

double counter::value() const { return value_.load(std::memory_order_relaxed); }

void gauge::set(double v) { value_.store(v, std::memory_order_relaxed); }

void gauge::add(double v) { atomic_add(value_, v); }

double gauge::value() const { return value_.load(std::memory_order_relaxed); }

histogram::histogram(std::vector<double> upper_bounds)
    : upper_bounds_(normalize_bounds(std::move(upper_bounds), "histogram")),
      buckets_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto it = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v);
  buckets_[static_cast<size_t>(it - upper_bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

std::vector<uint64_t> histogram::cumulative_counts() const {
  std::vector<uint64_t> out(upper_bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

uint64_t histogram::count() const { return cumulative_counts().back(); }

double histogram::sum() const { return sum_.load(std::memory_order_relaxed); }

std::vector<double> latency_buckets_seconds() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}

// --- registry ---------------------------------------------------------------------------

const char* registry::kind_name(kind k) {
  switch (k) {
    case kind::counter: return "counter";
    case kind::gauge: return "gauge";
    case kind::histogram: return "histogram";
  }
  return "?";
}

registry::family& registry::find_or_add_family(const std::string& name, const std::string& help,
                                               kind type, const std::vector<double>* upper_bounds,
                                               const labels& l, labels& sorted) {
  if (!is_valid_metric_name(name)) fail(name, "invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
  if (!is_valid_utf8(help)) fail(name, "help text is not valid UTF-8");
  sorted = l;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& [k, v] = sorted[i];
    if (!is_valid_label_name(k)) fail(name, "invalid label name '" + k + "' (must match [a-zA-Z_][a-zA-Z0-9_]*)");
    if (k.size() >= 2 && k[0] == '_' && k[1] == '_') fail(name, "label name '" + k + "' starts with the reserved prefix '__'");
    if (type == kind::histogram && k == "le") fail(name, "label name 'le' is reserved for histogram buckets");
    if (i > 0 && sorted[i - 1].first == k) fail(name, "label '" + k + "' given twice");
    if (!is_valid_utf8(v)) fail(name, "value of label '" + k + "' is not valid UTF-8");
  }

  if (auto it = families_.find(name); it != families_.end()) {
    family& f = it->second;
    if (f.type != type) {
      fail(name, std::string("already registered as a ") + kind_name(f.type) + ", not a " +
                     kind_name(type));
    }
    if (f.help != help) fail(name, "already registered with another help text");
    if (upper_bounds != nullptr && f.upper_bounds != *upper_bounds) {
      fail(name, "already registered with other histogram bounds");
    }
    return f;
  }

  // A histogram `h` also writes `h_bucket`, `h_sum` and `h_count`; a family of one of
  // those names would make the scrape ambiguous.
  static constexpr std::string_view suffixes[] = {"_bucket", "_sum", "_count"};
  for (std::string_view suffix : suffixes) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string base = name.substr(0, name.size() - suffix.size());
      auto it = families_.find(base);
      if (it != families_.end() && it->second.type == kind::histogram) {
        fail(name, "collides with a series of histogram '" + base + "'");
      }
    }
    if (type == kind::histogram) {
      const std::string derived = name + std::string(suffix);
      if (families_.count(derived) != 0) fail(name, "its series '" + derived + "' collides with an existing metric");
    }
  }

  family f;
  f.type = type;
  f.help = help;
  if (upper_bounds != nullptr) f.upper_bounds = *upper_bounds;
  return families_.emplace(name, std::move(f)).first->second;
}

counter& registry::get_counter(const std::string& name, const std::string& help, const labels& l) {
  std::lock_guard<std::mutex> guard(mutex_);
  labels sorted;
  family& f = find_or_add_family(name, help, kind::counter, nullptr, l, sorted);
  auto& slot = f.counters[std::move(sorted)];
  if (!slot) slot = std::make_unique<counter>();
  return *slot;
}

gauge& registry::get_gauge(const std::string& name, const std::string& help, const labels& l) {
  std::lock_guard<std::mutex> guard(mutex_);
  labels sorted;
  family& f = find_or_add_family(name, help, kind::gauge, nullptr, l, sorted);
  auto& slot = f.gauges[std::move(sorted)];
  if (!slot) slot = std::make_unique<gauge>();
  return *slot;
}

histogram& registry::get_histogram(const std::string& name, const std::string& help,
                                   std::vector<double> upper_bounds, const labels& l) {
  // Bounds are checked before the lock: the name in the message is all they need.
  const auto bounds = normalize_bounds(std::move(upper_bounds), quoted(name));
  std::lock_guard<std::mutex> guard(mutex_);
  labels sorted;
  family& f = find_or_add_family(name, help, kind::histogram, &bounds, l, sorted);
  auto& slot = f.histograms[std::move(sorted)];
  if (!slot) slot = std::make_unique<histogram>(bounds);
  return *slot;
}

std::string registry::expose() const {
  std::string out;
  std::lock_guard<std::mutex> guard(mutex_);
  for (const auto& [name, f] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, f.help, false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += kind_name(f.type);
    out += '\n';
    switch (f.type) {
      case kind::counter:
        for (const auto& [l, c] : f.counters) append_sample(out, name, "", l, "", "", format_value(c->value()));
        break;
      case kind::gauge:
        for (const auto& [l, g] : f.gauges) append_sample(out, name, "", l, "", "", format_value(g->value()));
        break;
      case kind::histogram:
        for (const auto& [l, h] : f.histograms) {
          // One snapshot of the buckets so that `_count` equals the +Inf bucket.
          const auto counts = h->cumulative_counts();
          const auto& bounds = h->upper_bounds();
          for (size_t i = 0; i < bounds.size(); ++i) {
            append_sample(out, name, "_bucket", l, "le", format_value(bounds[i]), std::to_string(counts[i]));
          }
          const std::string total = std::to_string(counts.back());
          append_sample(out, name, "_bucket", l, "le", "+Inf", total);
          append_sample(out, name, "_sum", l, "", "", format_value(h->sum()));
          append_sample(out, name, "_count", l, "", "", total);
        }
        break;
    }
  }
  return out;
}

}  // namespace dsync::metrics
