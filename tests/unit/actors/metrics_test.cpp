#include "actors/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace dsync::metrics;

namespace {

// Runs `f` and returns the message of the std::invalid_argument it must throw.
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("expected std::invalid_argument");
  return {};
}

}  // namespace

TEST_CASE("exposition of a small registry is exact") {
  registry r;
  // Created out of order on purpose: families sort by name, series by labels.
  r.get_gauge("dsync_queue_depth", "Messages ready.").set(7);
  auto& post = r.get_counter("dsync_http_requests_total", "HTTP requests.",
                             {{"method", "POST"}, {"code", "200"}});
  auto& get = r.get_counter("dsync_http_requests_total", "HTTP requests.",
                            {{"method", "GET"}, {"code", "200"}});
  r.get_counter("dsync_boots_total", "Node starts.").inc();
  auto& h = r.get_histogram("dsync_rpc_seconds", "RPC latency.", {0.1, 1, 10}, {{"op", "acquire"}});
  post.inc(2);
  get.inc();
  get.inc(0.5);
  for (double v : {0.05, 0.1, 0.5, 3.0, 20.0}) h.observe(v);

  const std::string expected =
      "# HELP dsync_boots_total Node starts.\n"
      "# TYPE dsync_boots_total counter\n"
      "dsync_boots_total 1\n"
      "# HELP dsync_http_requests_total HTTP requests.\n"
      "# TYPE dsync_http_requests_total counter\n"
      "dsync_http_requests_total{code=\"200\",method=\"GET\"} 1.5\n"
      "dsync_http_requests_total{code=\"200\",method=\"POST\"} 2\n"
      "# HELP dsync_queue_depth Messages ready.\n"
      "# TYPE dsync_queue_depth gauge\n"
      "dsync_queue_depth 7\n"
      "# HELP dsync_rpc_seconds RPC latency.\n"
      "# TYPE dsync_rpc_seconds histogram\n"
      "dsync_rpc_seconds_bucket{op=\"acquire\",le=\"0.1\"} 2\n"
      "dsync_rpc_seconds_bucket{op=\"acquire\",le=\"1\"} 3\n"
      "dsync_rpc_seconds_bucket{op=\"acquire\",le=\"10\"} 4\n"
      "dsync_rpc_seconds_bucket{op=\"acquire\",le=\"+Inf\"} 5\n"
      "dsync_rpc_seconds_sum{op=\"acquire\"} 23.65\n"
      "dsync_rpc_seconds_count{op=\"acquire\"} 5\n";
  CHECK(r.expose() == expected);
}

TEST_CASE("histogram without labels and with no observations") {
  registry r;
  r.get_histogram("dsync_bytes", "Sizes.", {64, 1024});
  CHECK(r.expose() ==
        "# HELP dsync_bytes Sizes.\n"
        "# TYPE dsync_bytes histogram\n"
        "dsync_bytes_bucket{le=\"64\"} 0\n"
        "dsync_bytes_bucket{le=\"1024\"} 0\n"
        "dsync_bytes_bucket{le=\"+Inf\"} 0\n"
        "dsync_bytes_sum 0\n"
        "dsync_bytes_count 0\n");
}

TEST_CASE("an empty registry exposes nothing") { CHECK(registry{}.expose().empty()); }

