// The replicated lock table (the lock service's state machine on the control Raft group).
// Pure: commands arrive in log order, each carrying the leader's wall-clock time in
// milliseconds (`now_ms`), stamped when the leader proposed it. Replicas never read a
// clock, so every replica computes the same grants, expiries and answers.
//
// Time inside the table never runs backwards: a command whose now_ms is older than the
// newest seen so far is applied at the newest time (a new leader's clock may lag).
//
// Semantics (see ../../shared/DESIGN.md, "Locks"):
// - Modes: shared (any number of holders) and exclusive (one holder, no shared holders).
// - FIFO-fair: a request is granted at once only if it is compatible with every holder
//   AND nobody waits before it; otherwise it queues. When holders leave, waiters are
//   granted from the front as long as they are compatible (a run of shared waiters is
//   granted together; an exclusive waiter at the front blocks the shared ones behind it).
// - Upgrade: a shared holder asking for exclusive is granted at once if it is the sole
//   holder; otherwise it waits at the FRONT of the queue, keeping its shared grant.
//   An exclusive holder asking for shared keeps its exclusive grant (answered as is).
// - Idempotent per (lock, client): a holder asking again for a mode it already has (or a
//   weaker one) gets its existing grant back (same token) and its lease renewed; a waiter
//   asking again is told it is still waiting (its place is kept).
// - Leases: a grant expires at grant time + ttl_ms unless refreshed; refresh sets it to
//   now + ttl_ms. `expire` commands (proposed by the leader when next_deadline() passes)
//   drop lapsed grants and time out waiters whose wait_ms passed, then grant waiters.
// - Fencing tokens: every grant (including an upgrade) gets the next value of a counter
//   that only grows (starts at 1; kept in snapshots).
// - Deadlock: the wait-for graph has an edge from each waiter W of lock L to every holder
//   of L whose mode conflicts with W's request and to every waiter queued before W on L
//   whose mode conflicts with W's (exclusive conflicts with everything; shared with
//   exclusive). A client never waits for itself. A request that would start waiting and
//   close a cycle is refused at once with `deadlock` and the cycle (the requester is the
//   victim; it is not queued). Cycles can only appear when a wait starts, so this is the
//   only check needed.
// - wait_ms == 0: try once; if not grantable at once, answer `timeout` without queueing.
// - release by a holder frees the grant (its wait for an upgrade too); release by a
//   client that only waits cancels the wait (answer `cancelled`, event `cancelled`);
//   anybody else gets `not_held`. refresh by a non-holder gets `not_held`.
// - renew_all (proposed by a new leader, as etcd renews leases on promotion): every
//   holder's lease is extended to at least now + its ttl, so that holders do not lose
//   their locks for the time the cluster had no leader to refresh with.
//
// Clarifications (the implementation's choices where the above leaves room):
// - Every command, a refused one included, moves the table's time to max(now, now_ms).
// - A lease or wait deadline d has passed when d <= now. Only `expire` acts on it: until
//   then a holder whose lease has passed still holds (and may refresh).
// - An idempotent acquire renews the lease with the request's ttl_ms, which becomes the
//   grant's ttl from then on.
// - A holder that releases or whose lease lapses also gives up its wait for an upgrade:
//   that wait is reported with event `cancelled` (after `expired` for a lapsed lease).
// - expire reports expiries and timeouts in deadline order, then the grants they allowed,
//   lock by lock in name order.
// - decode() checks the structure (lengths, enum values, no trailing bytes); the limits
//   are validate()'s, so a decoded command can still be refused with bad_request.
// - restore() checks the structure of the snapshot (valid enums, one exclusive holder or
//   only shared ones, no duplicate clients, upgrade waiters hold shared and come first,
//   tokens distinct and <= last_token) but not the limits, so that a snapshot taken under
//   larger limits still loads.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace dsync::locks {

// Limits (documented in the README and enforced by validate()).
constexpr size_t max_name_bytes = 256;
constexpr size_t max_client_bytes = 128;
constexpr uint64_t min_ttl_ms = 100;
constexpr uint64_t max_ttl_ms = 24ull * 3600 * 1000;  // a day
constexpr uint64_t max_wait_ms = 600'000;             // ten minutes
constexpr size_t max_waiters_per_lock = 1024;
constexpr size_t max_locks_per_client = 1024;         // held plus waited for

enum class mode : uint8_t { shared = 1, exclusive = 2 };
const char* to_string(mode m);  // "shared" | "exclusive"
bool parse_mode(const std::string& s, mode& out);

enum class op : uint8_t { acquire = 1, release = 2, refresh = 3, expire = 4, renew_all = 5 };

struct command {
  op kind = op::acquire;
  uint64_t now_ms = 0;          // the leader's clock when it proposed the command
  std::string lock;             // acquire, release, refresh
  std::string client;           // acquire, release, refresh
  mode wanted = mode::exclusive;  // acquire
  uint64_t wait_ms = 0;         // acquire
  uint64_t ttl_ms = 0;          // acquire
};

// Empty if `c` is acceptable, else one sentence naming what is wrong (empty or over-long
// names, ttl or wait out of range). apply() refuses invalid commands with bad_request too.
std::string validate(const command& c);

std::string encode(const command& c);
bool decode(const std::string& bytes, command& out);  // false on malformed bytes

