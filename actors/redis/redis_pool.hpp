// Redis, the memory behind the caches: a pool of blocking hiredis connections on threads of
// their own, and `redis_actor`, the typed actor through which the other actors use it.
//
// ---- Why threads --------------------------------------------------------------------------
// hiredis' synchronous API blocks on its socket. An actor thread waiting on Redis would stall
// every actor scheduled behind it, so each connection lives on a worker thread of the pool,
// and actors only ever hand jobs over (never block) and get the outcome back as a message.
//
// ---- Threads and ordering -----------------------------------------------------------------
//   * pool_size workers, each with its own connection (redisContext), take jobs from one
//     bounded FIFO queue. Jobs start in FIFO order but run concurrently: two jobs on one key
//     that are in flight together may reach Redis in either order. Wait for the answer to one
//     before sending a conflicting one (the coherence directory never has two conflicting
//     memory operations in flight: protocols/cache/types.hpp, memory_op).
//   * redis_pool::submit never blocks and may be called from any thread. A job's completion
//     runs exactly once, on the worker thread that ran it (or, for jobs still queued when
//     the pool stops, on the thread that destroys the pool). It must not block for long.
//   * redis_actor hands each request to the pool; the worker sends the outcome back to the
//     actor as a message (redis_done_atom, job id), and the actor delivers the response
//     promise it kept. Workers never touch actor state.
//
// ---- Connections, timeouts, reconnects ----------------------------------------------------
//   * Connections are made lazily, by a worker that has a job and no connection:
//     redisConnectWithTimeout (timeout_ms), then redisSetTimeout (timeout_ms for every read
//     and write of a command) and TCP keepalive.
//   * A command that fails on the socket (connection lost, timeout) drops that worker's
//     connection; its next job reconnects. A command that fails on a reused connection
//     because the connection was found closed (Redis restarted, an idle connection was cut)
//     is retried once on a fresh connection: GET, SET, DEL and PING are idempotent. A
//     timeout is never retried.
//   * Backoff: a failed connect or a command timeout marks Redis unreachable for backoff_ms
//     (starting at backoff_min_ms, doubling up to backoff_max_ms, back to the minimum after
//     the next command that gets a reply). While it is marked, jobs that need a new
//     connection fail at once ("fail fast") instead of hammering a dead server, and after it
//     only one worker probes with a connect while the others keep failing fast. Workers
//     that still hold a working connection keep using it.
//
// ---- Errors (caf::error of dsync's errc, with a reason that starts "redis host:port: ") ---
//   * errc::unavailable: cannot connect, connection lost, command timed out, marked
//     unreachable (fail fast), job waited longer than timeout_ms in the queue, queue full
//     ("redis queue full"), pool stopped, or Redis refused the command with a transient
//     error (LOADING, BUSY, OOM, READONLY, MASTERDOWN, MISCONF, TRYAGAIN, ...).
//   * errc::limit_exceeded: a value larger than max_value_bytes (nothing is sent).
//   * errc::internal: any other error reply from Redis (e.g. WRONGTYPE) or a reply of an
//     unexpected type.
//   After an error, a SET or DEL may or may not have been applied (e.g. a timeout after
//   Redis received the command); GET and PING have no effect either way. Worst case, an
//   answer takes about timeout_ms in the queue + timeout_ms to connect + timeout_ms for the
//   command.
//
// ---- Limits ------------------------------------------------------------------------------
// At most queue_capacity jobs wait for a worker, holding at most max_queued_bytes of keys
// and values; a value (SET) is at most max_value_bytes. GET replies are not limited here
// (only values written through SET exist).
//
// ---- Metrics -----------------------------------------------------------------------------
//   dsync_redis_ops_total{command=get|set|del|ping, result=ok|not_found|unavailable|error|rejected}
//       not_found: GET of a missing key; error: errc::internal; rejected: not queued (queue
//       full, value too large, pool stopped).
//   dsync_redis_op_seconds{command}         time on a worker: connect (if needed) + command
//   dsync_redis_queue_wait_seconds          time from submit to a worker taking the job
//   dsync_redis_connection_failures_total{reason=connect|timeout|io}
//   dsync_redis_connects_total              connections made (the first and every reconnect)
//   dsync_redis_connections                 open connections (gauge)
//   dsync_redis_queue_depth                 jobs waiting for a worker (gauge)
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/metrics.hpp"
#include "app/settings.hpp"
#include "dsync/api.hpp"