TEST_CASE("label values and help are escaped") {
  registry r;
  r.get_gauge("g", "Line one.\nBack\\slash and \"quotes\" stay.", {{"v", "a\"b\\c\nd"}}).set(1);
  CHECK(r.expose() ==
        "# HELP g Line one.\\nBack\\\\slash and \"quotes\" stay.\n"
        "# TYPE g gauge\n"
        "g{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST_CASE("UTF-8 label values pass through unescaped") {
  registry r;
  r.get_counter("c_total", "Grüße.", {{"node", "日本-1"}}).inc();
  CHECK(r.expose() == "# HELP c_total Grüße.\n# TYPE c_total counter\nc_total{node=\"日本-1\"} 1\n");
}

TEST_CASE("numbers are formatted so that Prometheus parses them") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(-0.0) == "0");
  CHECK(format_value(1) == "1");
  CHECK(format_value(-3) == "-3");
  CHECK(format_value(1e6) == "1000000");
  CHECK(format_value(123456789012.0) == "123456789012");
  CHECK(format_value(9007199254740991.0) == "9007199254740991");  // 2^53 - 1
  CHECK(format_value(9007199254740992.0) == "9.007199254740992e+15");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(0.0001) == "0.0001");
  CHECK(format_value(5e-05) == "5e-05");
  CHECK(format_value(-2.5) == "-2.5");
  CHECK(format_value(1.5e300) == "1.5e+300");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  for (double v : {0.1, 1.0 / 3, 2.0 / 3 * 1e-9, 42.70431, 6.02214076e23}) {
    CHECK(std::stod(format_value(v)) == v);  // shortest form still round-trips
  }
}

TEST_CASE("same name and labels give the same object, whatever the label order") {
  registry r;
  auto& a = r.get_counter("c_total", "C.", {{"x", "1"}, {"y", "2"}});
  auto& b = r.get_counter("c_total", "C.", {{"y", "2"}, {"x", "1"}});
  auto& other = r.get_counter("c_total", "C.", {{"x", "1"}, {"y", "3"}});
  CHECK(&a == &b);
  CHECK(&a != &other);
  // References survive the creation of many more series (no rehash/reallocation moves).
  for (int i = 0; i < 1000; ++i) r.get_counter("c_total", "C.", {{"x", std::to_string(i)}});
  CHECK(&r.get_counter("c_total", "C.", {{"y", "2"}, {"x", "1"}}) == &a);
  CHECK(&r.get_gauge("g", "G.") == &r.get_gauge("g", "G."));
  CHECK(&r.get_histogram("h", "H.", {1, 2}) == &r.get_histogram("h", "H.", {1, 2}));
  // A trailing +Inf is the implicit bucket: the same bounds.
  CHECK(&r.get_histogram("h", "H.", {1, 2, HUGE_VAL}) == &r.get_histogram("h", "H.", {1, 2}));
}

TEST_CASE("counter: monotonic; negative and NaN increments are ignored") {
  counter c;
  CHECK(c.value() == 0);
  c.inc();
  c.inc(2.5);
  c.inc(0);
  CHECK(c.value() == 3.5);
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  CHECK(c.value() == 3.5);
}

TEST_CASE("gauge: set and add") {
  gauge g;
  g.set(10);
  g.add(-3);
  g.add(0.5);
  CHECK(g.value() == 7.5);
  g.set(-1);
  CHECK(g.value() == -1);
}

TEST_CASE("histogram: upper bounds are inclusive; NaN is ignored") {
  histogram h({1, 2, 5});
  for (double v : {-7.0, 1.0, 1.5, 2.0, 5.0, 5.0000001, HUGE_VAL}) h.observe(v);
  h.observe(std::numeric_limits<double>::quiet_NaN());
  CHECK(h.upper_bounds() == std::vector<double>{1, 2, 5});
  CHECK(h.cumulative_counts() == std::vector<uint64_t>{2, 4, 5, 7});
  CHECK(h.count() == 7);
  CHECK(h.sum() == HUGE_VAL);

  histogram only_inf({});
  only_inf.observe(3);
  CHECK(only_inf.cumulative_counts() == std::vector<uint64_t>{1});
  CHECK(only_inf.sum() == 3);
}

TEST_CASE("default latency buckets: 50us .. 10s, strictly increasing") {
  const auto b = latency_buckets_seconds();
  REQUIRE(b.size() >= 10);
  CHECK(b.front() == doctest::Approx(50e-6));
  CHECK(b.back() == 10);
  for (size_t i = 1; i < b.size(); ++i) CHECK(b[i - 1] < b[i]);
  CHECK_NOTHROW(histogram{b});
}

