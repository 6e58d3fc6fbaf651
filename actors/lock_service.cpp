#include "actors/lock_service.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "actors/deferred.hpp"
#include "actors/forwarder.hpp"
#include "actors/log.hpp"

namespace dsync {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// Time a request may take besides waiting for the lock: failover, forwarding, commit.
constexpr auto request_budget = 4s;
constexpr auto retry_delay = 100ms;

using grant_fn = std::function<void(lock_grant&)>;
using error_fn = std::function<void(caf::error&)>;

struct held_wait {
  grant_fn granted;
  error_fn failed;
  steady::time_point since;
};

struct service_state {
  std::string self_id;
  raft_host_actor raft;
  forwarder fwd;
  bool leading = false;
  // Acquires waiting in the table, held on the leader until the table decides.
  std::map<std::pair<std::string, std::string>, std::vector<held_wait>> waits;
  deferred_calls later;
  std::optional<uint64_t> next_deadline;  // of the table, leader time
  std::optional<uint64_t> timer_for;      // deadline the pending tick was set for
  bool expire_in_flight = false;
  struct {
    metrics::counter* grants;
    metrics::counter* waits;
    metrics::counter* timeouts;
    metrics::counter* expiries;
    metrics::counter* deadlocks;
    metrics::counter* retries;
    metrics::histogram* wait_seconds;
    metrics::gauge* held;
    metrics::gauge* waiting;
  } m{};
  static const char* name;
};
const char* service_state::name = "lock-service";

using self_ptr = lock_service_actor::stateful_pointer<service_state>;

caf::error lock_error(errc code, std::string reason) { return make_error(code, std::move(reason)); }

lock_grant to_api(const locks::grant& g, uint64_t now_ms) {
  return lock_grant{g.lock, g.client, locks::to_string(g.held), g.token, g.ttl_ms,
                    g.expires_at_ms > now_ms ? g.expires_at_ms - now_ms : 0};
}

lock_info to_api(const locks::lock_status& s, uint64_t now_ms) {
  lock_info out;
  out.lock = s.lock;
  out.mode = s.holders.empty() ? "free" : locks::to_string(s.holders.front().held);
  for (auto& h : s.holders)
    out.holders.push_back(lock_grant{s.lock, h.client, locks::to_string(h.held), h.token, h.ttl_ms,
                                     h.expires_at_ms > now_ms ? h.expires_at_ms - now_ms : 0});
  for (auto& w : s.waiters)
    out.waiters.push_back(lock_waiter{w.client, locks::to_string(w.wanted), w.upgrade,
                                      w.deadline_ms > now_ms ? w.deadline_ms - now_ms : 0});
  return out;
}

std::string describe_cycle(const std::vector<std::string>& cycle) {
  std::string out;
  for (size_t i = 0; i + 2 < cycle.size(); i += 2) {
    if (!out.empty()) out += ", ";
    out += cycle[i] + " waits for " + cycle[i + 1] + " held by " + cycle[i + 2];
  }
  return out;
}

// Proposes a lock command on this node's replica of the control group.
template <class OnOutcome>
void propose(self_ptr self, const locks::command& c, OnOutcome on_outcome, error_fn failed) {
  propose_decoded<locks::outcome>(
    self, self->state.raft, control_group, control::lock_command(c),
    [](const std::string& answer, locks::outcome& o) { return locks::decode(answer, o); }, "lock table", on_outcome,
    failed);
}

// Answers an outcome that is not a grant.
caf::error refusal(self_ptr self, const locks::command& c, const locks::outcome& o) {
  switch (o.result) {
    case locks::code::timeout:
      self->state.m.timeouts->inc();
      return lock_error(errc::timeout, "lock " + c.lock + " is held by others and wait_ms is 0");
    case locks::code::deadlock:
      self->state.m.deadlocks->inc();
      return caf::error{static_cast<uint8_t>(errc::deadlock), caf::atom("dsync"),
                        caf::make_message("waiting would deadlock: " + describe_cycle(o.cycle), o.cycle)};
    case locks::code::not_held:
      return lock_error(errc::not_held, "client " + c.client + " does not hold lock " + c.lock);
    case locks::code::bad_request: return lock_error(errc::bad_request, o.message);
    case locks::code::limit: return lock_error(errc::limit_exceeded, o.message);
    default:
      return lock_error(errc::internal, std::string{"unexpected answer from the lock table: "} + locks::to_string(o.result));
  }
}

// ---- on the leader: one command through the log ----

void local_acquire(self_ptr self, const locks::command& c, grant_fn granted, error_fn failed) {
  auto stamped = c;
  stamped.now_ms = wall_clock_ms();
  propose(
    self, stamped,
    [=](locks::outcome& o) mutable {
      auto& st = self->state;
      if (o.result == locks::code::granted) {
        st.m.grants->inc();
        auto g = to_api(o.granted, stamped.now_ms);
        return granted(g);
      }
      if (o.result == locks::code::waiting) {
        st.m.waits->inc();
        st.waits[{c.lock, c.client}].push_back(held_wait{granted, failed, steady::now()});
        return;
      }
      auto err = refusal(self, c, o);
      failed(err);
    },
    failed);
}

void local_release(self_ptr self, const locks::command& c, std::function<void(bool&)> done, error_fn failed) {
  auto stamped = c;
  stamped.now_ms = wall_clock_ms();
  propose(
    self, stamped,
    [=](locks::outcome& o) mutable {
      bool held = o.result == locks::code::released;
      if (held || o.result == locks::code::cancelled) return done(held);
      auto err = refusal(self, c, o);
      failed(err);
    },
    failed);
}

void local_refresh(self_ptr self, const locks::command& c, grant_fn done, error_fn failed) {
  auto stamped = c;
  stamped.now_ms = wall_clock_ms();
  propose(
    self, stamped,
    [=](locks::outcome& o) mutable {
      if (o.result == locks::code::refreshed) {
        auto g = to_api(o.granted, stamped.now_ms);
        return done(g);
      }
      auto err = refusal(self, c, o);
      failed(err);
    },
    failed);
}

void local_status(self_ptr self, const std::string& lock, bool linearizable, std::function<void(lock_info&)> done,
                  error_fn failed) {
  if (!self->state.raft) {
    caf::error err = lock_error(errc::unavailable, "the Raft host is not attached yet");
    return failed(err);
  }
  self->request(self->state.raft, caf::infinite, query_atom::value, control_group, control::lock_query(lock),
                linearizable)
    .then(
      [=](std::string& answer) mutable {
        locks::lock_status s;
        if (!control::decode_lock_answer(answer, s)) {
          caf::error err = lock_error(errc::internal, "malformed answer from the lock table");
          return failed(err);
        }
        auto info = to_api(s, wall_clock_ms());
        done(info);
      },
      [=](caf::error& err) mutable { failed(err); });
}

// ---- on the node that received the request ----

// Runs a request on the control group's leader until it is answered or `deadline` passes:
// `local(answer, fail)` runs it on this replica; on a follower it goes to the leader's node
// API as `forwarded...`; lost leaders and elections are retried.
template <class T, class Local, class... Ts>
void run_on_leader(self_ptr self, caf::typed_response_promise<T> rp, steady::time_point deadline, Local local,
                   Ts... forwarded) {
  std::function<void(T&)> answer = [=](T& x) mutable { rp.deliver(std::move(x)); };
  error_fn retry_or_fail = [=](caf::error& err) mutable {
    bool retryable = err == errc::unavailable || err == errc::not_leader;
    if (retryable && steady::now() + retry_delay < deadline) {
      self->state.m.retries->inc();
      self->state.later.after(self, retry_delay, lock_retry_atom::value,
                              [=] { run_on_leader<T>(self, rp, deadline, local, forwarded...); });
      return;
    }
    if (err == errc::not_leader) rp.deliver(lock_error(errc::unavailable, "no Raft leader could be reached in time"));
    else rp.deliver(std::move(err));
  };
  local(answer, [=](caf::error& err) mutable {
    if (err == errc::not_leader) {
      auto leader = leader_of(err);
      if (!leader.empty() && leader != self->state.self_id) {
        auto left = std::chrono::duration_cast<caf::timespan>(deadline - steady::now());
        self->state.fwd.call<T>(self, leader, std::max(left, caf::timespan{retry_delay}), answer, retry_or_fail,
                                forwarded...);
        return;
      }
    }
    retry_or_fail(err);
  });
}

// Serves a request either for a client (retrying on the leader) or forwarded by another
// node (this replica only; that node retries).
template <class T, class Local, class... Ts>
caf::result<T> serve(self_ptr self, bool forwarded, caf::timespan budget, Local local, Ts... as_forwarded) {
  auto rp = self->make_response_promise<T>();
  if (forwarded) {
    local([=](T& x) mutable { rp.deliver(std::move(x)); }, [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  } else {
    run_on_leader<T>(self, rp, steady::now() + budget, local, as_forwarded...);
  }
  return rp;
}

// ---- reports from the state machine ----

void arm_timer(self_ptr self) {
  auto& st = self->state;
  if (!st.next_deadline || (st.timer_for && *st.timer_for <= *st.next_deadline)) return;
  st.timer_for = st.next_deadline;
  auto now = wall_clock_ms();
  auto wait = *st.next_deadline > now ? *st.next_deadline - now : 0;
  self->delayed_send(self, std::chrono::milliseconds(wait + 1), lock_tick_atom::value);
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  st.timer_for.reset();
  if (!st.leading || !st.next_deadline || st.expire_in_flight) return;
  auto now = wall_clock_ms();
  if (now < *st.next_deadline) return arm_timer(self);
  st.expire_in_flight = true;
  locks::command c;
  c.kind = locks::op::expire;
  c.now_ms = now;
  propose(
    self, c, [=](locks::outcome&) { self->state.expire_in_flight = false; },
    [=](caf::error&) {
      // Not committed in time (an election?): try again while this node leads.
      self->state.expire_in_flight = false;
      self->state.timer_for = self->state.next_deadline;
      self->delayed_send(self, retry_delay, lock_tick_atom::value);
    });
}

void on_report(self_ptr self, lock_apply_report& r) {
  auto& st = self->state;
  st.m.held->set(static_cast<double>(r.holders));
  st.m.waiting->set(static_cast<double>(r.waiters));
  for (auto& e : r.events) {
    if (e.what == locks::event::kind::expired) {
      if (st.leading) st.m.expiries->inc();
      continue;
    }
    auto w = st.waits.find({e.subject.lock, e.subject.client});
    if (w == st.waits.end()) continue;
    auto held = std::move(w->second);
    st.waits.erase(w);
    for (auto& h : held) {
      if (e.what == locks::event::kind::granted) {
        st.m.grants->inc();
        st.m.wait_seconds->observe(std::chrono::duration<double>(steady::now() - h.since).count());
        auto g = to_api(e.subject, wall_clock_ms());
        h.granted(g);
      } else if (e.what == locks::event::kind::timed_out) {
        st.m.timeouts->inc();
        caf::error err = lock_error(errc::timeout, "lock " + e.subject.lock + " was not granted within wait_ms");
        h.failed(err);
      } else {
        caf::error err = lock_error(errc::timeout, "the wait for lock " + e.subject.lock + " was cancelled by a release");
        h.failed(err);
      }
    }
  }
  st.next_deadline = r.next_deadline;
  if (st.leading) arm_timer(self);
}

void on_leadership(self_ptr self, bool leading) {
  auto& st = self->state;
  st.leading = leading;
  if (!leading) {
    // Their entry nodes retry against the new leader, where they keep their place.
    auto held = std::move(st.waits);
    st.waits.clear();
    for (auto& [key, list] : held)
      for (auto& h : list) {
        caf::error err = lock_error(errc::unavailable, "this node stopped leading the control group");
        h.failed(err);
      }
    return;
  }
  locks::command c;
  c.kind = locks::op::renew_all;
  c.now_ms = wall_clock_ms();
  propose(self, c, [](locks::outcome&) {}, [](caf::error& err) {
    log::warn("locks", "renewing leases after the election: {}", error_reason(err));
  });
  arm_timer(self);
}

std::optional<std::string> check_names(const std::string& lock, const std::string& client) {
  locks::command c;
  c.kind = locks::op::release;
  c.lock = lock;
  c.client = client;
  auto why = locks::validate(c);
  if (why.empty()) return std::nullopt;
  return why;
}

}  // namespace

lock_service_actor spawn_lock_service(caf::actor_system& sys, std::string self_id, peer_links_actor links,
                                      metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> lock_service_actor::behavior_type {
    auto& st = self->state;
    st.self_id = self_id;
    st.fwd.init(links);
    st.m.grants = &registry.get_counter("dsync_lock_grants_total", "Locks granted by this node as leader");
    st.m.waits = &registry.get_counter("dsync_lock_waits_total", "Acquires that had to wait");
    st.m.timeouts = &registry.get_counter("dsync_lock_timeouts_total", "Acquires not granted within wait_ms");
    st.m.expiries = &registry.get_counter("dsync_lock_expiries_total", "Leases that lapsed without a refresh");
    st.m.deadlocks = &registry.get_counter("dsync_lock_deadlocks_total", "Acquires refused because they would deadlock");
    st.m.retries = &registry.get_counter("dsync_lock_retries_total", "Lock requests retried after a leader change");
    st.m.wait_seconds = &registry.get_histogram("dsync_lock_wait_seconds", "Time from queueing to grant",
                                                metrics::latency_buckets_seconds());
    st.m.held = &registry.get_gauge("dsync_locks_held", "Lock grants in the replicated table");
    st.m.waiting = &registry.get_gauge("dsync_lock_waiters", "Waiters in the replicated table");
    self->set_down_handler([=](caf::down_msg& dm) { self->state.fwd.on_down(dm); });
    return {
      [=](lock_acquire_atom, lock_request& req, bool forwarded) -> caf::result<lock_grant> {
        locks::command c;
        c.kind = locks::op::acquire;
        c.lock = req.lock;
        c.client = req.client;
        c.wait_ms = req.wait_ms;
        c.ttl_ms = req.ttl_ms;
        if (!locks::parse_mode(req.mode, c.wanted))
          return lock_error(errc::bad_request, "mode must be exclusive or shared, not \"" + req.mode + "\"");
        if (auto why = locks::validate(c); !why.empty()) return lock_error(errc::bad_request, why);
        auto budget = std::chrono::duration_cast<caf::timespan>(std::chrono::milliseconds(req.wait_ms) + request_budget);
        return serve<lock_grant>(
          self, forwarded, budget, [=](grant_fn ok, error_fn fail) { local_acquire(self, c, ok, fail); },
          lock_acquire_atom::value, req, true);
      },
      [=](lock_release_atom, std::string& lock, std::string& client, bool forwarded) -> caf::result<bool> {
        if (auto why = check_names(lock, client)) return lock_error(errc::bad_request, *why);
        locks::command c;
        c.kind = locks::op::release;
        c.lock = lock;
        c.client = client;
        return serve<bool>(
          self, forwarded, request_budget,
          [=](std::function<void(bool&)> ok, error_fn fail) { local_release(self, c, ok, fail); },
          lock_release_atom::value, lock, client, true);
      },
      [=](lock_refresh_atom, std::string& lock, std::string& client, bool forwarded) -> caf::result<lock_grant> {
        if (auto why = check_names(lock, client)) return lock_error(errc::bad_request, *why);
        locks::command c;
        c.kind = locks::op::refresh;
        c.lock = lock;
        c.client = client;
        return serve<lock_grant>(
          self, forwarded, request_budget, [=](grant_fn ok, error_fn fail) { local_refresh(self, c, ok, fail); },
          lock_refresh_atom::value, lock, client, true);
      },
      [=](lock_status_atom, std::string& lock, bool linearizable, bool forwarded) -> caf::result<lock_info> {
        if (auto why = check_names(lock, "status")) return lock_error(errc::bad_request, *why);
        if (!linearizable) {
          // A stale read is this replica's view; no leader needed.
          auto rp = self->make_response_promise<lock_info>();
          local_status(self, lock, false, [=](lock_info& x) mutable { rp.deliver(std::move(x)); },
                       [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
          return rp;
        }
        return serve<lock_info>(
          self, forwarded, request_budget,
          [=](std::function<void(lock_info&)> ok, error_fn fail) { local_status(self, lock, true, ok, fail); },
          lock_status_atom::value, lock, true, true);
      },
      [=](attach_atom, raft_host_actor& raft) { self->state.raft = std::move(raft); },
      [=](lock_report_atom, lock_apply_report& r) { on_report(self, r); },
      [=](lock_leader_atom, bool leading) { on_leadership(self, leading); },
      [=](lock_tick_atom) { on_tick(self); },
      [=](lock_retry_atom, uint64_t id) { self->state.later.run(id); },
      [=](forward_sweep_atom) { self->state.fwd.sweep(self); },
    };
  });
}

lock_observer observe_locks(lock_service_actor service) {
  lock_observer o;
  o.applied = [service](lock_apply_report r) { caf::anon_send(service, lock_report_atom::value, std::move(r)); };
  o.leadership = [service](bool leading) { caf::anon_send(service, lock_leader_atom::value, leading); };
  return o;
}

}  // namespace dsync
