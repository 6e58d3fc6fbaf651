// The Redis pool and its actor against a real redis-server on a free loopback port: round
// trips (binary values, large values, missing keys), many concurrent requests, a killed
// server (errors that name the address, then fail fast), a restarted one (reconnect), a
// stalled one (timeouts, a full queue), and the limits.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "actors/redis/redis_pool.hpp"

using namespace dsync;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool answers_ping(uint16_t port) {
  timeval tv{0, 200 * 1000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return false;
  bool ok = false;
  if (c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG";
    if (r != nullptr) freeReplyObject(r);
  }
  redisFree(c);
  return ok;
}

// A redis-server child process in a temporary directory, killed (SIGKILL) by the destructor
// and, should this process die first, by the kernel (PR_SET_PDEATHSIG).
class redis_server {
 public:
  redis_server() : port_(free_port()) {
    char tmpl[] = "/tmp/dsync-redis-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    start();
  }
  ~redis_server() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Starts the server (on the same port every time) and waits until it answers.
  void start() {
    REQUIRE(pid_ < 0);
    auto port = std::to_string(port_);
    auto log = dir_ + "/redis.log";
    std::vector<std::string> args{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--daemonize", "no", "--dir", dir_, "--logfile", log};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = ::getpid();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {  // child: async-signal-safe calls only
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        ::dup2(devnull, STDIN_FILENO);
        ::dup2(devnull, STDOUT_FILENO);
        ::dup2(devnull, STDERR_FILENO);
      }
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    auto deadline = steady::now() + 5s;
    while (!answers_ping(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("redis-server exited at start-up (see " << log << ")");
      }
      REQUIRE_MESSAGE(steady::now() < deadline, "redis-server did not answer on port " << port_ << " within 5 s");
      std::this_thread::sleep_for(20ms);
    }
  }
  void kill() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGCONT);  // a stopped process still dies of SIGKILL, but be plain about it
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  uint16_t port_;
  std::string dir_;
  pid_t pid_ = -1;
};

struct test_config : caf::actor_system_config {
  test_config() { set("scheduler.max-threads", 2); }
};

redis_settings settings_for(const redis_server& server) {
  redis_settings s;
  s.host = "127.0.0.1";
  s.port = server.port();
  return s;
}

// A Redis server, a metrics registry and an actor system with the Redis actor.
struct fixture {
  redis_server server;
  metrics::registry registry;  // outlives the actor system, whose actors record into it
  test_config cfg;
  caf::actor_system sys{cfg};
  redis_actor redis;

  redis_settings settings;

  explicit fixture(const std::function<void(redis_settings&)>& tweak = {}) : settings(settings_for(server)) {
    if (tweak) tweak(settings);
    redis = spawn_redis_actor(sys, settings, registry);
  }
  ~fixture() { caf::anon_send_exit(redis, caf::exit_reason::kill); }

  double ops(const char* command, const char* result) {
    return registry
      .get_counter("dsync_redis_ops_total", "Redis operations by command and result",
                   {{"command", command}, {"result", result}})
      .value();
  }
  double connection_failures(const char* reason) {
    return registry
      .get_counter("dsync_redis_connection_failures_total", "Redis connections that could not be made or were lost",
                   {{"reason", reason}})
      .value();
  }
};

// The answer to one request: a value or an error.
template <class T>
struct answer {
  std::optional<T> value;
  caf::error error;
  std::string reason() const { return error_reason(error); }
};

template <class T, class... Ts>
answer<T> ask(caf::actor_system& sys, const redis_actor& redis, Ts&&... xs) {
  caf::scoped_actor self{sys};
  answer<T> a;
  self->request(redis, caf::duration{10s}, std::forward<Ts>(xs)...)
    .receive([&](T& v) { a.value = std::move(v); }, [&](caf::error& e) { a.error = std::move(e); });
  return a;
}

answer<redis_value> get(fixture& f, const std::string& key) {
  return ask<redis_value>(f.sys, f.redis, redis_get_atom::value, key);
}
answer<bool> set(fixture& f, const std::string& key, const std::string& value) {
  return ask<bool>(f.sys, f.redis, redis_set_atom::value, key, value);
}
answer<bool> del(fixture& f, const std::string& key) { return ask<bool>(f.sys, f.redis, redis_del_atom::value, key); }
answer<bool> ping(fixture& f) { return ask<bool>(f.sys, f.redis, redis_ping_atom::value); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Sends `n` requests at once from one actor, then collects every answer (in order).
template <class T, class MakeRequest>
std::vector<answer<T>> burst(caf::actor_system& sys, const redis_actor& redis, size_t n, MakeRequest make) {
  caf::scoped_actor self{sys};
  std::vector<answer<T>> out(n);
  std::vector<decltype(make(self, redis, size_t{0}))> handles;
  handles.reserve(n);
  for (size_t i = 0; i < n; ++i) handles.push_back(make(self, redis, i));
  for (size_t i = 0; i < n; ++i)
    handles[i].receive([&](T& v) { out[i].value = std::move(v); }, [&](caf::error& e) { out[i].error = std::move(e); });
  return out;
}

}  // namespace