TEST_CASE("concurrent recording ends at the exact sum, while exposing and creating") {
  registry r;
  auto& c = r.get_counter("c_total", "C.");
  auto& g = r.get_gauge("g", "G.");
  auto& h = r.get_histogram("h_seconds", "H.", latency_buckets_seconds());
  constexpr int threads = 4;
  constexpr int per_thread = 30000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        c.inc();
        g.add(2);
        h.observe(i % 3);  // small integers: the sum is exact in any order
      }
      // Creation of other series runs under the mutex, concurrently with the above.
      for (int i = 0; i < 100; ++i) r.get_counter("c_total", "C.", {{"t", std::to_string(t)}}).inc();
    });
  }
  std::thread exposer([&] {
    for (int i = 0; i < 50; ++i) CHECK(r.expose().find("# TYPE c_total counter") != std::string::npos);
  });
  for (auto& th : pool) th.join();
  exposer.join();
  CHECK(c.value() == threads * per_thread);
  CHECK(g.value() == 2.0 * threads * per_thread);
  CHECK(h.count() == uint64_t{threads} * per_thread);
  CHECK(h.sum() == threads * (per_thread / 3) * (0 + 1 + 2));
  for (int t = 0; t < threads; ++t) CHECK(r.get_counter("c_total", "C.", {{"t", std::to_string(t)}}).value() == 100);
}

TEST_CASE("invalid metric names are refused") {
  registry r;
  for (const char* bad : {"", "1abc", "a-b", "a b", "a.b", "grüße", "a{b}"}) {
    CAPTURE(bad);
    const auto msg = invalid_argument_message([&] { r.get_counter(bad, "H."); });
    CHECK(msg.find(std::string("metric '") + bad + "'") != std::string::npos);
    CHECK_THROWS_AS(r.get_gauge(bad, "H."), std::invalid_argument);
    CHECK_THROWS_AS(r.get_histogram(bad, "H.", {1}), std::invalid_argument);
  }
  for (const char* good : {"a", "_a", ":a", "a:b_c9", "A_Z", "__x"}) {
    CAPTURE(good);
    CHECK_NOTHROW(r.get_gauge(good, "H."));
  }
  CHECK(r.expose().find("a-b") == std::string::npos);  // nothing half-registered
}

TEST_CASE("invalid label names are refused") {
  registry r;
  for (const char* bad : {"", "1a", "a-b", "a:b", "a b", "__x", "__"}) {
    CAPTURE(bad);
    const auto msg = invalid_argument_message([&] { r.get_counter("m_total", "H.", {{bad, "v"}}); });
    CHECK(msg.find("metric 'm_total'") != std::string::npos);
  }
  CHECK_NOTHROW(r.get_counter("m_total", "H.", {{"_x", "v"}, {"x_1", "v"}, {"X", "v"}}));
  CHECK(r.expose().find("__") == std::string::npos);
}

TEST_CASE("a label given twice is refused") {
  registry r;
  const auto msg = invalid_argument_message([&] { r.get_gauge("g", "H.", {{"a", "1"}, {"b", "2"}, {"a", "3"}}); });
  CHECK(msg.find("metric 'g'") != std::string::npos);
  CHECK(msg.find("'a'") != std::string::npos);
}

TEST_CASE("'le' is reserved on histograms only") {
  registry r;
  const auto msg = invalid_argument_message([&] { r.get_histogram("h", "H.", {1}, {{"le", "1"}}); });
  CHECK(msg.find("metric 'h'") != std::string::npos);
  CHECK_NOTHROW(r.get_counter("c_total", "H.", {{"le", "x"}}));
}

