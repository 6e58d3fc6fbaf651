// Metrics registry of a node: counters, gauges and histograms that every actor records
// into, exposed by the HTTP gateway as `GET /metrics` in the Prometheus text exposition
// format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Usage: look a metric up once (at actor start-up), keep the reference, record on the hot
// path:
//
//   auto& hits = reg.get_counter("dsync_cache_hits_total", "Cache reads served locally.",
//                                {{"protocol", "MESI"}});
//   hits.inc();  // one relaxed atomic read-modify-write: no lock, no allocation
//
// Thread safety: every member function of every class here may be called from any thread
// at any time. Creation (`get_*`) takes the registry's mutex; recording (`inc`, `set`,
// `add`, `observe`) is lock-free; `expose()` takes the mutex (so creation waits for it) but
// never blocks recording, and reads values that may be a few increments old.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dsync::metrics {

// Label pairs (name, value) of one series. Order does not matter: the registry sorts them
// by label name, so {{"a","1"},{"b","2"}} and {{"b","2"},{"a","1"}} are the same series.
using labels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (requests served, bytes written). Reset only by a restart.
class counter {
 public:
  // Adds `v`. Precondition: v >= 0. A negative or NaN `v` is a programming error; it is
  // ignored (the counter stays monotonic, which Prometheus' rate() relies on) rather than
  // aborting a node over a statistic.
  void inc(double v = 1);
  double value() const;

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down (queue depth, lines in state M).
class gauge {
 public:
  void set(double v);
  void add(double v);  // `add(-1)` to decrement
  double value() const;

 private:
  std::atomic<double> value_{0};
};

// Counts observations (latencies in seconds, sizes in bytes) into buckets with fixed upper
// bounds. Exposed as cumulative `_bucket{le="..."}` series, `_sum` and `_count`.
class histogram {
 public:
  // `upper_bounds`: strictly increasing, finite; the `+Inf` bucket is implicit.
  explicit histogram(std::vector<double> upper_bounds);

  // Counts `v` in the first bucket whose upper bound is >= v (or +Inf) and adds it to the
  // sum. O(log buckets), lock-free. A NaN `v` is ignored: it would poison `_sum` forever.
  void observe(double v);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Cumulative counts: element i counts observations <= upper_bounds()[i]; the last
  // element (index upper_bounds().size()) is the +Inf bucket, i.e. the total count.
  std::vector<uint64_t> cumulative_counts() const;
  uint64_t count() const;
  double sum() const;

 private:
  std::vector<double> upper_bounds_;
  // Non-cumulative, one per bound plus the +Inf bucket; cumulated when read.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// Owns every metric of a node. References returned by `get_*` stay valid (and refer to the
// same object for the same name and labels) for the registry's lifetime.
class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Returns the series (name, labels) of a family, creating family and series on first
  // use. All calls for one name must agree on the type, the help text and (histograms)
  // the bounds. Throws std::invalid_argument, with a message naming the metric, when:
  // - `name` is not [a-zA-Z_:][a-zA-Z0-9_:]*, or is already registered with another type,
  //   help or bounds, or collides with the `_bucket`/`_sum`/`_count` series of a
  //   histogram (or would make an existing family collide with its own);
  // - a label name is not [a-zA-Z_][a-zA-Z0-9_]*, starts with `__` (reserved by
  //   Prometheus), appears twice, or is `le` on a histogram;
  // - `help` or a label value is not valid UTF-8;
  // - histogram bounds are not strictly increasing or not finite (a trailing +Inf is
  //   accepted and dropped: that bucket is always there).
  // O(log families + log series) under the registry mutex: call once, keep the reference.
  counter& get_counter(const std::string& name, const std::string& help, const labels& l = {});
  gauge& get_gauge(const std::string& name, const std::string& help, const labels& l = {});
  histogram& get_histogram(const std::string& name, const std::string& help,
                           std::vector<double> upper_bounds, const labels& l = {});

  // The Prometheus text format 0.0.4 (Content-Type `text/plain; version=0.0.4`):
  // families sorted by name, each with one `# HELP` and one `# TYPE` line, then its
  // series sorted by their (sorted) labels. Label values are escaped (\\, \", \n), as is
  // the help text (\\, \n). O(total series) under the registry mutex.
  // Histogram series are internally consistent (`_count` equals the `+Inf` bucket) even
  // while recording runs; `_sum` may lag or lead by the observations in flight.
  std::string expose() const;

 private:
  enum class kind { counter, gauge, histogram };
  static const char* kind_name(kind k);  // as in `# TYPE`
  struct family {
    kind type;
    std::string help;
    std::vector<double> upper_bounds;  // histograms only
    std::map<labels, std::unique_ptr<counter>> counters;
    std::map<labels, std::unique_ptr<gauge>> gauges;
    std::map<labels, std::unique_ptr<histogram>> histograms;
  };

  // Validates the request and returns the (new or existing) family under the lock held
  // by the caller, and the sorted, validated labels in `sorted`.
  family& find_or_add_family(const std::string& name, const std::string& help, kind type,
                             const std::vector<double>* upper_bounds, const labels& l,
                             labels& sorted);

  mutable std::mutex mutex_;
  std::map<std::string, family> families_;
};

// Default bounds for latencies, in seconds: 50us .. 10s on a 1-2.5-5 progression.
std::vector<double> latency_buckets_seconds();

// Formats `v` as the exposition format expects: `+Inf`, `-Inf`, `NaN`; integral values
// below 2^53 without exponent or fraction (`1000000`, not `1e+06`); others as the
// shortest string that reads back to the same double (`0.25`, `5e-05`).
std::string format_value(double v);

}  // namespace dsync::metrics