namespace dsync {

struct redis_settings {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  uint32_t pool_size = 4;              // worker threads = connections, 1..64
  uint32_t timeout_ms = 1000;          // connect, and each command's reads and writes; 10..60000
  uint32_t queue_capacity = 10000;     // jobs waiting for a worker, 1..1000000
  uint64_t max_value_bytes = 64 << 20;         // one SET value, 1 .. 512 MiB (Redis' own limit)
  uint64_t max_queued_bytes = uint64_t{256} << 20;  // keys + values waiting, >= max_value_bytes
  uint32_t backoff_min_ms = 200;       // fail fast this long after the first failure, >= 1
  uint32_t backoff_max_ms = 2000;      // ... doubling up to this, >= backoff_min_ms, <= 60000

  std::string address() const { return host + ":" + std::to_string(port); }
};

// REDIS_HOST and REDIS_PORT of the node; the rest keeps its defaults.
redis_settings redis_settings_from(const node_settings& s);

// "" when the settings are usable, else one line naming the setting and what is wrong.
std::string validate(const redis_settings& s);

// What a GET found.
struct redis_value {
  bool found = false;
  std::string value;  // binary-safe; empty when !found
  friend bool operator==(const redis_value& a, const redis_value& b) {
    return a.found == b.found && a.value == b.value;
  }
};

enum class redis_command : uint8_t { get, set, del, ping };
const char* to_string(redis_command c);  // "GET", "SET", "DEL", "PING"

// The outcome of one job. error: empty on success. found: GET found the key / DEL removed
// it / true for SET and PING. value: what GET found.
struct redis_result {
  caf::error error;
  bool found = false;
  std::string value;
};

class redis_pool {
 public:
  using completion = std::function<void(redis_result&&)>;

  // Starts the workers (connections are made on first use). Throws std::invalid_argument
  // with validate()'s message for bad settings. `metrics` must outlive the pool.
  redis_pool(redis_settings settings, metrics::registry& metrics);
  // Stops taking jobs, completes every queued job with errc::unavailable ("redis pool
  // stopped"), interrupts commands in flight (their sockets are shut down) and waits for the
  // workers, which can take up to timeout_ms for a connect in progress. May run inside a
  // completion (a worker then lets its own thread finish on its own).
  ~redis_pool();
  redis_pool(const redis_pool&) = delete;
  redis_pool& operator=(const redis_pool&) = delete;

  // Queues a job; `value` is used by SET only. Returns an empty error when the job was
  // queued (`done` will run), else the reason it was not (`done` will not run): unavailable
  // (queue full, pool stopped) or limit_exceeded (value too large). Never blocks.
  caf::error submit(redis_command cmd, std::string key, std::string value, completion done);

  size_t queued() const;
  const redis_settings& settings() const;

 private:
  struct core;  // queue, reachability and metrics, shared with the worker threads
  std::shared_ptr<core> core_;
  std::vector<std::thread> workers_;
};

}  // namespace dsync

// Both travel only between actors of one process, never over the network.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsync::redis_value)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsync::redis_result)

namespace dsync {

using redis_get_atom = caf::atom_constant<caf::atom("redis_get")>;
using redis_set_atom = caf::atom_constant<caf::atom("redis_set")>;
using redis_del_atom = caf::atom_constant<caf::atom("redis_del")>;
using redis_ping_atom = caf::atom_constant<caf::atom("redis_ping")>;
using redis_done_atom = caf::atom_constant<caf::atom("redis_done")>;

// Every request is answered exactly once, with the value or a caf::error as described at
// the top of this file; nothing here waits on Redis.
using redis_actor = caf::typed_actor<
  // key -> what GET found.
  caf::replies_to<redis_get_atom, std::string>::with<redis_value>,
  // (key, value) -> true once Redis stored it.
  caf::replies_to<redis_set_atom, std::string, std::string>::with<bool>,
  // key -> true if a key was removed, false if there was none (after a retry on a lost
  // connection, a removal by the first attempt reads as false).
  caf::replies_to<redis_del_atom, std::string>::with<bool>,
  // -> true when Redis answered PONG.
  caf::replies_to<redis_ping_atom>::with<bool>,
  // Internal: a worker finished job `id`. Unknown ids are ignored.
  caf::reacts_to<redis_done_atom, uint64_t, redis_result>>;

// Spawns the actor with a pool of its own; the pool stops when the actor does. Throws
// std::invalid_argument for bad settings. `metrics` must outlive the actor.
redis_actor spawn_redis_actor(caf::actor_system& sys, redis_settings settings, metrics::registry& metrics);

}  // namespace dsync