TEST_CASE("SET, GET and DEL round trip, binary-safe and with large values") {
  fixture f;
  auto p = ping(f);
  REQUIRE_MESSAGE(p.value, p.reason());
  CHECK(*p.value);

  auto s = set(f, "k1", "v1");
  REQUIRE_MESSAGE(s.value, s.reason());
  CHECK(*s.value);
  auto g = get(f, "k1");
  REQUIRE_MESSAGE(g.value, g.reason());
  CHECK(*g.value == redis_value{true, "v1"});

  // NUL bytes in keys and values, and an empty value (found, but empty).
  const std::string bkey("bin\0key\r\n", 9);
  const std::string bval("\0\x01\xff\r\n\0 %s %b", 13);
  REQUIRE(set(f, bkey, bval).value);
  g = get(f, bkey);
  REQUIRE_MESSAGE(g.value, g.reason());
  CHECK(g.value->found);
  CHECK(g.value->value == bval);
  CHECK(get(f, std::string("bin", 3)).value == redis_value{false, ""});  // the NUL does not end the key
  REQUIRE(set(f, "empty", "").value);
  CHECK(get(f, "empty").value == redis_value{true, ""});

  // 512 KiB holding every byte value.
  std::string big(512 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131 + 7) % 256);
  REQUIRE(set(f, "big", big).value);
  g = get(f, "big");
  REQUIRE_MESSAGE(g.value, g.reason());
  CHECK(g.value->value.size() == big.size());
  CHECK(g.value->value == big);

  auto d = del(f, "k1");
  REQUIRE_MESSAGE(d.value, d.reason());
  CHECK(*d.value);  // removed
  CHECK(get(f, "k1").value == redis_value{false, ""});
  d = del(f, "k1");
  REQUIRE(d.value);
  CHECK_FALSE(*d.value);  // nothing left to remove

  CHECK(f.ops("set", "ok") == 4);
  CHECK(f.ops("get", "ok") == 4);
  CHECK(f.ops("get", "not_found") == 2);
  CHECK(f.ops("del", "ok") == 2);
  CHECK(f.registry.get_counter("dsync_redis_connects_total", "Redis connections made (first and reconnects)").value() >=
        1);
  CHECK(contains(f.registry.expose(), "dsync_redis_op_seconds_count{command=\"get\"} 6"));
}

TEST_CASE("GET of a key that was never set is found=false, not an error") {
  fixture f;
  auto g = get(f, "never-set");
  REQUIRE_MESSAGE(g.value, g.reason());
  CHECK_FALSE(g.value->found);
  CHECK(g.value->value.empty());
  CHECK(f.ops("get", "not_found") == 1);
}

TEST_CASE("2000 concurrent requests from several actors are all answered correctly") {
  fixture f;
  constexpr size_t actors = 4;
  constexpr size_t per_actor = 250;  // x 2 phases x 4 actors = 2000 requests
  auto key = [](size_t a, size_t i) { return "c:" + std::to_string(a) + ":" + std::to_string(i); };
  auto value = [](size_t a, size_t i) {
    return std::string(1 + (a * 7 + i) % 300, static_cast<char>('a' + a)) + std::to_string(i);
  };
  std::vector<std::thread> threads;
  std::vector<size_t> wrong(actors, 0);
  std::vector<std::string> first_error(actors);
  for (size_t a = 0; a < actors; ++a) {
    threads.emplace_back([&, a] {
      auto sets = burst<bool>(f.sys, f.redis, per_actor, [&](caf::scoped_actor& self, const redis_actor& r, size_t i) {
        return self->request(r, caf::duration{10s}, redis_set_atom::value, key(a, i), value(a, i));
      });
      for (auto& s : sets)
        if (!s.value || !*s.value) {
          ++wrong[a];
          if (first_error[a].empty()) first_error[a] = s.reason();
        }
      auto get_one = [&](caf::scoped_actor& self, const redis_actor& r, size_t i) {
        return self->request(r, caf::duration{10s}, redis_get_atom::value, key(a, i));
      };
      auto gets = burst<redis_value>(f.sys, f.redis, per_actor, get_one);
      for (size_t i = 0; i < per_actor; ++i)
        if (!gets[i].value || !(*gets[i].value == redis_value{true, value(a, i)})) {
          ++wrong[a];
          if (first_error[a].empty())
            first_error[a] = gets[i].value ? "wrong value for " + key(a, i) : gets[i].reason();
        }
    });
  }
  for (auto& t : threads) t.join();
  for (size_t a = 0; a < actors; ++a) CHECK_MESSAGE(wrong[a] == 0, "actor " << a << ": " << first_error[a]);
  CHECK(f.ops("set", "ok") == actors * per_actor);
  CHECK(f.ops("get", "ok") == actors * per_actor);
  // Every worker got some of it: the pool's connections were all used.
  CHECK(f.registry.get_gauge("dsync_redis_connections", "Open Redis connections of the pool").value() == 4);
  CHECK(f.registry.get_gauge("dsync_redis_queue_depth", "Redis operations waiting for a pool worker").value() == 0);
}

