// dsync-bench: closed-loop load generator. Each client has one keep-alive HTTP connection
// and sends its next request as soon as the previous one is answered; clients are spread
// over the given endpoints. The same workload runs against dsync or against a peer system
// (etcd's v3 JSON gateway) so both are measured alike.
//
//   dsync-bench kv-put --target dsync --endpoints 127.0.0.1:6000,127.0.0.1:6001
//               --clients 1,16,64,256 --seconds 10 --value-bytes 64
//
// Workloads: kv-put (one write per op); lock-cycle (acquire + release of the client's own
// lock per op); lock-contend (all clients acquire, waiting, and release one lock: ops/s is
// hand-offs per second). etcd's locks are its v3 lock API (/v3/lock/lock, /v3/lock/unlock)
// with one lease per client, as etcdctl lock uses them. cache-mix runs against dsync or,
// with --target redis, as GET and SET of the same keys against a redis-server: the peer is
// then timed by the same client as dsync (redis-benchmark leaves out part of each round
// trip: it starts its clock when its loop gets round to writing).
//
// All clients run in one thread, an epoll loop over non-blocking sockets, as in
// redis-benchmark: each client is a small state machine whose operation sends a request and
// continues in the answer's callback. A thread per client cost this 2-core machine as much
// CPU (context switches, a poll() before every read) as the servers under test; one loop
// costs it as little as the peer's own tools do. At the deadline no operation starts; the
// ones under way finish unrecorded (a lock is released before the next client count).
//
// One line per client count: ops/s and latency percentiles of successful requests.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nlohmann/json.hpp>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
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
            << "usage: dsync-bench WORKLOAD --target dsync|etcd|redis --endpoints HOST:PORT[,...]\n"
               "                   [--clients 1,16,64,256] [--seconds 10] [--value-bytes 64] [--queues 1] [--json]\n"
               "                   [--keys 100] [--write-percent 5]\n"
               "workloads: kv-put, lock-cycle, lock-contend (dsync or etcd); queue-enqueue, queue-roundtrip (dsync);\n"
               "           cache-mix (dsync, or redis: GET and SET of the same keys)\n";
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
      if (o.target != "dsync" && o.target != "etcd" && o.target != "redis")
        usage("--target must be dsync, etcd or redis");
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
  bool cache = o.workload.rfind("cache-", 0) == 0;
  if (o.workload.rfind("queue-", 0) == 0 && o.target != "dsync") usage("queue workloads run against dsync only");
  if (cache && o.target == "etcd") usage("cache workloads run against dsync or redis");
  if (!cache && o.target == "redis") usage("only cache-mix runs against redis");
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

constexpr auto error_pause = std::chrono::milliseconds(10);  // a failing server is not hammered
constexpr auto request_timeout = std::chrono::seconds(40);   // longer than a lock's 30 s wait
constexpr auto timeout_sweep = std::chrono::milliseconds(250);
constexpr auto drain_limit = std::chrono::seconds(5);  // after the deadline, for operations under way

// An endpoint, resolved once before the runs.
struct endpoint {
  std::string host;  // for the Host header
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string error;  // not resolved: every connection attempt fails with this
};

