// dsync-bench: closed-loop load generator. Each client is a thread with one keep-alive
// HTTP connection that sends its next request as soon as the previous one is answered;
// clients are spread over the given endpoints. The same workload runs against dsync or
// against a peer system (etcd's v3 JSON gateway) so both are measured alike.
//
//   dsync-bench kv-put --target dsync --endpoints 127.0.0.1:6000,127.0.0.1:6001
//               --clients 1,16,64,256 --seconds 10 --value-bytes 64
//
// Workloads: kv-put (one write per op); lock-cycle (acquire + release of the client's own
// lock per op); lock-contend (all clients acquire, waiting, and release one lock: ops/s is
// hand-offs per second). etcd's locks are its v3 lock API (/v3/lock/lock, /v3/lock/unlock)
// with one lease per client, as etcdctl lock uses them.
//
// One line per client count: ops/s and latency percentiles of successful requests.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

struct options {
  std::string workload;
  std::string target = "dsync";
  std::vector<std::pair<std::string, int>> endpoints;
  std::vector<int> clients{1, 16, 64, 256};
  double seconds = 10;
  size_t value_bytes = 64;
  size_t keys_per_client = 100;
  int queues = 1;  // queue workloads: clients spread over this many queues
  int keys = 100;  // cache workloads: keys shared by all clients
  int write_percent = 5;  // cache-mix: puts among the operations
  bool as_json = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "dsync-bench: " << why << "\n"
            << "usage: dsync-bench WORKLOAD --target dsync|etcd --endpoints HOST:PORT[,...]\n"
               "                   [--clients 1,16,64,256] [--seconds 10] [--value-bytes 64] [--queues 1] [--json]\n"
               "workloads: kv-put, lock-cycle, lock-contend (dsync or etcd); queue-enqueue, queue-roundtrip (dsync)\n";
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    auto p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

int to_int(const std::string& s, const std::string& what, int lo, int hi) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    usage(what + " must be a number in " + std::to_string(lo) + ".." + std::to_string(hi) + ", not '" + s + "'");
  return static_cast<int>(v);
}

options parse(int argc, char** argv) {
  options o;
  if (argc < 2) usage("no workload given");
  o.workload = argv[1];
  static const char* const workloads[] = {"kv-put",        "lock-cycle",      "lock-contend",
                                          "queue-enqueue", "queue-roundtrip", "cache-mix"};
  if (std::find(std::begin(workloads), std::end(workloads), o.workload) == std::end(workloads))
    usage("unknown workload '" + o.workload
          + "' (kv-put, lock-cycle, lock-contend, queue-enqueue, queue-roundtrip, cache-mix)");
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--target") {
      o.target = next();
      if (o.target != "dsync" && o.target != "etcd") usage("--target must be dsync or etcd");
    } else if (a == "--endpoints") {
      for (auto& e : split(next(), ',')) {
        auto c = e.rfind(':');
        if (c == std::string::npos) usage("endpoint '" + e + "' is not host:port");
        o.endpoints.emplace_back(e.substr(0, c), to_int(e.substr(c + 1), "port", 1, 65535));
      }
    } else if (a == "--clients") {
      o.clients.clear();
      for (auto& c : split(next(), ',')) o.clients.push_back(to_int(c, "--clients", 1, 4096));
    } else if (a == "--seconds") {
      o.seconds = to_int(next(), "--seconds", 1, 3600);
    } else if (a == "--value-bytes") {
      o.value_bytes = static_cast<size_t>(to_int(next(), "--value-bytes", 0, 1 << 20));
    } else if (a == "--keys") {
      o.keys = to_int(next(), "--keys", 1, 10000000);
    } else if (a == "--write-percent") {
      o.write_percent = to_int(next(), "--write-percent", 0, 100);
    } else if (a == "--queues") {
      o.queues = to_int(next(), "--queues", 1, 10000);
    } else if (a == "--json") {
      o.as_json = true;
    } else {
      usage("unknown option " + a);
    }
  }
  if (o.endpoints.empty()) usage("--endpoints is required");
  if ((o.workload.rfind("queue-", 0) == 0 || o.workload.rfind("cache-", 0) == 0) && o.target != "dsync")
    usage("queue and cache workloads run against dsync only (compare Redis with redis-benchmark)");
  return o;
}

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