TEST_CASE("a killed Redis: errors name the address, then fail fast; a restarted one is used again") {
  fixture f{[](redis_settings& s) {
    s.timeout_ms = 500;
    s.backoff_min_ms = 200;
    s.backoff_max_ms = 400;
  }};
  const auto& s = f.settings;

  // Connections on every worker, so that some are stale after the kill.
  auto warm = burst<bool>(f.sys, f.redis, 64, [](caf::scoped_actor& self, const redis_actor& r, size_t i) {
    return self->request(r, caf::duration{10s}, redis_set_atom::value, "w" + std::to_string(i), "x");
  });
  for (auto& w : warm) REQUIRE_MESSAGE(w.value, w.reason());

  f.server.kill();
  auto t0 = steady::now();
  auto g = get(f, "w1");
  auto first_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
  REQUIRE_FALSE(g.value);
  CHECK(g.error == errc::unavailable);
  CHECK_MESSAGE(contains(g.reason(), "redis " + f.server.address()), g.reason());
  CHECK_MESSAGE(first_ms < s.timeout_ms + 500, first_ms);
  MESSAGE("first failure after " << first_ms << " ms: " << g.reason());

  // Fail fast: no connection attempts (and no waiting) inside the backoff window.
  size_t failing_fast = 0;
  for (int i = 0; i < 9; ++i) {
    auto t = steady::now();
    auto e = get(f, "w" + std::to_string(i));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
    REQUIRE_FALSE(e.value);
    CHECK(e.error == errc::unavailable);
    CHECK_MESSAGE(contains(e.reason(), f.server.address()), e.reason());
    CHECK_MESSAGE(ms < 250, ms << " ms: " << e.reason());  // well below timeout_ms
    if (contains(e.reason(), "failing fast")) ++failing_fast;
  }
  CHECK(failing_fast >= 1);
  CHECK(f.connection_failures("connect") >= 1);
  CHECK(f.ops("get", "unavailable") >= 10);

  // Back on the same port: reachable again after at most one backoff window.
  f.server.start();
  auto t1 = steady::now();
  bool back = false;
  while (!back && steady::now() - t1 < 5s) {
    back = ping(f).value.has_value();
    if (!back) std::this_thread::sleep_for(50ms);
  }
  auto back_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t1).count();
  REQUIRE_MESSAGE(back, "no successful PING within 5 s of the restart");
  CHECK_MESSAGE(back_ms < 1500, back_ms);
  MESSAGE("reachable again " << back_ms << " ms after the restart");

  // Every worker, stale connection or none, serves again (a stale one is retried once on
  // a new connection).
  auto after = burst<bool>(f.sys, f.redis, 64, [](caf::scoped_actor& self, const redis_actor& r, size_t i) {
    return self->request(r, caf::duration{10s}, redis_set_atom::value, "a" + std::to_string(i), "y");
  });
  size_t failed = 0;
  std::string why;
  for (auto& a : after)
    if (!a.value) {
      ++failed;
      why = a.reason();
    }
  CHECK_MESSAGE(failed == 0, failed << " failed, e.g. " << why);
  auto g2 = get(f, "a5");
  REQUIRE_MESSAGE(g2.value, g2.reason());
  CHECK(*g2.value == redis_value{true, "y"});
  CHECK(get(f, "w1").value == redis_value{false, ""});  // a new, empty Redis
}

