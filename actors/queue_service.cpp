#include "actors/queue_service.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "actors/control_machine.hpp"
#include "actors/deferred.hpp"
#include "actors/forwarder.hpp"
#include "actors/log.hpp"
#include "protocols/ring/hash_ring.hpp"

namespace dsync {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// Time a request may take besides a long poll's wait: failover, forwarding, commit.
constexpr auto request_budget = 4s;
constexpr auto retry_delay = 100ms;
constexpr auto placement_refresh = 5s;
constexpr auto preferred_leader_delay = 500ms;

using error_fn = std::function<void(caf::error&)>;
using outcome_fn = std::function<void(queue::outcome&)>;

struct parked_poll {
  queue::command cmd;
  steady::time_point until;
  std::function<void(std::vector<queue_message>&)> done;
  error_fn failed;
};

struct service_state {
  queue_service_settings settings;
  raft_host_actor raft;
  forwarder fwd;
  std::optional<ring::hash_ring> placement;  // over the control group's voters
  std::set<uint64_t> local_groups;           // shard groups with a replica here
  std::map<uint64_t, std::vector<std::string>> voters;  // of the local shard groups (sorted)
  std::set<uint64_t> changing;               // shard groups with a membership change running
  std::map<uint64_t, std::string> leaders;   // last known leader per shard group
  std::set<uint64_t> leading;
  std::map<std::pair<uint64_t, std::string>, std::map<uint64_t, parked_poll>> polls;
  std::map<uint64_t, std::optional<uint64_t>> next_deadline;  // per group, leader time
  std::map<uint64_t, uint64_t> timer_for;
  std::set<uint64_t> expire_in_flight;
  deferred_calls later;
  uint64_t next_id = 0;  // parked polls
  metrics::registry* registry = nullptr;
  struct {
    metrics::counter* enqueued;
    metrics::counter* delivered;
    metrics::counter* redelivered;
    metrics::counter* acked;
    metrics::counter* nacked;
    metrics::counter* expired;
    metrics::counter* dead_lettered;
    metrics::histogram* enqueue_seconds;
  } m{};
  static const char* name;
};
const char* service_state::name = "queue-service";

using self_ptr = queue_service_actor::stateful_pointer<service_state>;

caf::error queue_error(errc code, std::string reason) { return make_error(code, std::move(reason)); }

uint32_t shard_of_queue(self_ptr self, const std::string& queue) {
  return ring::shard_of(queue, self->state.settings.shards);
}

void run_later(self_ptr self, caf::timespan delay, std::function<void()> fn) {
  self->state.later.after(self, delay, queue_retry_atom::value, std::move(fn));
}

// Refreshes placement, local groups and known leaders from the Raft host.
void refresh_placement(self_ptr self) {
  if (!self->state.raft) return;
  self->request(self->state.raft, 2s, status_atom::value)
    .then(
      [=](std::vector<group_status>& groups) {
        auto& st = self->state;
        st.local_groups.clear();
        for (auto& g : groups) {
          if (g.group == control_group) {
            if (!g.voters.empty() && (!st.placement || st.placement->members() != [&] {
                  auto v = g.voters;
                  std::sort(v.begin(), v.end());
                  return v;
                }()))
              st.placement.emplace(g.voters);
            continue;
          }
          st.local_groups.insert(g.group);
          auto voters = g.voters;
          std::sort(voters.begin(), voters.end());
          st.voters[g.group] = std::move(voters);
          if (!g.leader.empty()) st.leaders[g.group] = g.leader;
        }
      },
      [](caf::error&) {});
}

std::vector<std::string> replicas_of(self_ptr self, uint32_t shard) {
  auto& st = self->state;
  if (!st.placement) return {};
  return st.placement->shard_replicas(shard, st.settings.replicas);
}

// ---- on the shard's leader ----

void propose(self_ptr self, uint64_t group, const queue::command& c, outcome_fn on_outcome, error_fn failed) {
  auto stamped = c;
  stamped.now_ms = wall_clock_ms();
  propose_decoded<queue::outcome>(
    self, self->state.raft, group, queue::encode(stamped),
    [](const std::string& answer, queue::outcome& o) { return queue::decode(answer, o); }, "queue shard", on_outcome,
    failed);
}

// The error for an outcome that is not ok.
caf::error refusal(const queue::outcome& o) {
  switch (o.result) {
    case queue::code::not_found: return queue_error(errc::not_found, o.message);
    case queue::code::stale_receipt: return queue_error(errc::stale_receipt, o.message);
    case queue::code::bad_request: return queue_error(errc::bad_request, o.message);
    case queue::code::limit: return queue_error(errc::limit_exceeded, o.message);
    default: return queue_error(errc::internal, std::string{"unexpected answer: "} + queue::to_string(o.result));
  }
}

// Proposes `c` and hands an ok outcome to `done`, anything else to `failed`.
void command_ok(self_ptr self, uint64_t group, const queue::command& c, outcome_fn done, error_fn failed) {
  propose(
    self, group, c,
    [=](queue::outcome& o) mutable {
      if (o.result == queue::code::ok) return done(o);
      auto err = refusal(o);
      failed(err);
    },
    failed);
}

std::vector<queue_message> to_api(std::vector<queue::delivery>& ds) {
  std::vector<queue_message> out;
  out.reserve(ds.size());
  for (auto& d : ds) out.push_back(queue_message{std::move(d.id), d.receipt, std::move(d.payload), d.deliveries});
  return out;
}

void local_dequeue(self_ptr self, uint64_t group, const queue::command& c, steady::time_point until,
                   std::function<void(std::vector<queue_message>&)> done, error_fn failed) {
  command_ok(
    self, group, c,
    [=](queue::outcome& o) mutable {
      auto& st = self->state;
      if (!o.messages.empty() || steady::now() >= until) {
        for (auto& d : o.messages) (d.deliveries > 1 ? st.m.redelivered : st.m.delivered)->inc();
        auto out = to_api(o.messages);
        return done(out);
      }
      // Nothing ready: wait for the shard to report the queue ready, or for `until`.
      auto id = ++st.next_id;
      auto key = std::make_pair(group, c.queue);
      st.polls[key].emplace(id, parked_poll{c, until, done, failed});
      run_later(self, std::chrono::duration_cast<caf::timespan>(until - steady::now()), [=] {
        auto i = self->state.polls.find(key);
        if (i == self->state.polls.end()) return;
        auto p = i->second.find(id);
        if (p == i->second.end()) return;
        auto poll = std::move(p->second);
        i->second.erase(p);
        if (i->second.empty()) self->state.polls.erase(i);
        std::vector<queue_message> none;
        poll.done(none);
      });
    },
    failed);
}

void local_query(self_ptr self, uint64_t group, std::string q, std::function<void(std::string&)> done,
                 error_fn failed) {
  if (!self->state.raft) {
    caf::error err = queue_error(errc::unavailable, "the Raft host is not attached yet");
    return failed(err);
  }
  self->request(self->state.raft, caf::infinite, query_atom::value, group, std::move(q), true)
    .then([=](std::string& answer) mutable { done(answer); }, [=](caf::error& err) mutable { failed(err); });
}

// ---- on the node that received the request ----

// Runs a request on the leader of `group` until answered or `deadline` passes, then calls
// answer(T&) or fail(error&) once. local(answer, fail) runs it on this node's replica;
// remote(node, timeout, answer, fail) sends it to another node's API, marked forwarded.
template <class T, class Local, class Remote>
void run_on_shard(self_ptr self, uint64_t group, uint32_t shard, steady::time_point deadline, Local local,
                  Remote remote, std::function<void(T&)> answer, error_fn fail, uint32_t attempt = 0) {
  auto& st = self->state;
  auto again = [=](bool at_once) {
    if (steady::now() + retry_delay >= deadline) {
      caf::error err = queue_error(errc::unavailable, "no leader of queue shard " + std::to_string(shard)
                                                        + " could be reached in time");
      return fail(err);
    }
    auto next = [=] { run_on_shard<T>(self, group, shard, deadline, local, remote, answer, fail, attempt + 1); };
    if (at_once && attempt % 4 != 3) return next();
    run_later(self, retry_delay, next);
  };
  error_fn failed = [=](caf::error& err) {
    auto& st = self->state;
    if (err == errc::not_leader) {
      auto hint = leader_of(err);
      if (hint.empty()) st.leaders.erase(group);
      else st.leaders[group] = hint;
      return again(!hint.empty());
    }
    if (err == errc::unavailable) {
      st.leaders.erase(group);
      if (attempt % 8 == 7) refresh_placement(self);
      return again(false);
    }
    fail(err);
  };
  // Where to try: the known leader, else this node's replica, else the replicas in turn.
  std::string target;
  if (auto l = st.leaders.find(group); l != st.leaders.end()) {
    target = l->second;
  } else if (!st.local_groups.count(group)) {
    auto rs = replicas_of(self, shard);
    if (rs.empty()) {
      refresh_placement(self);
      caf::error err = queue_error(errc::unavailable, "the placement of queue shards is not known yet");
      return failed(err);
    }
    target = rs[attempt % rs.size()];
  }
  if (target.empty() || target == st.settings.self) return local(answer, failed);
  auto left = std::chrono::duration_cast<caf::timespan>(deadline - steady::now());
  remote(target, std::max(left, caf::timespan{retry_delay}), answer, failed);
}

// Serves a request for a client (routed to the shard leader, retried) or forwarded by
// another node (this replica only; that node routes and retries).
template <class T, class Local, class Remote>
caf::result<T> serve(self_ptr self, bool forwarded, const std::string& queue, caf::timespan budget, Local local,
                     Remote remote) {
  auto rp = self->make_response_promise<T>();
  std::function<void(T&)> answer = [=](T& x) mutable { rp.deliver(std::move(x)); };
  error_fn fail = [=](caf::error& err) mutable { rp.deliver(std::move(err)); };
  auto shard = shard_of_queue(self, queue);
  if (forwarded) local(answer, fail);
  else run_on_shard<T>(self, shard_group(shard), shard, steady::now() + budget, local, remote, answer, fail);
  return rp;
}

// Serves a command of the queue's shard: validated here, committed by the shard's leader,
// its ok outcome turned into the answer by `answer`; `as_forwarded` is the same call for
// another node.
template <class T, class Answer, class... Ts>
caf::result<T> serve_command(self_ptr self, bool forwarded, const queue::command& c, Answer answer,
                             Ts... as_forwarded);

// A `remote` for serve(): the same call with forwarded = true.
template <class T, class... Ts>
auto forward_as(self_ptr self, Ts... xs) {
  return [=](const std::string& node, caf::timespan timeout, std::function<void(T&)> answer, error_fn failed) {
    self->state.fwd.call<T>(self, node, timeout, answer, failed, xs..., true);
  };
}

template <class T, class Answer, class... Ts>
caf::result<T> serve_command(self_ptr self, bool forwarded, const queue::command& c, Answer answer,
                             Ts... as_forwarded) {
  if (auto why = queue::validate(c); !why.empty()) return queue_error(errc::bad_request, why);
  auto group = shard_group(shard_of_queue(self, c.queue));
  return serve<T>(
    self, forwarded, c.queue, request_budget,
    [=](std::function<void(T&)> ok, error_fn fail) {
      command_ok(
        self, group, c,
        [=](queue::outcome& o) {
          T x = answer(o);
          ok(x);
        },
        fail);
    },
    forward_as<T>(self, as_forwarded...));
}

// ---- reports from the shards ----

void arm_timer(self_ptr self, uint64_t group) {
  auto& st = self->state;
  auto& next = st.next_deadline[group];
  if (!next) return;
  if (auto t = st.timer_for.find(group); t != st.timer_for.end() && t->second <= *next) return;
  st.timer_for[group] = *next;
  auto now = wall_clock_ms();
  auto wait = *next > now ? *next - now : 0;
  self->delayed_send(self, std::chrono::milliseconds(wait + 1), queue_tick_atom::value, group);
}

void on_tick(self_ptr self, uint64_t group) {
  auto& st = self->state;
  st.timer_for.erase(group);
  auto& next = st.next_deadline[group];
  if (!st.leading.count(group) || !next || st.expire_in_flight.count(group)) return;
  if (wall_clock_ms() < *next) return arm_timer(self, group);
  st.expire_in_flight.insert(group);
  queue::command c;
  c.kind = queue::op::expire;
  propose(
    self, group, c, [=](queue::outcome&) { self->state.expire_in_flight.erase(group); },
    [=](caf::error&) {
      self->state.expire_in_flight.erase(group);
      self->state.timer_for[group] = 0;
      self->delayed_send(self, retry_delay, queue_tick_atom::value, group);
    });
}

void wake_polls(self_ptr self, uint64_t group, const std::string& queue) {
  auto i = self->state.polls.find({group, queue});
  if (i == self->state.polls.end()) return;
  auto parked = std::move(i->second);
  self->state.polls.erase(i);
  for (auto& [id, p] : parked) local_dequeue(self, group, p.cmd, p.until, p.done, p.failed);
}

void on_report(self_ptr self, queue_apply_report& r) {
  auto& st = self->state;
  bool leading = st.leading.count(r.group) > 0;
  for (auto& e : r.events) {
    switch (e.what) {
      case queue::event::kind::ready: wake_polls(self, r.group, e.queue); break;
      case queue::event::kind::expired:
        if (leading) st.m.expired->inc();
        break;
      case queue::event::kind::dead_lettered:
        if (leading) st.m.dead_lettered->inc();
        break;
      case queue::event::kind::queue_deleted: wake_polls(self, r.group, e.queue); break;
    }
  }
  st.next_deadline[r.group] = r.next_deadline;
  if (leading) arm_timer(self, r.group);
}

// Publishes the counts of the queues of a shard this node leads as gauges.
void publish_gauges(self_ptr self, uint64_t group) {
  local_query(self, group, shard_query::all_stats(queue::max_list_page),
              [=](std::string& bytes) {
                std::vector<std::pair<std::string, queue::queue_stats>> all;
                if (!shard_query::decode_all_stats(bytes, all)) return;
                auto& reg = *self->state.registry;
                for (auto& [name, s] : all) {
                  auto set = [&](const char* state, uint64_t v) {
                    reg.get_gauge("dsync_queue_messages", "Messages of a queue by state (on its shard's leader)",
                                  {{"queue", name}, {"state", state}})
                      .set(static_cast<double>(v));
                  };
                  set("ready", s.ready);
                  set("in_flight", s.in_flight);
                  set("delayed", s.delayed);
                  set("dead", s.dead);
                }
              },
              [](caf::error&) {});
}

// Rebalancing: the leader of a shard moves its replica set to what the hash ring over the
// control group's voters says, one Raft membership change at a time (a new replica joins
// as a learner, catches up and becomes a voter before an old one is removed).
void rebalance(self_ptr self, uint64_t group) {
  auto& st = self->state;
  if (!st.leading.count(group) || st.changing.count(group) || !st.voters.count(group)) return;
  auto desired = replicas_of(self, static_cast<uint32_t>(group - 1));
  if (desired.empty()) return;
  std::sort(desired.begin(), desired.end());
  auto& current = st.voters[group];
  std::string node;
  uint8_t kind = 0;
  for (auto& d : desired)
    if (!std::binary_search(current.begin(), current.end(), d)) {
      node = d;
      break;
    }
  if (node.empty()) {
    for (auto& v : current)
      if (!std::binary_search(desired.begin(), desired.end(), v)) {
        node = v;
        kind = 1;
        break;
      }
  }
  if (node.empty()) return;
  st.changing.insert(group);
  log::info("queues", "shard {}: {} {} to follow the hash ring", group - 1, kind == 0 ? "adding" : "removing", node);
  self->request(st.raft, 40s, member_change_atom::value, group, kind, node)
    .then(
      [=](group_status& g) {
        auto& st = self->state;
        st.changing.erase(group);
        auto voters = g.voters;
        std::sort(voters.begin(), voters.end());
        st.voters[group] = std::move(voters);
      },
      [=](caf::error& err) {
        self->state.changing.erase(group);
        log::warn("queues", "shard {}: changing its replicas failed: {}", group - 1, error_reason(err));
      });
}

// Spreads the shards' leaders: a leader hands over to the shard's preferred leader (first
// in ring order) if that one has caught up; if it is down or behind, this node keeps it.
void prefer_leader(self_ptr self, uint64_t group) {
  auto& st = self->state;
  auto rs = replicas_of(self, static_cast<uint32_t>(group - 1));
  if (!st.leading.count(group) || rs.empty() || rs.front() == st.settings.self) return;
  self->request(st.raft, 2s, transfer_atom::value, group, rs.front()).then([](bool) {}, [](caf::error&) {});
}

void on_leadership(self_ptr self, uint64_t group, bool leading) {
  auto& st = self->state;
  st.local_groups.insert(group);
  if (leading) {
    st.leading.insert(group);
    st.leaders[group] = st.settings.self;
    arm_timer(self, group);
    run_later(self, preferred_leader_delay, [=] { prefer_leader(self, group); });
    return;
  }
  st.leading.erase(group);
  if (auto l = st.leaders.find(group); l != st.leaders.end() && l->second == st.settings.self) st.leaders.erase(l);
  // Parked long polls go back to their entry nodes, which retry on the new leader.
  for (auto i = st.polls.begin(); i != st.polls.end();) {
    if (i->first.first != group) {
      ++i;
      continue;
    }
    auto parked = std::move(i->second);
    i = st.polls.erase(i);
    for (auto& [id, p] : parked) {
      caf::error err = queue_error(errc::unavailable, "this node stopped leading the queue shard");
      p.failed(err);
    }
  }
}

queue_info to_api(const std::string& queue, uint32_t shard, const queue::queue_stats& s) {
  return queue_info{queue, s.exists, shard, s.ready, s.in_flight, s.delayed, s.dead, s.max_deliveries};
}

std::optional<std::string> check_queue(const std::string& queue) {
  queue::command c;
  c.kind = queue::op::delete_queue;
  c.queue = queue;
  auto why = queue::validate(c);
  if (why.empty()) return std::nullopt;
  return why;
}

// The queue names of one shard, from its replica here.
auto list_local(self_ptr self, uint64_t group) {
  return [=](std::function<void(std::vector<std::string>&)> ok, error_fn fail) {
    local_query(self, group, shard_query::list("", queue::max_list_page),
                [=](std::string& bytes) {
                  std::vector<std::string> names;
                  if (!shard_query::decode_list(bytes, names)) {
                    caf::error err = queue_error(errc::internal, "malformed queue list");
                    return fail(err);
                  }
                  ok(names);
                },
                fail);
  };
}

// Lists the queues of every shard (asking each shard's leader), sorted.
void list_all(self_ptr self, caf::typed_response_promise<std::vector<std::string>> rp) {
  auto& st = self->state;
  auto out = std::make_shared<std::vector<std::string>>();
  auto left = std::make_shared<uint32_t>(st.settings.shards);
  auto failed = std::make_shared<bool>(false);
  std::function<void(std::vector<std::string>&)> collect = [=](std::vector<std::string>& names) mutable {
    out->insert(out->end(), names.begin(), names.end());
    if (--*left == 0 && !*failed) {
      std::sort(out->begin(), out->end());
      rp.deliver(std::move(*out));
    }
  };
  error_fn fail = [=](caf::error& err) mutable {
    if (*failed) return;
    *failed = true;
    rp.deliver(std::move(err));
  };
  for (uint32_t shard = 0; shard < st.settings.shards; ++shard) {
    auto group = shard_group(shard);
    run_on_shard<std::vector<std::string>>(self, group, shard, steady::now() + request_budget, list_local(self, group),
                                           forward_as<std::vector<std::string>>(self, queue_list_atom::value, shard),
                                           collect, fail);
  }
}

// Now and then (quickly while the cluster starts): placement, preferred leaders, gauges.
void maintain(self_ptr self) {
  refresh_placement(self);
  for (auto group : self->state.leading) {
    rebalance(self, group);
    prefer_leader(self, group);
    publish_gauges(self, group);
  }
  auto next = self->state.placement ? caf::timespan{placement_refresh} : caf::timespan{retry_delay * 5};
  run_later(self, next, [=] { maintain(self); });
}

}  // namespace