enum class code : uint8_t {
  granted = 1,      // acquire: held now (grant filled in)
  waiting = 2,      // acquire: queued (position filled in); an event follows later
  timeout = 3,      // acquire with wait_ms 0 that could not be granted at once
  deadlock = 4,     // acquire: would close a cycle (cycle filled in); not queued
  released = 5,     // release by a holder
  cancelled = 6,    // release by a waiter: its wait is cancelled
  refreshed = 7,    // refresh (grant filled in with the new expiry)
  not_held = 8,     // release/refresh by a client that neither holds nor waits
  bad_request = 9,  // validate() failed (message filled in)
  limit = 10,       // too many waiters on the lock or locks of the client (message)
  done = 11,        // expire, renew_all
};
const char* to_string(code c);

struct grant {
  std::string lock;
  std::string client;
  mode held = mode::exclusive;
  uint64_t token = 0;
  uint64_t ttl_ms = 0;
  uint64_t expires_at_ms = 0;  // leader time
};

struct outcome {
  code result = code::done;
  grant granted;                   // granted, refreshed
  uint64_t position = 0;           // waiting: 1 = first in the queue
  // deadlock: the cycle as alternating client, lock, client, lock, ... starting and ending
  // with the requester, e.g. {"a", "L1", "b", "L2", "a"}: a waits for L1 held by b, b
  // waits for L2 held by a.
  std::vector<std::string> cycle;
  std::string message;             // bad_request, limit
};
std::string encode(const outcome& o);
bool decode(const std::string& bytes, outcome& out);

// What an applied command did to requests other than its own (the lock service answers
// the waiting requests it holds from these).
struct event {
  enum class kind : uint8_t {
    granted = 1,    // a waiter got the lock (grant)
    timed_out = 2,  // a waiter's wait_ms passed (lock, client)
    cancelled = 3,  // a waiter released before being granted (lock, client)
    expired = 4,    // a holder's lease lapsed (grant: the lost grant)
  };
  kind what = kind::granted;
  grant subject;  // lock and client always; the rest for granted/expired
};

struct holder_status {
  std::string client;
  mode held = mode::exclusive;
  uint64_t token = 0;
  uint64_t ttl_ms = 0;
  uint64_t expires_at_ms = 0;
};
struct waiter_status {
  std::string client;
  mode wanted = mode::exclusive;
  bool upgrade = false;
  uint64_t deadline_ms = 0;
};
struct lock_status {
  std::string lock;
  std::vector<holder_status> holders;  // in grant order
  std::vector<waiter_status> waiters;  // in queue order
};

class table {
 public:
  // Applies the command committed at log index `index`; appends what it did to other
  // requests to `events` (in the order it happened).
  outcome apply(uint64_t index, const command& c, std::vector<event>& events);

  // The earliest lease expiry or wait deadline (leader time), if any: when the leader
  // should propose `expire`.
  std::optional<uint64_t> next_deadline() const;

  // Unknown locks have no holders and no waiters.
  lock_status status(const std::string& lock) const;

  size_t lock_count() const;    // locks with holders or waiters
  size_t holder_count() const;  // grants
  size_t waiter_count() const;
  uint64_t last_token() const;
  uint64_t now_ms() const;      // newest time seen

  std::string snapshot() const;
  bool restore(const std::string& bytes);  // false (table unchanged) on malformed bytes

 private:
  struct holder {
    std::string client;
    mode held;
    uint64_t token;
    uint64_t ttl_ms;
    uint64_t expires_at_ms;
  };
  struct waiter {
    std::string client;
    mode wanted;
    bool upgrade;  // a shared holder waiting for exclusive; always at the front
    uint64_t ttl_ms;
    uint64_t deadline_ms;
  };
  struct entry {
    std::vector<holder> holders;  // in grant order
    std::deque<waiter> waiters;   // in queue order
  };
  using lock_iter = std::map<std::string, entry>::iterator;
  // (time, kind, lock, client); kind 0 = a holder's lease expiry, 1 = a waiter's deadline.
  using deadline = std::tuple<uint64_t, uint8_t, std::string, std::string>;

  outcome acquire(const command& c);
  outcome upgrade(lock_iter li, const command& c);
  outcome release(const command& c, std::vector<event>& events);
  outcome refresh(const command& c);
  void expire(std::vector<event>& events);
  void renew_all();

  // Bookkeeping: each keeps by_client_, deadlines_ and the counters in step with locks_.
  void add_holder(const std::string& lock, entry& e, holder h);
  void remove_holder(const std::string& lock, entry& e, size_t i);
  void set_lease(const std::string& lock, holder& h, uint64_t expires_at_ms);
  void add_waiter(const std::string& lock, entry& e, waiter w, bool at_front);
  void remove_waiter(const std::string& lock, entry& e, size_t i);
  void link(const std::string& client, const std::string& lock, uint8_t flag);
  void unlink(const std::string& client, const std::string& lock, uint8_t flag);
  // Grants waiters from the front while they are compatible with the holders.
  void grant_waiters(const std::string& lock, entry& e, std::vector<event>& events);
  void drop_if_empty(lock_iter li);
  size_t lock_count_of(const std::string& client) const;
  // A cycle of the wait-for graph through `requester` (already queued), or empty.
  std::vector<std::string> find_cycle(const std::string& requester) const;

  std::map<std::string, entry> locks_;  // only locks with holders or waiters
  // Locks each client holds or waits for (limits, deadlock search):
  // client -> lock -> holds_flag | waits_flag.
  std::map<std::string, std::map<std::string, uint8_t>> by_client_;
  std::set<deadline> deadlines_;
  size_t holder_count_ = 0;
  size_t waiter_count_ = 0;
  uint64_t last_token_ = 0;
  uint64_t now_ms_ = 0;
};

}  // namespace dsync::locks