TEST_CASE("a stalled Redis times out, and a full queue is refused at once") {
  redis_server server;
  auto s = settings_for(server);
  s.pool_size = 1;
  s.timeout_ms = 300;
  s.queue_capacity = 2;
  s.backoff_min_ms = 200;
  s.backoff_max_ms = 200;
  metrics::registry registry;
  {
    test_config cfg;
    caf::actor_system sys{cfg};
    auto redis = spawn_redis_actor(sys, s, registry);
    {
      caf::scoped_actor self{sys};
      bool ok = false;
      self->request(redis, caf::duration{5s}, redis_ping_atom::value)
        .receive([&](bool b) { ok = b; }, [](caf::error&) {});
      REQUIRE(ok);
    }
    server.pause();  // connected and accepting, but nobody answers
    auto t0 = steady::now();
    auto out = burst<bool>(sys, redis, 6, [](caf::scoped_actor& self, const redis_actor& r, size_t i) {
      return self->request(r, caf::duration{10s}, redis_set_atom::value, "s" + std::to_string(i), "v");
    });
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
    size_t full = 0;
    size_t timed_out = 0;
    for (auto& a : out) {
      REQUIRE_FALSE(a.value);
      CHECK(a.error == errc::unavailable);
      CHECK_MESSAGE(contains(a.reason(), "redis " + server.address()), a.reason());
      if (contains(a.reason(), "redis queue full")) ++full;
      if (contains(a.reason(), "SET timed out after 300 ms")) ++timed_out;
    }
    CHECK(full >= 3);  // at most one running and two waiting
    // The first times out; those behind it fail fast or have waited too long (on a slow
    // machine one may reach a new connection after the backoff window and time out too).
    CHECK(timed_out >= 1);
    CHECK_MESSAGE(ms < 1500, ms);
    CHECK(registry.get_counter("dsync_redis_connection_failures_total",
                               "Redis connections that could not be made or were lost", {{"reason", "timeout"}})
            .value() == static_cast<double>(timed_out));
    CHECK(registry.get_counter("dsync_redis_ops_total", "Redis operations by command and result",
                               {{"command", "set"}, {"result", "rejected"}})
            .value() == static_cast<double>(full));

    server.resume();
    auto t1 = steady::now();
    bool back = false;
    while (!back && steady::now() - t1 < 5s) {
      caf::scoped_actor self{sys};
      self->request(redis, caf::duration{5s}, redis_ping_atom::value)
        .receive([&](bool b) { back = b; }, [](caf::error&) {});
      if (!back) std::this_thread::sleep_for(50ms);
    }
    CHECK(back);
    caf::anon_send_exit(redis, caf::exit_reason::kill);
  }
}

TEST_CASE("limits and settings are checked, and nothing listening fails with the address") {
  redis_settings s;
  CHECK(validate(s).empty());
  s.pool_size = 0;
  CHECK(contains(validate(s), "pool size"));
  s = {};
  s.timeout_ms = 5;
  CHECK(contains(validate(s), "timeout"));
  s = {};
  s.backoff_min_ms = 500;
  s.backoff_max_ms = 100;
  CHECK(contains(validate(s), "backoff"));
  s = {};
  s.host.clear();
  CHECK(contains(validate(s), "host"));

  metrics::registry registry;
  test_config cfg;
  caf::actor_system sys{cfg};
  s = {};
  s.pool_size = 0;
  CHECK_THROWS_AS(spawn_redis_actor(sys, s, registry), std::invalid_argument);

  // Nobody listens on this port.
  s = {};
  s.port = free_port();
  s.max_value_bytes = 1024;
  s.max_queued_bytes = 4096;
  auto redis = spawn_redis_actor(sys, s, registry);
  caf::scoped_actor self{sys};
  caf::error err;
  self->request(redis, caf::duration{5s}, redis_set_atom::value, "k", std::string(1025, 'x'))
    .receive([](bool) { FAIL("a value over the limit was stored"); }, [&](caf::error& e) { err = std::move(e); });
  CHECK(err == errc::limit_exceeded);
  CHECK_MESSAGE(contains(error_reason(err), "1025 bytes"), error_reason(err));

  auto t0 = steady::now();
  self->request(redis, caf::duration{5s}, redis_get_atom::value, "k")
    .receive([](redis_value&) { FAIL("an answer from nowhere"); }, [&](caf::error& e) { err = std::move(e); });
  CHECK(err == errc::unavailable);
  CHECK_MESSAGE(contains(error_reason(err), "redis 127.0.0.1:" + std::to_string(s.port) + ": cannot connect"),
                error_reason(err));
  CHECK(steady::now() - t0 < 1s);
  caf::anon_send_exit(redis, caf::exit_reason::kill);
}