std::vector<endpoint> resolve(const options& o) {
  std::vector<endpoint> out;
  for (auto& [host, port] : o.endpoints) {
    endpoint ep;
    ep.host = port == 80 ? host : host + ":" + std::to_string(port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (rc != 0) {
      ep.error = "connection: cannot resolve " + host + ": " + gai_strerror(rc);
    } else {
      // IPv4 first: "localhost" may list ::1 first while the servers listen on 127.0.0.1.
      auto* pick = found;
      for (auto* a = found; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
          pick = a;
          break;
        }
      std::memcpy(&ep.addr, pick->ai_addr, pick->ai_addrlen);
      ep.addr_len = pick->ai_addrlen;
      freeaddrinfo(found);
    }
    out.push_back(std::move(ep));
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool icontains(std::string_view s, std::string_view word) {
  for (size_t i = 0; i + word.size() <= s.size(); ++i)
    if (iequals(s.substr(i, word.size()), word)) return true;
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Incremental HTTP/1.x response parser: append what arrives to `in` and call parse() until
// it says complete. Bodies come by Content-Length, chunked (etcd's gateway may stream), or,
// with neither, up to the close.
class response_parser {
 public:
  enum result { more, complete, bad };

  std::string in;
  int status = 0;
  std::string body;
  bool close = false;  // the server closes the connection after this response
  std::string error;
  bool resp = false;   // Redis replies (RESP) instead of HTTP: 200 a value or status, 404 nil, 500 an error

  void reset() {
    in.clear();
    status = 0;
    body.clear();
    close = false;
    error.clear();
    st_ = head;
    pos_ = scan_ = left_ = 0;
  }

  result parse() {
    if (resp) return parse_resp();
    while (true) {
      switch (st_) {
        case head: {
          auto end = in.find("\r\n\r\n", scan_);
          if (end == std::string::npos) {
            if (in.size() - pos_ > 65536) return fail("headers too long");
            scan_ = std::max(pos_, in.size() < 3 ? size_t{0} : in.size() - 3);
            return more;
          }
          if (!parse_head(end)) return bad;
          break;
        }
        case fixed:
        case chunk_data: {
          auto n = std::min(left_, in.size() - pos_);
          body.append(in, pos_, n);
          pos_ += n;
          left_ -= n;
          if (left_ > 0) return more;
          st_ = st_ == fixed ? done : chunk_end;
          break;
        }
        case chunk_size: {
          auto eol = in.find("\r\n", pos_);
          if (eol == std::string::npos) return in.size() - pos_ > 1024 ? fail("bad chunk size") : more;
          size_t n = 0;
          auto i = pos_;
          for (; i < eol && std::isxdigit(static_cast<unsigned char>(in[i])); ++i) {
            if (n >> 40) return fail("chunk too large");
            auto d = std::tolower(static_cast<unsigned char>(in[i]));
            n = n * 16 + static_cast<size_t>(d <= '9' ? d - '0' : d - 'a' + 10);
          }
          if (i == pos_) return fail("bad chunk size");
          pos_ = eol + 2;  // chunk extensions after ';' are ignored
          left_ = n;
          st_ = n == 0 ? trailer : chunk_data;
          break;
        }
        case chunk_end:
          if (in.size() - pos_ < 2) return more;
          if (in.compare(pos_, 2, "\r\n") != 0) return fail("no CRLF after chunk");
          pos_ += 2;
          st_ = chunk_size;
          break;
        case trailer: {
          auto eol = in.find("\r\n", pos_);
          if (eol == std::string::npos) return more;
          if (eol == pos_) st_ = done;
          pos_ = eol + 2;
          break;
        }
        case until_close:
          body.append(in, pos_, std::string::npos);
          pos_ = in.size();
          return more;
        case done:
          return complete;
      }
    }
  }

  // The connection ended: true if that completes the response (a body up to the close).
  bool finish_at_close() {
    if (st_ != until_close) return false;
    st_ = done;
    return true;
  }

 private:
  enum state { head, fixed, chunk_size, chunk_data, chunk_end, trailer, until_close, done };
  state st_ = head;
  size_t pos_ = 0;   // parsed up to here
  size_t scan_ = 0;  // the end of the head is not before this
  size_t left_ = 0;  // body or chunk bytes still to come

  result fail(std::string why) {
    error = std::move(why);
    return bad;
  }

  // One reply to GET or SET: +status, -error, :integer, $bulk or $-1 (nil).
  result parse_resp() {
    auto eol = in.find("\r\n");
    if (eol == std::string::npos) return in.size() > 1024 ? fail("RESP line too long") : more;
    auto line = std::string_view{in}.substr(1, eol - 1);
    switch (in[0]) {
      case '+':
      case ':':
      case '-':
        status = in[0] == '-' ? 500 : 200;
        body = line;
        return complete;
      case '$': {
        if (line == "-1") {
          status = 404;
          return complete;
        }
        if (line.empty() || line.size() > 10 || !std::all_of(line.begin(), line.end(), ::isdigit))
          return fail("bad RESP bulk length: " + std::string{line.substr(0, 20)});
        auto n = std::stoull(std::string{line});
        if (in.size() < eol + 2 + n + 2) return more;
        status = 200;
        body.assign(in, eol + 2, n);
        return complete;
      }
      default:
        return fail("not a RESP reply: " + std::string{line.substr(0, 60)});
    }
  }

  bool parse_head(size_t end) {
    std::string_view h(in.data() + pos_, end - pos_);
    pos_ = scan_ = end + 4;
    auto eol = h.find("\r\n");
    auto first = h.substr(0, eol);
    if (first.size() < 12 || first.substr(0, 7) != "HTTP/1." || first[8] != ' '
        || !std::isdigit(static_cast<unsigned char>(first[9])) || !std::isdigit(static_cast<unsigned char>(first[10]))
        || !std::isdigit(static_cast<unsigned char>(first[11]))) {
      fail("not an HTTP/1 response: " + std::string(first.substr(0, 60)));
      return false;
    }
    status = (first[9] - '0') * 100 + (first[10] - '0') * 10 + (first[11] - '0');
    close = first[7] == '0';  // HTTP/1.0 closes unless it says keep-alive
    bool chunked = false, has_length = false;
    size_t length = 0;
    while (eol != std::string_view::npos) {
      auto from = eol + 2;
      eol = h.find("\r\n", from);
      auto line = h.substr(from, eol == std::string_view::npos ? std::string_view::npos : eol - from);
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      auto name = line.substr(0, colon);
      auto value = trim(line.substr(colon + 1));
      if (iequals(name, "content-length")) {
        if (value.empty() || value.size() > 15
            || !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          fail("bad Content-Length: " + std::string(value));
          return false;
        }
        length = std::stoull(std::string(value));
        has_length = true;
      } else if (iequals(name, "transfer-encoding")) {
        chunked = icontains(value, "chunked");
      } else if (iequals(name, "connection")) {
        if (icontains(value, "close")) close = true;
        else if (icontains(value, "keep-alive")) close = false;
      }
    }
    if (status < 200) {  // 1xx: interim, the answer follows
      status = 0;
      close = false;
      st_ = head;
    } else if (status == 204 || status == 304) {
      st_ = done;
    } else if (chunked) {
      st_ = chunk_size;
    } else if (has_length) {
      left_ = length;
      st_ = fixed;
    } else {
      st_ = until_close;
      close = true;
    }
    return true;
  }
};

struct client_result {
  std::vector<double> latencies_ms;
  uint64_t consumed = 0;  // queue-roundtrip consumers: messages acked
  uint64_t errors = 0;
  std::string first_error;
};

enum class workload { kv_put, lock, queue_enqueue, queue_roundtrip, cache_mix };

class client;

// One client count's run: the epoll set, the clients and what they share.
struct level {
  level(const options& opts, const std::vector<endpoint>& eps) : o(opts), endpoints(eps) {
    if (o.workload == "cache-mix") kind = workload::cache_mix;
    else if (o.workload.rfind("lock-", 0) == 0) kind = workload::lock;
    else if (o.workload == "queue-enqueue") kind = workload::queue_enqueue;
    else if (o.workload == "queue-roundtrip") kind = workload::queue_roundtrip;
  }

  const options& o;
  const std::vector<endpoint>& endpoints;
  workload kind = workload::kv_put;
  bool etcd = o.target == "etcd";
  bool redis = o.target == "redis";
  int epfd = -1;
  steady::time_point deadline;
  bool stopping = false;  // past the deadline: no operation starts
  int busy = 0;           // clients in an operation
  // Clients waiting out error_pause, in time order since every pause is equally long.
  std::deque<std::pair<steady::time_point, client*>> paused;
  std::string queue_prefix;
  // Bodies that are the same in every request.
  std::string value, value_body, payload_body, value_b64;
};

// One client: one connection, one operation at a time. An operation sends its requests one
// after another, each from the callback of the answer before, and ends in done().
class client {
 public:
  using reply = std::function<void(int status, std::string& body)>;

  client(level& run, int index)
    : run_(run), index_(index),
      ep_(run.endpoints[static_cast<size_t>(index) % run.endpoints.size()]),
      name_("bench-" + std::to_string(index)),
      lock_(run.o.workload == "lock-contend" ? std::string{"bench-contended"} : "bench-lock-" + std::to_string(index)),
      queue_(run.queue_prefix + std::to_string(index / 2 % run.o.queues)) {
    parser_.resp = run.redis;
  }

  ~client() { close_connection(); }

  client_result res;
  uint32_t generation() const { return gen_; }

  // Starts the next operation, unless the run is over.
  void start() {
    if (run_.stopping) return;
    ++run_.busy;
    auto& o = run_.o;
    auto seq = seq_++;
    t0_ = steady::now();
    timed_ = true;
    switch (run_.kind) {
      case workload::cache_mix: {  // keyed by seq_, which already counts this operation
        auto c = static_cast<uint64_t>(index_);
        auto key = "bench-" + std::to_string((seq_ * 2654435761u + c) % static_cast<uint64_t>(o.keys));
        bool write = static_cast<int>((seq_ * 40503u + c * 7u) % 100u) < o.write_percent;
        auto check = [this, write](int status, std::string& body) {
          if (status == 200 || (!write && status == 404)) return done(true);
          done(false, (run_.redis ? "Redis " : "HTTP ") + std::to_string(status) + ": " + body.substr(0, 200));
        };
        if (run_.redis) {
          if (write) send_redis({"SET", key, run_.value}, check);
          else send_redis({"GET", key}, check);
        } else {
          send(write ? "PUT" : "GET", "/v1/cache/" + key, write ? &run_.value_body : nullptr, check);
        }
        return;
      }
      case workload::kv_put: {
        auto key = "bench-" + std::to_string(index_) + "-" + std::to_string(seq % o.keys_per_client);
        auto check = [this](int status, std::string& body) {
          if (status == 200) return done(true);
          done(false, "HTTP " + std::to_string(status) + ": " + body.substr(0, 200));
        };
        if (!run_.etcd) {
          send("PUT", "/v1/kv/" + key, &run_.value_body, check);
        } else {
          auto body = json{{"key", base64(key)}, {"value", run_.value_b64}}.dump();
          send("POST", "/v3/kv/put", &body, check);
        }
        return;
      }
      case workload::lock:
        return run_.etcd ? etcd_lock_cycle() : lock_cycle();
      case workload::queue_roundtrip:
        if (index_ % 2 == 1) {
          timed_ = false;  // consumers count messages, not latency
          return consume();
        }
        [[fallthrough]];
      case workload::queue_enqueue:
        return post("/v1/queues/" + queue_ + "/messages", run_.payload_body, [this](json&) { done(true); });
    }
  }

  void on_event(uint32_t events) {
    if (!connected_) {  // the connect finished, one way or the other
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) return fail(std::string("connection: ") + std::strerror(err));
      if (events & (EPOLLERR | EPOLLHUP)) return fail("connection: failed");
      connected_ = true;
      return flush();
    }
    auto gen = gen_;
    if (events & EPOLLOUT) flush();
    if (gen == gen_ && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) receive();
  }

  void check_timeout(steady::time_point now) {
    if (pending_ && now >= request_deadline_) fail("timeout");
  }

  void close_connection() {
    if (fd_ >= 0) ::close(fd_);  // also leaves the epoll set
    fd_ = -1;
    connected_ = false;
    mask_ = 0;
    ++gen_;
    parser_.reset();
  }

 private:
  level& run_;
  int index_;
  const endpoint& ep_;
  std::string name_, lock_, queue_;
  std::string etcd_lease_;
  uint64_t seq_ = 0;
  steady::time_point t0_;
  bool timed_ = true;

  int fd_ = -1;
  uint32_t gen_ = 0;  // tells a closed connection's events from the current one's
  bool connected_ = false;
  uint32_t mask_ = 0;  // the epoll events asked for; 0: not in the set
  std::string out_;
  size_t out_off_ = 0;
  reply pending_;  // set while a request is out
  steady::time_point request_deadline_;
  response_parser parser_;

  void done(bool ok, const std::string& error = {}) {
    auto now = steady::now();
    --run_.busy;
    if (now >= run_.deadline) return;  // finished after the run: not counted, nothing new
    if (!ok) {
      if (res.errors++ == 0) res.first_error = error;
      run_.paused.emplace_back(now + error_pause, this);
      return;
    }
    if (timed_) res.latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - t0_).count());
    start();
  }

  // POSTs a JSON body; `then` gets the parsed answer, unless it is not HTTP 2xx and JSON.
  void post(const std::string& path, const std::string& body, std::function<void(json&)> then) {
    send("POST", path, &body, [this, path, then = std::move(then)](int status, std::string& answer) {
      if (status < 200 || status > 299)
        return done(false, "HTTP " + std::to_string(status) + " " + path + ": " + answer.substr(0, 200));
      auto j = json::parse(answer, nullptr, false);
      if (j.is_discarded()) return done(false, "not JSON from " + path);
      then(j);
    });
  }

  // One acquire + release of the client's lock.
  void lock_cycle() {
    auto acquire = json{{"client", name_}, {"mode", "exclusive"}, {"wait_ms", 30000}, {"ttl_ms", 10000}}.dump();
    post("/v1/locks/" + lock_ + "/acquire", acquire, [this](json&) {
      post("/v1/locks/" + lock_ + "/release", json{{"client", name_}}.dump(), [this](json&) { done(true); });
    });
  }

  // etcd: lock + unlock with the client's lease, which is granted once, outside the timing.
  void etcd_lock_cycle() {
    if (etcd_lease_.empty()) {
      post("/v3/lease/grant", json{{"TTL", 10}}.dump(), [this](json& g) {
        if (!g.is_object() || !g.contains("ID")) return done(false, "lease grant without ID: " + g.dump().substr(0, 200));
        etcd_lease_ = g["ID"].is_string() ? g["ID"].get<std::string>() : g["ID"].dump();
        t0_ = steady::now();
        etcd_lock_cycle();
      });
      return;
    }
    post("/v3/lock/lock", json{{"name", base64(lock_)}, {"lease", etcd_lease_}}.dump(), [this](json& held) {
      if (!held.is_object() || !held.contains("key")) return done(false, "lock without key: " + held.dump().substr(0, 200));
      post("/v3/lock/unlock", json{{"key", held["key"]}}.dump(), [this](json&) { done(true); });
    });
  }

  // A consumer's turn: dequeue up to 16 (waiting up to 0.5 s) and ack them in one request.
  // Every message is acked on its own, as a RabbitMQ consumer acks each delivery (without
  // waiting for its confirmation, which an HTTP client cannot do).
  void consume() {
    auto dequeue = json{{"consumer", name_}, {"max", 16}, {"visibility_ms", 30000}, {"wait_ms", 500}}.dump();
    post("/v1/queues/" + queue_ + "/dequeue", dequeue, [this](json& got) {
      json acks = json::array();
      if (got.is_object() && got["messages"].is_array())
        for (auto& m : got["messages"]) acks.push_back(json{{"id", m["id"]}, {"receipt", m["receipt"]}});
      if (acks.empty()) return done(true);
      auto n = acks.size();
      post("/v1/queues/" + queue_ + "/ack", json{{"messages", acks}}.dump(), [this, n](json& answer) {
        auto acked = answer.is_object() ? answer.value("acked", uint64_t{0}) : uint64_t{0};
        if (steady::now() < run_.deadline) res.consumed += acked;
        if (acked != n) return done(false, "ack batch: " + answer.dump());
        done(true);
      });
    });
  }

  // Sends one request (connecting first if need be); `then` gets the answer. A connection
  // failure or timeout ends the operation with an error instead.
  void send(const char* method, const std::string& path, const std::string* body, reply then) {
    out_.clear();
    out_off_ = 0;
    out_ += method;
    out_ += ' ';
    out_ += path;
    out_ += " HTTP/1.1\r\nHost: ";
    out_ += ep_.host;
    out_ += "\r\n";
    if (body) {
      out_ += "Content-Type: application/json\r\nContent-Length: ";
      out_ += std::to_string(body->size());
      out_ += "\r\n\r\n";
      out_ += *body;
    } else {
      out_ += "\r\n";
    }
    transmit(std::move(then));
  }

  // Sends one Redis command as a RESP array of bulk strings.
  void send_redis(std::initializer_list<std::string_view> args, reply then) {
    out_.clear();
    out_off_ = 0;
    out_ += '*';
    out_ += std::to_string(args.size());
    out_ += "\r\n";
    for (auto a : args) {
      out_ += '$';
      out_ += std::to_string(a.size());
      out_ += "\r\n";
      out_ += a;
      out_ += "\r\n";
    }
    transmit(std::move(then));
  }

  void transmit(reply then) {
    pending_ = std::move(then);
    request_deadline_ = steady::now() + request_timeout;
    if (fd_ < 0) return connect();
    flush();
  }

  void connect() {
    if (!ep_.error.empty()) return fail(ep_.error);
    fd_ = ::socket(ep_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail(std::string("connection: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++gen_;
    int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&ep_.addr), ep_.addr_len);
    if (rc != 0 && errno != EINPROGRESS) return fail(std::string("connection: ") + std::strerror(errno));
    connected_ = rc == 0;
    if (connected_) return flush();
    watch(EPOLLOUT);  // writable when connected
  }

  // Writes what is left of the request; EPOLLOUT only while some is left.
  void flush() {
    while (out_off_ < out_.size()) {
      auto n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
      if (n >= 0) {
        out_off_ += static_cast<size_t>(n);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return watch(EPOLLIN | EPOLLOUT);
      } else if (errno != EINTR) {
        return fail(std::string("connection: ") + std::strerror(errno));
      }
    }
    watch(EPOLLIN);
  }

  void receive() {
    static char buf[1 << 16];
    bool eof = false;
    int err = 0;
    while (true) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        parser_.in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) break;  // saves the recv() that would say EAGAIN
      } else if (n == 0) {
        eof = true;
        break;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else if (errno != EINTR) {
        err = errno;
        break;
      }
    }
    if (!pending_) {  // the server closed an idle connection (reopened for the next request) or babbles
      if (eof || err) close_connection();
      else parser_.reset();
      return;
    }
    auto r = parser_.parse();
    if (r == response_parser::bad) return fail("bad response: " + parser_.error);
    if (r == response_parser::more && (eof || err) && parser_.finish_at_close()) r = response_parser::complete;
    if (r == response_parser::complete) {
      if (eof || err) parser_.close = true;
      return finish();
    }
    if (err) return fail(std::string("connection: ") + std::strerror(err));
    if (eof) fail("connection: closed by server");
  }

  void finish() {
    int status = parser_.status;
    std::string body = std::move(parser_.body);
    // Answered before all of the request was sent: the rest must not pass for the next one.
    bool close = parser_.close || out_off_ < out_.size();
    parser_.reset();
    if (close) close_connection();
    auto then = std::move(pending_);
    pending_ = nullptr;
    then(status, body);
  }

  void fail(const std::string& error) {
    close_connection();
    pending_ = nullptr;
    done(false, error);
  }

  void watch(uint32_t mask) {
    if (mask == mask_) return;
    epoll_event ev{};
    ev.events = mask;
    ev.data.u64 = (static_cast<uint64_t>(index_) << 32) | gen_;
    if (epoll_ctl(run_.epfd, mask_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd_, &ev) != 0) {
      std::perror("dsync-bench: epoll_ctl");
      std::exit(1);
    }
    mask_ = mask;
  }
};