struct client_result {
  std::vector<double> latencies_ms;
  uint64_t consumed = 0;  // queue-roundtrip consumers: messages acked
  uint64_t errors = 0;
  std::string first_error;
};

// One put: true on success.
bool put_once(httplib::Client& cli, const options& o, const std::string& key, const std::string& value,
              std::string& error) {
  auto r = o.target == "dsync"
             ? cli.Put(("/v1/kv/" + key).c_str(), json{{"value", value}}.dump(), "application/json")
             : cli.Post("/v3/kv/put", json{{"key", base64(key)}, {"value", base64(value)}}.dump(), "application/json");
  if (!r) {
    error = "connection: " + httplib::to_string(r.error());
    return false;
  }
  if (r->status != 200) {
    error = "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200);
    return false;
  }
  return true;
}

// POSTs a JSON body; the parsed answer, or nothing (with `error` set) unless HTTP 2xx.
std::optional<json> post(httplib::Client& cli, const std::string& path, const json& body, std::string& error) {
  auto r = cli.Post(path.c_str(), body.dump(), "application/json");
  if (!r) {
    error = "connection: " + httplib::to_string(r.error());
    return std::nullopt;
  }
  if (r->status < 200 || r->status > 299) {
    error = "HTTP " + std::to_string(r->status) + " " + path + ": " + r->body.substr(0, 200);
    return std::nullopt;
  }
  auto out = json::parse(r->body, nullptr, false);
  if (out.is_discarded()) {
    error = "not JSON from " + path;
    return std::nullopt;
  }
  return out;
}

// One acquire + release of `lock` by `client`. etcd: the client's lease is created once.
bool lock_cycle(httplib::Client& cli, const options& o, const std::string& lock, const std::string& client,
                std::string& etcd_lease, std::string& error) {
  if (o.target == "dsync") {
    if (!post(cli, "/v1/locks/" + lock + "/acquire",
              json{{"client", client}, {"mode", "exclusive"}, {"wait_ms", 30000}, {"ttl_ms", 10000}}, error))
      return false;
    return post(cli, "/v1/locks/" + lock + "/release", json{{"client", client}}, error).has_value();
  }
  if (etcd_lease.empty()) {
    auto g = post(cli, "/v3/lease/grant", json{{"TTL", 10}}, error);
    if (!g || !g->contains("ID")) return false;
    etcd_lease = (*g)["ID"].is_string() ? (*g)["ID"].get<std::string>() : (*g)["ID"].dump();
  }
  auto held = post(cli, "/v3/lock/lock", json{{"name", base64(lock)}, {"lease", etcd_lease}}, error);
  if (!held || !held->contains("key")) return false;
  return post(cli, "/v3/lock/unlock", json{{"key", (*held)["key"]}}, error).has_value();
}

// A consumer's turn: dequeue up to 16 (waiting up to 0.5 s) and ack them in one request;
// false on error. Every message is acked on its own, as a RabbitMQ consumer acks each
// delivery (without waiting for its confirmation, which an HTTP client cannot do).
bool consume(httplib::Client& cli, const std::string& queue, const std::string& consumer, client_result& res,
             std::string& error) {
  auto got = post(cli, "/v1/queues/" + queue + "/dequeue",
                  json{{"consumer", consumer}, {"max", 16}, {"visibility_ms", 30000}, {"wait_ms", 500}}, error);
  if (!got) return false;
  json acks = json::array();
  for (auto& m : (*got)["messages"]) acks.push_back(json{{"id", m["id"]}, {"receipt", m["receipt"]}});
  if (acks.empty()) return true;
  auto done = post(cli, "/v1/queues/" + queue + "/ack", json{{"messages", acks}}, error);
  if (!done) return false;
  auto acked = done->value("acked", uint64_t{0});
  res.consumed += acked;
  if (acked != acks.size()) {
    error = "ack batch: " + done->dump();
    return false;
  }
  return true;
}