TEST_CASE("re-registering a name with another type, help or bounds is refused") {
  registry r;
  r.get_counter("c_total", "C.");
  r.get_gauge("g", "G.");
  r.get_histogram("h", "H.", {1, 2});
  const std::string before = r.expose();

  CHECK(invalid_argument_message([&] { r.get_gauge("c_total", "C."); }).find("metric 'c_total'") != std::string::npos);
  CHECK_THROWS_AS(r.get_histogram("c_total", "C.", {1}), std::invalid_argument);
  CHECK(invalid_argument_message([&] { r.get_counter("g", "G."); }).find("metric 'g'") != std::string::npos);
  CHECK_THROWS_AS(r.get_histogram("g", "G.", {1}), std::invalid_argument);
  CHECK(invalid_argument_message([&] { r.get_counter("h", "H."); }).find("metric 'h'") != std::string::npos);
  CHECK_THROWS_AS(r.get_gauge("h", "H."), std::invalid_argument);

  CHECK(invalid_argument_message([&] { r.get_counter("c_total", "Other."); }).find("metric 'c_total'") != std::string::npos);
  CHECK_THROWS_AS(r.get_gauge("g", "Other."), std::invalid_argument);
  CHECK_THROWS_AS(r.get_histogram("h", "Other.", {1, 2}), std::invalid_argument);
  // Another label set does not make the help check optional.
  CHECK_THROWS_AS(r.get_counter("c_total", "Other.", {{"a", "b"}}), std::invalid_argument);

  CHECK(invalid_argument_message([&] { r.get_histogram("h", "H.", {1, 3}); }).find("metric 'h'") != std::string::npos);
  CHECK_THROWS_AS(r.get_histogram("h", "H.", {1}), std::invalid_argument);
  CHECK(r.expose() == before);  // failed registrations leave no trace
  CHECK_NOTHROW(r.get_histogram("h", "H.", {1, 2}, {{"x", "y"}}));
}

TEST_CASE("histogram bounds must be finite and strictly increasing") {
  registry r;
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& bad : std::vector<std::vector<double>>{
           {2, 1}, {1, 1}, {nan}, {1, nan, 3}, {-inf, 1}, {1, inf, 3}, {inf, inf}}) {
    const auto msg = invalid_argument_message([&] { r.get_histogram("h", "H.", bad); });
    CHECK(msg.find("metric 'h'") != std::string::npos);
    CHECK_THROWS_AS(histogram{bad}, std::invalid_argument);
  }
  CHECK(r.expose().empty());
  CHECK_NOTHROW(r.get_histogram("h", "H.", {-1, 0, 0.5, inf}));
}

TEST_CASE("help and label values must be valid UTF-8") {
  registry r;
  for (const std::string bad : {"\xff", "a\xc3", "\xc0\xaf" /* overlong '/' */, "\xed\xa0\x80" /* surrogate */,
                                "\xf4\x90\x80\x80" /* > U+10FFFF */}) {
    CHECK(invalid_argument_message([&] { r.get_counter("c_total", "H.", {{"v", bad}}); }).find("metric 'c_total'") !=
          std::string::npos);
    CHECK(invalid_argument_message([&] { r.get_gauge("g", bad); }).find("metric 'g'") != std::string::npos);
  }
  CHECK(r.expose().empty());
  CHECK_NOTHROW(r.get_counter("c_total", "H.", {{"v", "\xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9"}}));
}

TEST_CASE("names that collide with a histogram's series are refused") {
  registry r;
  r.get_histogram("rpc_seconds", "H.", {1});
  for (const char* series : {"rpc_seconds_bucket", "rpc_seconds_sum", "rpc_seconds_count"}) {
    CAPTURE(series);
    CHECK(invalid_argument_message([&] { r.get_counter(series, "C."); }).find(std::string("metric '") + series + "'") !=
          std::string::npos);
    CHECK_THROWS_AS(r.get_gauge(series, "G."), std::invalid_argument);
  }
  r.get_gauge("size_count", "G.");
  CHECK(invalid_argument_message([&] { r.get_histogram("size", "H.", {1}); }).find("metric 'size'") !=
        std::string::npos);
  CHECK_NOTHROW(r.get_counter("rpc_seconds_total", "C."));  // not a histogram series
}