queue_service_actor spawn_queue_service(caf::actor_system& sys, queue_service_settings settings,
                                        peer_links_actor links, metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> queue_service_actor::behavior_type {
    auto& st = self->state;
    st.settings = settings;
    st.registry = &registry;
    st.fwd.init(links);
    st.m.enqueued = &registry.get_counter("dsync_queue_enqueued_total", "Messages enqueued through this node as leader");
    st.m.delivered = &registry.get_counter("dsync_queue_delivered_total", "First deliveries by this node as leader");
    st.m.redelivered = &registry.get_counter("dsync_queue_redelivered_total", "Deliveries after the first");
    st.m.acked = &registry.get_counter("dsync_queue_acked_total", "Messages acknowledged");
    st.m.nacked = &registry.get_counter("dsync_queue_nacked_total", "Messages handed back (nack)");
    st.m.expired = &registry.get_counter("dsync_queue_visibility_expired_total", "Deliveries whose visibility timed out");
    st.m.dead_lettered = &registry.get_counter("dsync_queue_dead_lettered_total", "Messages moved to a dead-letter queue");
    st.m.enqueue_seconds = &registry.get_histogram("dsync_queue_enqueue_seconds", "Enqueue latency on the shard leader",
                                                   metrics::latency_buckets_seconds());
    self->set_down_handler([=](caf::down_msg& dm) { self->state.fwd.on_down(dm); });
    auto shard_of = [=](const std::string& queue) { return shard_group(shard_of_queue(self, queue)); };
    return {
      [=](queue_enqueue_atom, std::string& queue, std::string& payload, bool forwarded) -> caf::result<std::string> {
        queue::command c;
        c.kind = queue::op::enqueue;
        c.queue = queue;
        c.payload = payload;
        if (auto why = queue::validate(c); !why.empty()) return queue_error(errc::bad_request, why);
        auto group = shard_of(queue);
        return serve<std::string>(
          self, forwarded, queue, request_budget,
          [=](std::function<void(std::string&)> ok, error_fn fail) {
            auto start = steady::now();
            command_ok(
              self, group, c,
              [=](queue::outcome& o) {
                self->state.m.enqueued->inc();
                self->state.m.enqueue_seconds->observe(std::chrono::duration<double>(steady::now() - start).count());
                ok(o.id);
              },
              fail);
          },
          forward_as<std::string>(self, queue_enqueue_atom::value, queue, payload));
      },
      [=](queue_dequeue_atom, queue_pull& pull, bool forwarded) -> caf::result<std::vector<queue_message>> {
        queue::command c;
        c.kind = queue::op::dequeue;
        c.queue = pull.queue;
        c.consumer = pull.consumer;
        c.max = pull.max;
        c.visibility_ms = pull.visibility_ms;
        if (auto why = queue::validate(c); !why.empty()) return queue_error(errc::bad_request, why);
        if (auto why = queue::validate_wait_ms(pull.wait_ms); !why.empty()) return queue_error(errc::bad_request, why);
        auto group = shard_of(pull.queue);
        auto until = steady::now() + std::chrono::milliseconds(pull.wait_ms);
        using T = std::vector<queue_message>;
        return serve<T>(
          self, forwarded, pull.queue,
          std::chrono::duration_cast<caf::timespan>(std::chrono::milliseconds(pull.wait_ms) + request_budget),
          [=](std::function<void(T&)> ok, error_fn fail) { local_dequeue(self, group, c, until, ok, fail); },
          // A retried long poll waits only for what is left of its wait.
          [=](const std::string& node, caf::timespan timeout, std::function<void(T&)> ok, error_fn fail) {
            auto left = pull;
            auto now = steady::now();
            left.wait_ms = until > now
                             ? static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count())
                             : 0;
            self->state.fwd.call<T>(self, node, timeout, ok, fail, queue_dequeue_atom::value, left, true);
          });
      },
      [=](queue_ack_atom a, std::string& queue, std::string& id, uint64_t receipt, bool forwarded) -> caf::result<bool> {
        queue::command c;
        c.kind = queue::op::ack;
        c.queue = queue;
        c.id = id;
        c.receipt = receipt;
        return serve_command<bool>(
          self, forwarded, c,
          [=](queue::outcome&) {
            self->state.m.acked->inc();
            return true;
          },
          a, queue, id, receipt);
      },
      [=](queue_nack_atom a, std::string& queue, std::string& id, uint64_t receipt, uint64_t delay_ms,
          bool forwarded) -> caf::result<bool> {
        queue::command c;
        c.kind = queue::op::nack;
        c.queue = queue;
        c.id = id;
        c.receipt = receipt;
        c.delay_ms = delay_ms;
        return serve_command<bool>(
          self, forwarded, c,
          [=](queue::outcome& o) {
            self->state.m.nacked->inc();
            return o.dead_lettered;
          },
          a, queue, id, receipt, delay_ms);
      },
      [=](queue_stats_atom, std::string& queue, bool forwarded) -> caf::result<queue_info> {
        if (auto why = check_queue(queue)) return queue_error(errc::bad_request, *why);
        auto shard = shard_of_queue(self, queue);
        return serve<queue_info>(
          self, forwarded, queue, request_budget,
          [=](std::function<void(queue_info&)> ok, error_fn fail) {
            local_query(self, shard_group(shard), shard_query::stats(queue),
                        [=](std::string& bytes) {
                          queue::queue_stats s;
                          if (!shard_query::decode_stats(bytes, s)) {
                            caf::error err = queue_error(errc::internal, "malformed queue stats");
                            return fail(err);
                          }
                          auto info = to_api(queue, shard, s);
                          ok(info);
                        },
                        fail);
          },
          forward_as<queue_info>(self, queue_stats_atom::value, queue));
      },
      [=](queue_dlq_atom, std::string& queue, uint64_t cursor, uint64_t limit, bool forwarded) -> caf::result<dead_letters> {
        if (auto why = check_queue(queue)) return queue_error(errc::bad_request, *why);
        if (limit == 0 || limit > queue::max_list_page)
          return queue_error(errc::bad_request, "limit is " + std::to_string(limit) + "; it must be between 1 and "
                                                  + std::to_string(queue::max_list_page));
        auto group = shard_of(queue);
        return serve<dead_letters>(
          self, forwarded, queue, request_budget,
          [=](std::function<void(dead_letters&)> ok, error_fn fail) {
            local_query(self, group, shard_query::dead(queue, cursor, limit),
                        [=](std::string& bytes) {
                          queue::dead_page page;
                          if (!shard_query::decode_dead(bytes, page)) {
                            caf::error err = queue_error(errc::internal, "malformed dead-letter page");
                            return fail(err);
                          }
                          dead_letters out;
                          out.next_cursor = page.next_cursor;
                          for (auto& m : page.messages)
                            out.messages.push_back(dead_letter{m.id, m.payload, m.deliveries, queue::to_string(m.reason),
                                                               queue::to_string(m.last_failure), m.dead_since_ms});
                          ok(out);
                        },
                        fail);
          },
          forward_as<dead_letters>(self, queue_dlq_atom::value, queue, cursor, limit));
      },
      [=](queue_redrive_atom a, std::string& queue, uint64_t max, bool forwarded) -> caf::result<uint64_t> {
        queue::command c;
        c.kind = queue::op::redrive;
        c.queue = queue;
        c.max = max;
        return serve_command<uint64_t>(self, forwarded, c, [](queue::outcome& o) { return o.count; }, a, queue, max);
      },
      [=](queue_delete_atom a, std::string& queue, bool forwarded) -> caf::result<uint64_t> {
        queue::command c;
        c.kind = queue::op::delete_queue;
        c.queue = queue;
        return serve_command<uint64_t>(self, forwarded, c, [](queue::outcome& o) { return o.count; }, a, queue);
      },
      [=](queue_config_atom, std::string& queue, uint64_t max_deliveries, bool forwarded) -> caf::result<queue_info> {
        queue::command c;
        c.kind = queue::op::configure;
        c.queue = queue;
        c.max_deliveries = max_deliveries;
        if (auto why = queue::validate(c); !why.empty()) return queue_error(errc::bad_request, why);
        auto shard = shard_of_queue(self, queue);
        return serve<queue_info>(
          self, forwarded, queue, request_budget,
          [=](std::function<void(queue_info&)> ok, error_fn fail) {
            command_ok(
              self, shard_group(shard), c,
              [=](queue::outcome&) {
                local_query(self, shard_group(shard), shard_query::stats(queue),
                            [=](std::string& bytes) {
                              queue::queue_stats s;
                              shard_query::decode_stats(bytes, s);
                              auto info = to_api(queue, shard, s);
                              ok(info);
                            },
                            fail);
              },
              fail);
          },
          forward_as<queue_info>(self, queue_config_atom::value, queue, max_deliveries));
      },
      [=](queue_list_atom, uint32_t shard, bool forwarded) -> caf::result<std::vector<std::string>> {
        using T = std::vector<std::string>;
        auto rp = self->make_response_promise<T>();
        if (shard == all_shards && !forwarded) {
          list_all(self, rp);
          return rp;
        }
        if (shard >= self->state.settings.shards)
          return queue_error(errc::bad_request, "shard " + std::to_string(shard) + " does not exist");
        list_local(self, shard_group(shard))([=](T& names) mutable { rp.deliver(std::move(names)); },
                                             [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [=](queue_attach_atom, raft_host_actor& raft) {
        self->state.raft = std::move(raft);
        maintain(self);
      },
      [=](queue_report_atom, queue_apply_report& r) { on_report(self, r); },
      [=](queue_leader_atom, uint64_t group, bool leading) { on_leadership(self, group, leading); },
      [=](queue_tick_atom, uint64_t group) { on_tick(self, group); },
      [=](queue_retry_atom, uint64_t id) { self->state.later.run(id); },
      [=](forward_sweep_atom) { self->state.fwd.sweep(self); },
    };
  });
}

queue_observer observe_queues(queue_service_actor service) {
  queue_observer o;
  o.applied = [service](queue_apply_report r) { caf::anon_send(service, queue_report_atom::value, std::move(r)); };
  o.leadership = [service](uint64_t group, bool leading) {
    caf::anon_send(service, queue_leader_atom::value, group, leading);
  };
  return o;
}

}  // namespace dsync