void run_level(const options& o, int clients) {
  std::vector<client_result> results(static_cast<size_t>(clients));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::string value(o.value_bytes, 'x');
  // Fresh queues per run: a round trip must not drain what an earlier run left behind.
  auto queue_prefix = "bench-" + o.workload + "-"
                      + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count())
                      + "-" + std::to_string(clients) + "-";
  auto start = steady::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto& ep = o.endpoints[static_cast<size_t>(c) % o.endpoints.size()];
      httplib::Client cli(ep.first, ep.second);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      cli.set_connection_timeout(5, 0);
      cli.set_read_timeout(40, 0);
      auto& res = results[static_cast<size_t>(c)];
      uint64_t seq = 0;
      std::string etcd_lease;
      auto client_name = "bench-" + std::to_string(c);
      auto lock_name = o.workload == "lock-contend" ? std::string{"bench-contended"} : "bench-lock-" + std::to_string(c);
      while (!stop.load(std::memory_order_relaxed)) {
        auto key = "bench-" + std::to_string(c) + "-" + std::to_string(seq++ % o.keys_per_client);
        auto t0 = steady::now();
        std::string error;
        auto queue = queue_prefix + std::to_string(c / 2 % o.queues);
        if (o.workload == "queue-roundtrip" && c % 2 == 1) {
          if (!consume(cli, queue, client_name, res, error)) {
            if (res.errors++ == 0) res.first_error = error;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
          continue;
        }
        bool ok = false;
        if (o.workload == "cache-mix") {
          auto k = "/v1/cache/bench-" + std::to_string((seq * 2654435761u + static_cast<uint64_t>(c)) % static_cast<uint64_t>(o.keys));
          bool write = static_cast<int>((seq * 40503u + static_cast<uint64_t>(c) * 7u) % 100u) < o.write_percent;
          auto r = write ? cli.Put(k.c_str(), json{{"value", value}}.dump(), "application/json") : cli.Get(k.c_str());
          ok = r && (r->status == 200 || (!write && r->status == 404));
          if (!ok) error = r ? "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200)
                             : "connection: " + httplib::to_string(r.error());
        } else if (o.workload == "kv-put") ok = put_once(cli, o, key, value, error);
        else if (o.workload.rfind("lock-", 0) == 0) ok = lock_cycle(cli, o, lock_name, client_name, etcd_lease, error);
        else ok = post(cli, "/v1/queues/" + queue + "/messages", json{{"payload", value}}, error).has_value();
        if (ok) {
          res.latencies_ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - t0).count());
        } else {
          if (res.errors++ == 0) res.first_error = error;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  std::vector<double> all;
  uint64_t errors = 0;
  uint64_t consumed = 0;
  std::string first_error;
  for (auto& r : results) {
    consumed += r.consumed;
    all.insert(all.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[std::min(all.size() - 1, size_t(p * all.size()))]; };
  double rate = static_cast<double>(all.size()) / elapsed;
  if (o.as_json) {
    std::cout << json{{"workload", o.workload}, {"target", o.target}, {"clients", clients}, {"ops", all.size()},
                      {"seconds", elapsed}, {"ops_per_s", rate}, {"p50_ms", pct(0.5)}, {"p99_ms", pct(0.99)},
                      {"consumed", consumed}, {"consumed_per_s", static_cast<double>(consumed) / elapsed},
                      {"errors", errors}, {"first_error", first_error}}
                   .dump()
              << std::endl;
  } else {
    std::printf("%-15s %-6s clients=%-4d ops=%-8zu ops/s=%-9.0f p50=%.2fms p99=%.2fms consumed/s=%-8.0f errors=%llu %s\n",
                o.workload.c_str(), o.target.c_str(), clients, all.size(), rate, pct(0.5), pct(0.99),
                static_cast<double>(consumed) / elapsed, static_cast<unsigned long long>(errors), first_error.c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  for (int c : o.clients) run_level(o, c);
  return 0;
}