void run_level(const options& o, const std::vector<endpoint>& endpoints, int clients) {
  level run(o, endpoints);
  std::string value(o.value_bytes, 'x');
  run.value = value;
  run.value_body = json{{"value", value}}.dump();
  run.payload_body = json{{"payload", value}}.dump();
  run.value_b64 = base64(value);
  // Fresh queues per run: a round trip must not drain what an earlier run left behind.
  run.queue_prefix = "bench-" + o.workload + "-"
                     + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count())
                     + "-" + std::to_string(clients) + "-";
  run.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (run.epfd < 0) {
    std::perror("dsync-bench: epoll_create1");
    std::exit(1);
  }
  std::vector<std::unique_ptr<client>> all_clients;
  for (int c = 0; c < clients; ++c) all_clients.push_back(std::make_unique<client>(run, c));
  auto start = steady::now();
  run.deadline = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.seconds));
  for (auto& c : all_clients) c->start();
  auto next_sweep = start + timeout_sweep;
  auto drain_end = run.deadline + drain_limit;
  std::vector<epoll_event> events(static_cast<size_t>(std::min(clients, 1024)));
  while (true) {
    auto now = steady::now();
    if (!run.stopping && now >= run.deadline) {
      run.stopping = true;
      run.paused.clear();
    }
    if (run.stopping && (run.busy == 0 || now >= drain_end)) break;
    while (!run.paused.empty() && run.paused.front().first <= now) {
      auto* c = run.paused.front().second;
      run.paused.pop_front();
      c->start();
    }
    if (now >= next_sweep) {
      for (auto& c : all_clients) c->check_timeout(now);
      next_sweep = now + timeout_sweep;
    }
    auto wake = std::min(run.stopping ? drain_end : run.deadline, next_sweep);
    if (!run.paused.empty()) wake = std::min(wake, run.paused.front().first);
    auto wait_us = std::chrono::duration_cast<std::chrono::microseconds>(wake - now).count();
    int wait_ms = wait_us <= 0 ? 0 : static_cast<int>((wait_us + 999) / 1000);  // rounded up: no busy wait
    int n = epoll_wait(run.epfd, events.data(), static_cast<int>(events.size()), wait_ms);
    if (n < 0 && errno != EINTR) {
      std::perror("dsync-bench: epoll_wait");
      std::exit(1);
    }
    for (int i = 0; i < n; ++i) {
      auto& c = *all_clients[static_cast<size_t>(events[i].data.u64 >> 32)];
      if (c.generation() == static_cast<uint32_t>(events[i].data.u64)) c.on_event(events[i].events);
    }
  }
  double elapsed = std::chrono::duration<double>(run.deadline - start).count();
  std::vector<double> all;
  uint64_t errors = 0;
  uint64_t consumed = 0;
  std::string first_error;
  for (auto& c : all_clients) {
    auto& r = c->res;
    consumed += r.consumed;
    all.insert(all.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  all_clients.clear();  // closes the connections
  ::close(run.epfd);
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
  auto endpoints = resolve(o);
  for (int c : o.clients) run_level(o, endpoints, c);
  return 0;
}
