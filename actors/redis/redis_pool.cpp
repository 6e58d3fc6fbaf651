#include "actors/redis/redis_pool.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "actors/log.hpp"

namespace dsync {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

const char* const subsystem = "redis";

constexpr size_t command_count = 4;
enum class outcome : uint8_t { ok, not_found, unavailable, error, rejected };
constexpr size_t outcome_count = 5;
constexpr std::array<const char*, command_count> command_labels{"get", "set", "del", "ping"};
constexpr std::array<const char*, outcome_count> outcome_labels{"ok", "not_found", "unavailable", "error",
                                                                "rejected"};

size_t index_of(redis_command c) { return static_cast<size_t>(c); }
size_t index_of(outcome o) { return static_cast<size_t>(o); }

double seconds(steady::duration d) { return std::chrono::duration<double>(d).count(); }

long long to_ms(steady::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

timeval to_timeval(uint32_t ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

// Error replies that say "not now" rather than "never": the caller may retry later.
bool transient_reply_error(std::string_view msg) {
  static constexpr std::array<std::string_view, 10> prefixes{
    "LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "MISCONF", "TRYAGAIN", "NOREPLICAS", "CLUSTERDOWN", "NOAUTH"};
  auto word = msg.substr(0, msg.find(' '));
  return std::find(prefixes.begin(), prefixes.end(), word) != prefixes.end();
}

}  // namespace

const char* to_string(redis_command c) {
  switch (c) {
    case redis_command::get: return "GET";
    case redis_command::set: return "SET";
    case redis_command::del: return "DEL";
    case redis_command::ping: return "PING";
  }
  return "?";
}

redis_settings redis_settings_from(const node_settings& s) {
  redis_settings r;
  r.host = s.redis_host;
  r.port = s.redis_port;
  return r;
}

std::string validate(const redis_settings& s) {
  if (s.host.empty()) return "redis host: must not be empty";
  if (s.port == 0) return "redis port: must be 1..65535";
  if (s.pool_size < 1 || s.pool_size > 64)
    return fmt::format("redis pool size: must be 1..64, got {}", s.pool_size);
  if (s.timeout_ms < 10 || s.timeout_ms > 60000)
    return fmt::format("redis timeout: must be 10..60000 ms, got {}", s.timeout_ms);
  if (s.queue_capacity < 1 || s.queue_capacity > 1000000)
    return fmt::format("redis queue capacity: must be 1..1000000 jobs, got {}", s.queue_capacity);
  if (s.max_value_bytes < 1 || s.max_value_bytes > (uint64_t{512} << 20))
    return fmt::format("redis max value bytes: must be 1..{} (512 MiB), got {}", uint64_t{512} << 20,
                       s.max_value_bytes);
  if (s.max_queued_bytes < s.max_value_bytes)
    return fmt::format("redis max queued bytes: must be at least max value bytes ({}), got {}", s.max_value_bytes,
                       s.max_queued_bytes);
  if (s.backoff_min_ms < 1 || s.backoff_min_ms > s.backoff_max_ms || s.backoff_max_ms > 60000)
    return fmt::format("redis backoff: need 1 <= min ({}) <= max ({}) <= 60000 ms", s.backoff_min_ms,
                       s.backoff_max_ms);
  return {};
}

// ---- the pool ------------------------------------------------------------------------------

struct redis_pool::core {
  struct job {
    redis_command cmd = redis_command::ping;
    std::string key;
    std::string value;
    completion done;
    steady::time_point queued_at;
    uint64_t bytes = 0;
  };

  core(redis_settings settings, metrics::registry& reg)
      : s(std::move(settings)), addr(s.address()), tv(to_timeval(s.timeout_ms)),
        timeout(milliseconds{s.timeout_ms}), fds(s.pool_size, -1), backoff(milliseconds{s.backoff_min_ms}) {
    for (size_t c = 0; c < command_count; ++c) {
      for (size_t o = 0; o < outcome_count; ++o)
        m.ops[c][o] = &reg.get_counter("dsync_redis_ops_total", "Redis operations by command and result",
                                       {{"command", command_labels[c]}, {"result", outcome_labels[o]}});
      m.op_seconds[c] = &reg.get_histogram("dsync_redis_op_seconds",
                                           "Time a Redis operation took on a pool worker (connect included)",
                                           metrics::latency_buckets_seconds(), {{"command", command_labels[c]}});
    }
    m.queue_wait = &reg.get_histogram("dsync_redis_queue_wait_seconds",
                                      "Time Redis operations waited for a pool worker",
                                      metrics::latency_buckets_seconds());
    auto failures = [&](const char* reason) {
      return &reg.get_counter("dsync_redis_connection_failures_total",
                              "Redis connections that could not be made or were lost", {{"reason", reason}});
    };
    m.connect_failures = failures("connect");
    m.timeout_failures = failures("timeout");
    m.io_failures = failures("io");
    m.connects = &reg.get_counter("dsync_redis_connects_total", "Redis connections made (first and reconnects)");
    m.connections = &reg.get_gauge("dsync_redis_connections", "Open Redis connections of the pool");
    m.depth = &reg.get_gauge("dsync_redis_queue_depth", "Redis operations waiting for a pool worker");
  }

  const redis_settings s;
  const std::string addr;
  const timeval tv;
  const steady::duration timeout;
  struct {
    std::array<std::array<metrics::counter*, outcome_count>, command_count> ops;
    std::array<metrics::histogram*, command_count> op_seconds;
    metrics::histogram* queue_wait;
    metrics::counter* connect_failures;
    metrics::counter* timeout_failures;
    metrics::counter* io_failures;
    metrics::counter* connects;
    metrics::gauge* connections;
    metrics::gauge* depth;
  } m{};

  // Everything below is guarded by mu.
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<job> jobs;
  uint64_t queued_bytes = 0;
  bool stopping = false;
  // Per worker: the socket of its connection, or -1. stop() shuts these down to interrupt
  // commands in flight; a worker clears its entry before it closes the socket, so stop()
  // never touches a closed (or reused) descriptor.
  std::vector<int> fds;
  // Reachability: after a failure, connects are refused until down_until; then one worker
  // (probing) tries while the others keep failing fast, until a command gets a reply.
  steady::time_point down_until{};
  steady::duration backoff;
  bool probing = false;
  std::string last_failure;
  std::atomic<bool> reachable{true};  // written under mu, read without it on the hot path

  caf::error unavailable(const std::string& what) const {
    return make_error(errc::unavailable, "redis " + addr + ": " + what);
  }

  void count(redis_command c, outcome o) { m.ops[index_of(c)][index_of(o)]->inc(); }

  static outcome classify(redis_command c, const redis_result& r) {
    if (r.error) return r.error == errc::unavailable ? outcome::unavailable : outcome::error;
    return c == redis_command::get && !r.found ? outcome::not_found : outcome::ok;
  }

  void mark_down(const std::string& what) {
    std::lock_guard<std::mutex> lk{mu};
    probing = false;
    last_failure = what;
    auto now = steady::now();
    if (now >= down_until) {  // failures inside one window do not stretch it
      down_until = now + backoff;
      log::debug(subsystem, "{}: {}; failing fast for {} ms", addr, what, to_ms(backoff));
      backoff = std::min<steady::duration>(backoff * 2, milliseconds{s.backoff_max_ms});
    }
    if (reachable.exchange(false))
      log::warn(subsystem, "{} unreachable: {}; requests that need Redis fail until it is back", addr, what);
  }

  void mark_up() {
    if (reachable.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lk{mu};
    if (reachable.exchange(true)) return;
    backoff = milliseconds{s.backoff_min_ms};
    down_until = {};
    log::info(subsystem, "{} reachable again", addr);
  }

  caf::error connect(size_t worker, redisContext*& ctx) {
    {
      std::lock_guard<std::mutex> lk{mu};
      if (stopping) return unavailable("redis pool stopped");
      auto now = steady::now();
      if (now < down_until || probing) {
        auto left = std::max<long long>(0, to_ms(down_until - now));
        return unavailable(fmt::format("unreachable, failing fast (last error: {}); next connection attempt in {} ms",
                                       last_failure, left));
      }
      if (!reachable.load()) probing = true;
    }
    redisContext* c = redisConnectWithTimeout(s.host.c_str(), s.port, tv);
    std::string what;
    if (c == nullptr)
      what = "cannot connect: out of memory";
    else if (c->err != 0)
      what = std::string{"cannot connect: "} + c->errstr;
    else if (redisSetTimeout(c, tv) != REDIS_OK)
      what = std::string{"cannot set the socket timeout: "} + c->errstr;
    else if (redisEnableKeepAlive(c) != REDIS_OK)
      what = std::string{"cannot enable TCP keepalive: "} + c->errstr;
    if (!what.empty()) {
      if (c != nullptr) redisFree(c);
      m.connect_failures->inc();
      mark_down(what);
      return unavailable(what);
    }
    {
      std::lock_guard<std::mutex> lk{mu};
      probing = false;
      if (stopping) {  // stop() did not see this socket: do not start a command on it
        redisFree(c);
        return unavailable("redis pool stopped");
      }
      fds[worker] = c->fd;
    }
    ctx = c;
    m.connects->inc();
    m.connections->add(1);
    return {};
  }

  void drop(size_t worker, redisContext*& ctx, bool record) {
    if (ctx == nullptr) return;
    {
      std::lock_guard<std::mutex> lk{mu};
      fds[worker] = -1;
    }
    redisFree(ctx);
    ctx = nullptr;
    if (record) m.connections->add(-1);
  }

  redisReply* execute(redisContext* ctx, const job& j) {
    void* r = nullptr;
    switch (j.cmd) {
      case redis_command::get: r = redisCommand(ctx, "GET %b", j.key.data(), j.key.size()); break;
      case redis_command::set:
        r = redisCommand(ctx, "SET %b %b", j.key.data(), j.key.size(), j.value.data(), j.value.size());
        break;
      case redis_command::del: r = redisCommand(ctx, "DEL %b", j.key.data(), j.key.size()); break;
      case redis_command::ping: r = redisCommand(ctx, "PING"); break;
    }
    return static_cast<redisReply*>(r);
  }

  redis_result interpret(const job& j, const redisReply& reply) const {
    const char* name = to_string(j.cmd);
    redis_result r;
    if (reply.type == REDIS_REPLY_ERROR) {
      std::string msg(reply.str, reply.len);
      auto what = fmt::format("Redis refused {}: {}", name, msg);
      r.error = transient_reply_error(msg) ? unavailable(what)
                                           : make_error(errc::internal, "redis " + addr + ": " + what);
      return r;
    }
    auto status_is = [&](std::string_view want) {
      return reply.type == REDIS_REPLY_STATUS && std::string_view(reply.str, reply.len) == want;
    };
    switch (j.cmd) {
      case redis_command::get:
        if (reply.type == REDIS_REPLY_NIL) return r;
        if (reply.type == REDIS_REPLY_STRING) {
          r.found = true;
          r.value.assign(reply.str, reply.len);
          return r;
        }
        break;
      case redis_command::set:
        if (status_is("OK")) {
          r.found = true;
          return r;
        }
        break;
      case redis_command::del:
        if (reply.type == REDIS_REPLY_INTEGER) {
          r.found = reply.integer > 0;
          return r;
        }
        break;
      case redis_command::ping:
        if (status_is("PONG")) {
          r.found = true;
          return r;
        }
        break;
    }
    r.error = make_error(errc::internal, fmt::format("redis {}: unexpected reply to {} (hiredis reply type {})", addr,
                                                     name, reply.type));
    return r;
  }

  redis_result run(size_t worker, redisContext*& ctx, const job& j) {
    const char* name = to_string(j.cmd);
    for (int attempt = 0;; ++attempt) {
      bool reused = ctx != nullptr;
      if (!reused) {
        if (auto err = connect(worker, ctx)) return redis_result{std::move(err), false, {}};
      }
      errno = 0;
      redisReply* reply = execute(ctx, j);
      if (reply != nullptr) {
        mark_up();
        auto r = interpret(j, *reply);
        freeReplyObject(reply);
        return r;
      }
      // The context is unusable now (hiredis' contract), and after a timeout the reply may
      // still arrive later: never reuse it.
      int err_no = errno;
      bool timed_out = ctx->err == REDIS_ERR_IO && (err_no == EAGAIN || err_no == EWOULDBLOCK);
      std::string cause = ctx->errstr;
      drop(worker, ctx, true);
      if (timed_out) {
        m.timeout_failures->inc();
        auto what = fmt::format("{} timed out after {} ms", name, s.timeout_ms);
        mark_down(what);
        return redis_result{unavailable(what), false, {}};
      }
      m.io_failures->inc();
      auto what = fmt::format("{} failed: connection lost ({})", name, cause);
      if (reused && attempt == 0) {
        log::debug(subsystem, "{}: {}; retrying once on a new connection", addr, what);
        continue;
      }
      mark_down(what);
      return redis_result{unavailable(what), false, {}};
    }
  }

  void work(size_t worker) {
    // hiredis writes with write(2): a peer that reset the connection would raise SIGPIPE,
    // whose default action ends the process. Blocked here, the write fails with EPIPE.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    redisContext* ctx = nullptr;
    for (;;) {
      job j;
      {
        std::unique_lock<std::mutex> lk{mu};
        cv.wait(lk, [&] { return stopping || !jobs.empty(); });
        if (stopping) break;
        j = std::move(jobs.front());
        jobs.pop_front();
        queued_bytes -= j.bytes;
        m.depth->set(static_cast<double>(jobs.size()));
      }
      auto started = steady::now();
      auto waited = started - j.queued_at;
      m.queue_wait->observe(seconds(waited));
      redis_result r;
      if (waited > timeout)  // its requester has probably given up: do not add to the load
        r.error = unavailable(fmt::format("{} waited {} ms in the queue (limit {} ms): Redis is slow or unreachable",
                                          to_string(j.cmd), to_ms(waited), s.timeout_ms));
      else
        r = run(worker, ctx, j);
      m.op_seconds[index_of(j.cmd)]->observe(seconds(steady::now() - started));
      count(j.cmd, classify(j.cmd, r));
      // Last: the completion may end up destroying the pool (and the metrics registry with
      // its owner); after it this thread touches only `this`, which it co-owns.
      j.done(std::move(r));
    }
    drop(worker, ctx, false);
  }

  // Refuses new jobs, interrupts commands in flight and returns the jobs still queued.
  std::deque<job> stop() {
    std::deque<job> left;
    {
      std::lock_guard<std::mutex> lk{mu};
      if (stopping) return left;
      stopping = true;
      left.swap(jobs);
      queued_bytes = 0;
      for (int fd : fds)
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
    cv.notify_all();
    return left;
  }
};

redis_pool::redis_pool(redis_settings settings, metrics::registry& metrics) {
  if (auto why = validate(settings); !why.empty()) throw std::invalid_argument(why);
  core_ = std::make_shared<core>(std::move(settings), metrics);
  try {
    for (size_t i = 0; i < core_->s.pool_size; ++i)
      workers_.emplace_back([c = core_, i] { c->work(i); });
  } catch (...) {
    core_->stop();
    for (auto& t : workers_) t.join();
    throw;
  }
  log::info(subsystem, "pool of {} connections to {} (timeout {} ms, queue {} jobs)", core_->s.pool_size,
            core_->addr, core_->s.timeout_ms, core_->s.queue_capacity);
}

redis_pool::~redis_pool() {
  auto left = core_->stop();
  core_->m.depth->set(0);
  for (auto& j : left) {
    core_->count(j.cmd, outcome::unavailable);
    j.done(redis_result{core_->unavailable("redis pool stopped"), false, {}});
  }
  for (auto& t : workers_) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // destroyed from a completion on this worker: it ends by itself
    else
      t.join();
  }
}

caf::error redis_pool::submit(redis_command cmd, std::string key, std::string value, completion done) {
  auto& c = *core_;
  if (cmd != redis_command::set) value.clear();
  auto too_large = [&](const char* what, size_t n) {
    c.count(cmd, outcome::rejected);
    return make_error(errc::limit_exceeded,
                      fmt::format("redis {}: {} {} of {} bytes is larger than the limit of {} bytes", c.addr,
                                  to_string(cmd), what, n, c.s.max_value_bytes));
  };
  if (key.size() > c.s.max_value_bytes) return too_large("key", key.size());
  if (value.size() > c.s.max_value_bytes) return too_large("value", value.size());
  uint64_t bytes = key.size() + value.size();
  {
    std::lock_guard<std::mutex> lk{c.mu};
    if (c.stopping) {
      c.count(cmd, outcome::rejected);
      return c.unavailable("redis pool stopped");
    }
    if (c.jobs.size() >= c.s.queue_capacity || c.queued_bytes + bytes > c.s.max_queued_bytes) {
      c.count(cmd, outcome::rejected);
      return c.unavailable(fmt::format("redis queue full ({} jobs, {} bytes waiting)", c.jobs.size(), c.queued_bytes));
    }
    c.jobs.push_back(core::job{cmd, std::move(key), std::move(value), std::move(done), steady::now(), bytes});
    c.queued_bytes += bytes;
    c.m.depth->set(static_cast<double>(c.jobs.size()));
  }
  c.cv.notify_one();
  return {};
}

size_t redis_pool::queued() const {
  std::lock_guard<std::mutex> lk{core_->mu};
  return core_->jobs.size();
}

const redis_settings& redis_pool::settings() const { return core_->s; }

// ---- the actor -----------------------------------------------------------------------------

namespace {

struct redis_state {
  std::unique_ptr<redis_pool> pool;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, caf::typed_response_promise<redis_value>> reads;
  std::unordered_map<uint64_t, caf::typed_response_promise<bool>> others;  // SET, DEL, PING

  ~redis_state() {
    if (!pool) return;
    auto stopped = make_error(errc::unavailable, "redis " + pool->settings().address() + ": redis actor stopped");
    pool.reset();  // first: no worker runs a job of ours any more
    for (auto& [id, rp] : reads) rp.deliver(stopped);
    for (auto& [id, rp] : others) rp.deliver(stopped);
  }
  static const char* name;
};
const char* redis_state::name = "redis";

using self_ptr = redis_actor::stateful_pointer<redis_state>;

template <class T>
caf::result<T> start(self_ptr self, std::unordered_map<uint64_t, caf::typed_response_promise<T>>& waiters,
                     redis_command cmd, std::string key, std::string value) {
  auto id = self->state.next_id++;
  // Weak: a job in the queue does not keep the actor alive.
  auto addr = self->address();
  auto err = self->state.pool->submit(cmd, std::move(key), std::move(value), [addr, id](redis_result&& r) {
    if (auto h = caf::actor_cast<redis_actor>(addr)) caf::anon_send(h, redis_done_atom::value, id, std::move(r));
  });
  if (err) return err;
  auto rp = self->make_response_promise<T>();
  waiters.emplace(id, rp);
  return rp;
}

}  // namespace

redis_actor spawn_redis_actor(caf::actor_system& sys, redis_settings settings, metrics::registry& metrics) {
  // Made here so that bad settings throw to the caller, not inside the actor.
  auto pool = std::make_shared<std::unique_ptr<redis_pool>>(std::make_unique<redis_pool>(std::move(settings), metrics));
  return sys.spawn([pool](self_ptr self) -> redis_actor::behavior_type {
    self->state.pool = std::move(*pool);
    return {
      [=](redis_get_atom, std::string& key) -> caf::result<redis_value> {
        return start(self, self->state.reads, redis_command::get, std::move(key), {});
      },
      [=](redis_set_atom, std::string& key, std::string& value) -> caf::result<bool> {
        return start(self, self->state.others, redis_command::set, std::move(key), std::move(value));
      },
      [=](redis_del_atom, std::string& key) -> caf::result<bool> {
        return start(self, self->state.others, redis_command::del, std::move(key), {});
      },
      [=](redis_ping_atom) -> caf::result<bool> {
        return start(self, self->state.others, redis_command::ping, {}, {});
      },
      [=](redis_done_atom, uint64_t id, redis_result& r) {
        if (self->current_sender() != nullptr) return;  // only the pool's workers (anonymous)
        auto& st = self->state;
        if (auto i = st.reads.find(id); i != st.reads.end()) {
          if (r.error)
            i->second.deliver(std::move(r.error));
          else
            i->second.deliver(redis_value{r.found, std::move(r.value)});
          st.reads.erase(i);
        } else if (auto k = st.others.find(id); k != st.others.end()) {
          if (r.error)
            k->second.deliver(std::move(r.error));
          else
            k->second.deliver(r.found);
          st.others.erase(k);
        }
      },
    };
  });
}

}  // namespace dsync
