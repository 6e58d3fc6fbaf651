#include "actors/raft/raft_group.hpp"

#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>

#include "actors/log.hpp"

namespace dsync {

namespace {

using clock_type = caf::actor_clock::time_point;

struct pending_proposal {
  uint64_t term = 0;
  caf::typed_response_promise<std::string> promise;
  clock_type deadline;
};

struct pending_read {
  std::string request;
  caf::typed_response_promise<std::string> promise;
  clock_type deadline;
  uint64_t index = 0;  // read index once confirmed; 0 while the leader confirms
  bool confirmed = false;
};

// The membership change this leader is carrying out (at most one).
struct member_change {
  bool active = false;
  bool add = true;
  std::string node;
  uint64_t index = 0;      // the conf-change entry waited for (0: promotion not proposed yet)
  bool promoting = false;  // add: the learner entry is applied; promote once caught up
  caf::typed_response_promise<group_status> promise;
  clock_type deadline;
};

struct group_metrics {
  metrics::gauge* term;
  metrics::gauge* commit;
  metrics::gauge* applied;
  metrics::gauge* last_index;
  metrics::gauge* is_leader;
  metrics::counter* leader_changes;
  metrics::counter* proposals_ok;
  metrics::counter* proposals_refused;
  metrics::counter* proposals_lost;
  metrics::counter* snapshots;
  metrics::counter* batches;
  metrics::histogram* write_seconds;
  metrics::histogram* fsync_seconds;
  metrics::histogram* commit_seconds;
};

struct group_state {
  raft_group_settings settings;
  std::shared_ptr<log_store> store;  // shared with the storage thread, which only calls sync()
  std::unique_ptr<state_machine> sm;
  std::unique_ptr<raft::core> core;
  caf::actor sync_worker;
  peer_links_actor transport;
  // Batches written and not yet finished, oldest first: the fsync of one overlaps the writing
  // and sending of the next ones (pipelining); they finish in order.
  std::deque<raft::ready> in_flight;
  uint64_t syncing_to = 0;  // the fsync in progress covers the batches up to this seq (0: none)
  bool drive_scheduled = false;
  clock_type sync_started;
  std::map<uint64_t, pending_proposal> proposals;  // by log index
  std::map<uint64_t, clock_type> proposed_at;      // by log index, for commit latency
  std::map<uint64_t, pending_read> reads;          // by request id
  uint64_t next_read_id = 1;
  uint64_t applied = 0;
  uint64_t snapshot_index = 0;
  std::string last_leader;
  member_change change;
  std::vector<caf::typed_response_promise<bool>> stepping_down;  // answered when another node leads
  clock_type step_down_deadline;
  group_metrics m{};
  static const char* name;
};
const char* group_state::name = "raft-group";

using self_ptr = raft_group_actor::stateful_pointer<group_state>;

const char* const subsystem = "raft";

[[noreturn]] void fail_stop(const std::string& why) {
  log::error(subsystem, "stopping the node: {}", why);
  std::_Exit(70);
}

caf::error not_leader_error(const std::string& leader) { return make_error(errc::not_leader, leader); }

void send_all(self_ptr self, std::vector<raft::message>& msgs) {
  for (auto& m : msgs) self->send(self->state.transport, raft_atom::value, std::move(m));
}

void answer_read(self_ptr self, pending_read& r) {
  r.promise.deliver(self->state.sm->query(r.request));
}

void serve_reads(self_ptr self) {
  auto& st = self->state;
  for (auto i = st.reads.begin(); i != st.reads.end();) {
    if (i->second.confirmed && i->second.index <= st.applied) {
      answer_read(self, i->second);
      i = st.reads.erase(i);
    } else {
      ++i;
    }
  }
}

void apply_committed(self_ptr self, std::vector<raft::entry>& committed) {
  auto& st = self->state;
  auto now = self->clock().now();
  for (auto& e : committed) {
    std::string answer;
    if (e.type == raft::entry_type::normal) answer = st.sm->apply(e.index, e.data);
    st.applied = e.index;
    if (auto t = st.proposed_at.find(e.index); t != st.proposed_at.end()) {
      st.m.commit_seconds->observe(std::chrono::duration<double>(now - t->second).count());
      st.proposed_at.erase(t);
    }
    auto p = st.proposals.find(e.index);
    if (p == st.proposals.end()) continue;
    if (p->second.term == e.term) {
      st.m.proposals_ok->inc();
      p->second.promise.deliver(std::move(answer));
    } else {
      st.m.proposals_lost->inc();
      p->second.promise.deliver(make_error(errc::unavailable, "the proposal lost its log slot to a new leader; retry"));
    }
    st.proposals.erase(p);
  }
}

void update_gauges(self_ptr self) {
  auto& st = self->state;
  auto& c = *st.core;
  st.m.term->set(static_cast<double>(c.term()));
  st.m.commit->set(static_cast<double>(c.commit_index()));
  st.m.applied->set(static_cast<double>(st.applied));
  st.m.last_index->set(static_cast<double>(c.log().last_index()));
  st.m.is_leader->set(c.state() == raft::role::leader ? 1 : 0);
}

bool compaction_due(const group_state& st) {
  return st.applied >= st.snapshot_index + st.settings.snapshot_every_entries;
}

// The state machine's snapshot is at st.applied, which runs ahead of the core's applied index
// while batches are in flight: compact only when none is.
void maybe_compact(self_ptr self) {
  auto& st = self->state;
  if (!compaction_due(st) || !st.in_flight.empty()) return;
  auto r = st.core->compact(st.applied, st.sm->snapshot());
  if (!r.ok()) {
    log::warn(subsystem, "group {}: compaction at {} refused: {}", st.settings.group, st.applied,
              raft::to_string(r.code));
    return;
  }
  st.snapshot_index = st.applied;
  st.m.snapshots->inc();
}

void drive(self_ptr self);
group_status status_of(self_ptr self);

void finish_member_change(self_ptr self, caf::error err = {}) {
  auto& ch = self->state.change;
  if (!ch.active) return;
  ch.active = false;
  if (err) ch.promise.deliver(std::move(err));
  else ch.promise.deliver(status_of(self));
}

// Proposes the promotion of a learner that caught up; retried on every tick until it is.
void try_promote(self_ptr self) {
  auto& st = self->state;
  auto& ch = st.change;
  if (!ch.active || !ch.promoting || ch.index != 0) return;
  auto r = st.core->propose_conf_change(raft::conf_change{raft::conf_change_type::promote_learner, ch.node});
  if (r.ok()) {
    ch.index = r.index;
    log::info(subsystem, "group {}: {} caught up; promoting it to voter", st.settings.group, ch.node);
    return;
  }
  if (r.code == raft::errc::not_leader)
    return finish_member_change(self, not_leader_error(r.leader_hint));
  if (r.code == raft::errc::invalid_conf_change) return finish_member_change(self);  // already a voter
  // learner_not_caught_up, conf_change_in_progress, leader_not_ready: next tick
}

// Called after entries were applied: moves the membership change on.
void progress_member_change(self_ptr self) {
  auto& st = self->state;
  auto& ch = st.change;
  if (!ch.active || ch.index == 0 || st.applied < ch.index) return;
  if (ch.add && !ch.promoting) {
    ch.promoting = true;
    ch.index = 0;
    try_promote(self);
    return;
  }
  log::info(subsystem, "group {}: {} {}; voters now {}", st.settings.group, ch.node, ch.add ? "added" : "removed",
            raft::to_string(st.core->current_config()));
  finish_member_change(self);
}

// The part of a batch that need not wait for its fsync. Committed entries are durable on a
// majority already (the leader counts its own log only once synced), so they are applied, and
// their proposers answered, while this batch's new entries are still being synced; confirmed
// reads likewise depend on the heartbeat quorum, not on this node's disk.
void apply_batch(self_ptr self, raft::ready& rd) {
  auto& st = self->state;
  apply_committed(self, rd.committed_entries);
  for (auto& rs : rd.read_states) {
    auto r = st.reads.find(rs.request_id);
    if (r == st.reads.end()) continue;
    if (!rs.ok) {
      r->second.promise.deliver(not_leader_error(st.core->leader()));
      st.reads.erase(r);
      continue;
    }
    r->second.confirmed = true;
    r->second.index = rs.index;
  }
  serve_reads(self);
  progress_member_change(self);
}

// The part of a batch that must wait for its fsync.
void finish_batch(self_ptr self, raft::ready& rd) {
  auto& st = self->state;
  send_all(self, rd.messages_after_append);
  if (rd.has_snapshot) {
    if (!st.sm->restore(rd.snapshot.data))
      fail_stop("group " + std::to_string(st.settings.group) + ": a snapshot from the leader is malformed");
    st.applied = rd.snapshot.metadata.index;
    st.snapshot_index = rd.snapshot.metadata.index;
  }
  if (!st.stepping_down.empty() && !rd.soft.leader.empty() && rd.soft.leader != st.settings.self) {
    for (auto& p : st.stepping_down) p.deliver(true);
    st.stepping_down.clear();
  }
  if (rd.soft_state_changed && rd.soft.leader != st.last_leader) {
    bool was_leading = st.last_leader == st.settings.self;
    bool leading = rd.soft.leader == st.settings.self;
    st.last_leader = rd.soft.leader;
    if (was_leading != leading) st.sm->on_leadership(leading);
    st.m.leader_changes->inc();
    log::info(subsystem, "group {}: leader is now {} (term {}, this node is {})", st.settings.group,
              rd.soft.leader.empty() ? "unknown" : rd.soft.leader, st.core->term(), raft::to_string(rd.soft.state));
  }
  st.core->advance(rd);
  update_gauges(self);
}

// Finishes the batches at the front that the fsync up to `synced` covers, and those behind
// them that need no fsync of their own.
void finish_synced(self_ptr self, uint64_t synced) {
  auto& st = self->state;
  while (!st.in_flight.empty() && (st.in_flight.front().seq <= synced || !st.in_flight.front().must_sync)) {
    auto rd = std::move(st.in_flight.front());
    st.in_flight.pop_front();
    finish_batch(self, rd);
  }
  maybe_compact(self);
}

void request_sync(self_ptr self) {
  auto& st = self->state;
  if (st.syncing_to != 0 || st.in_flight.empty()) return;
  // Every batch up to the newest is written: one fsync makes all of them durable.
  st.syncing_to = st.in_flight.back().seq;
  st.sync_started = self->clock().now();
  self->request(st.sync_worker, caf::infinite, synced_atom::value, st.syncing_to)
    .then(
      [=](uint64_t synced) {
        auto& st = self->state;
        st.syncing_to = 0;
        st.m.fsync_seconds->observe(std::chrono::duration<double>(self->clock().now() - st.sync_started).count());
        finish_synced(self, synced);
        drive(self);
      },
      [=](caf::error& err) { fail_stop("fsync of the Raft log failed: " + caf::to_string(err)); });
}

// Batches in flight at most; more waiting proposals simply make the next batch bigger.
constexpr size_t max_batches_in_flight = 8;

// Writes and sends the ready batches, applies what they commit, and has them synced.
void drive(self_ptr self) {
  auto& st = self->state;
  // Before a compaction the pipeline drains (see maybe_compact).
  while (st.core->has_ready() && st.in_flight.size() < max_batches_in_flight
         && !(compaction_due(st) && !st.in_flight.empty())) {
    auto rd = st.core->ready();
    st.m.batches->inc();
    send_all(self, rd.messages);
    auto t0 = self->clock().now();
    try {
      st.store->write(rd);
    } catch (const std::exception& e) {
      fail_stop(std::string{"writing the Raft log failed: "} + e.what());
    }
    st.m.write_seconds->observe(std::chrono::duration<double>(self->clock().now() - t0).count());
    apply_batch(self, rd);
    if (!rd.must_sync && st.in_flight.empty()) {
      finish_batch(self, rd);
      maybe_compact(self);
      continue;
    }
    st.in_flight.push_back(std::move(rd));
  }
  request_sync(self);
}

// Drives once after the messages already in the mailbox: everything they bring goes into
// one batch (one write) instead of one batch per message.
void schedule_drive(self_ptr self) {
  auto& st = self->state;
  if (st.drive_scheduled) return;
  st.drive_scheduled = true;
  self->send(self, raft_drive_atom::value);
}

void expire_requests(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (st.change.active && st.change.deadline <= now) {
    auto node = st.change.node;
    bool undo = st.change.add && st.change.promoting;
    finish_member_change(self, make_error(errc::unavailable, "the membership change of " + node +
                                                               " did not finish in time (is the node running and caught up?)" +
                                                               (undo ? "; the learner is being removed again" : "")));
    // A learner that never caught up would stay in the configuration for good.
    if (undo) st.core->propose_conf_change(raft::conf_change{raft::conf_change_type::remove_node, node});
  }
  if (!st.stepping_down.empty() && st.step_down_deadline <= now) {
    for (auto& p : st.stepping_down) p.deliver(false);
    st.stepping_down.clear();
  }
  for (auto i = st.proposals.begin(); i != st.proposals.end();) {
    if (i->second.deadline <= now) {
      i->second.promise.deliver(make_error(errc::unavailable, "no commit within the request timeout"));
      i = st.proposals.erase(i);
    } else {
      ++i;
    }
  }
  for (auto i = st.reads.begin(); i != st.reads.end();) {
    if (i->second.deadline <= now) {
      i->second.promise.deliver(make_error(errc::unavailable, "read not confirmed within the request timeout"));
      i = st.reads.erase(i);
    } else {
      ++i;
    }
  }
  // Latency bookkeeping of entries that never commit here must not grow without bound.
  while (st.proposed_at.size() > 100000) st.proposed_at.erase(st.proposed_at.begin());
}

group_status status_of(self_ptr self) {
  auto& st = self->state;
  auto& c = *st.core;
  auto& conf = c.current_config();
  return group_status{st.settings.group, c.leader(), c.term(), raft::to_string(c.state()), c.commit_index(),
                      st.applied, c.log().last_index(), st.snapshot_index, conf.voters, conf.learners};
}

group_metrics make_metrics(metrics::registry& r, uint64_t group) {
  metrics::labels g{{"group", std::to_string(group)}};
  auto with = [&](const char* k, const char* v) {
    auto l = g;
    l.emplace_back(k, v);
    return l;
  };
  auto lat = metrics::latency_buckets_seconds();
  return group_metrics{
    &r.get_gauge("dsync_raft_term", "Current Raft term", g),
    &r.get_gauge("dsync_raft_commit_index", "Highest log index known committed", g),
    &r.get_gauge("dsync_raft_applied_index", "Highest log index applied to the state machine", g),
    &r.get_gauge("dsync_raft_last_index", "Last index of this node's log", g),
    &r.get_gauge("dsync_raft_is_leader", "1 if this node leads the group", g),
    &r.get_counter("dsync_raft_leader_changes_total", "Leader changes seen by this node", g),
    &r.get_counter("dsync_raft_proposals_total", "Proposals by outcome", with("result", "committed")),
    &r.get_counter("dsync_raft_proposals_total", "Proposals by outcome", with("result", "refused")),
    &r.get_counter("dsync_raft_proposals_total", "Proposals by outcome", with("result", "lost")),
    &r.get_counter("dsync_raft_snapshots_total", "Snapshots taken locally", g),
    &r.get_counter("dsync_raft_ready_batches_total", "Ready batches handled", g),
    &r.get_histogram("dsync_raft_append_seconds", "Time to write one ready batch (before fsync)", lat, g),
    &r.get_histogram("dsync_raft_fsync_seconds", "Time of one fsync of the log (covers every batch written before it)", lat, g),
    &r.get_histogram("dsync_raft_commit_seconds", "From proposal to applied on the leader", lat, g),
  };
}

}  // namespace

raft_group_actor spawn_raft_group(caf::actor_system& sys, raft_group_settings settings,
                                  std::unique_ptr<log_store> store_in, std::unique_ptr<state_machine> sm_in,
                                  peer_links_actor transport, metrics::registry& registry) {
  std::shared_ptr<log_store> store{std::move(store_in)};
  auto worker = sys.spawn<caf::detached>([store](caf::event_based_actor*) -> caf::behavior {
    return {
      [store](synced_atom, uint64_t seq) -> caf::result<uint64_t> {
        try {
          store->sync();
        } catch (const std::exception& e) {
          return make_error(errc::internal, e.what());
        }
        return seq;
      },
    };
  });
  auto sm_holder = std::make_shared<std::unique_ptr<state_machine>>(std::move(sm_in));
  return sys.spawn([=, &registry](self_ptr self) -> raft_group_actor::behavior_type {
    auto& st = self->state;
    st.settings = settings;
    st.sm = std::move(*sm_holder);
    st.transport = transport;
    st.sync_worker = worker;
    st.m = make_metrics(registry, settings.group);
    st.store = store;

    raft::config cfg;
    cfg.id = settings.self;
    cfg.group = settings.group;
    cfg.election_ticks = settings.election_ticks;
    cfg.heartbeat_ticks = settings.heartbeat_ticks;
    cfg.seed = settings.seed;
    // The state machine is rebuilt from the snapshot and the log at every start.
    std::shared_ptr<const raft::snapshot> snap;
    if (st.store->snapshot(snap) == raft::storage_errc::ok && snap && snap->metadata.index > 0) {
      if (!st.sm->restore(snap->data))
        fail_stop("group " + std::to_string(settings.group) + ": the stored snapshot is malformed");
      st.applied = st.snapshot_index = snap->metadata.index;
    }
    cfg.applied_index = st.applied;
    st.core = std::make_unique<raft::core>(cfg, *st.store);
    update_gauges(self);
    self->set_exit_handler([=](caf::exit_msg& msg) {
      caf::anon_send_exit(self->state.sync_worker, caf::exit_reason::user_shutdown);
      self->quit(msg.reason);
    });
    log::info(subsystem, "group {}: started at term {} with voters {} (log {}..{}, applied {})", settings.group,
              st.core->term(), raft::to_string(st.core->current_config()), st.store->first_index(),
              st.store->last_index(), st.applied);
    return {
      [=](raft_atom, raft::message& m) {
        self->state.core->step(m);
        schedule_drive(self);
      },
      [=](propose_atom, std::string& command) -> caf::result<std::string> {
        auto& st = self->state;
        auto r = st.core->propose(std::move(command));
        if (!r.ok()) {
          st.m.proposals_refused->inc();
          if (r.code == raft::errc::not_leader) return not_leader_error(r.leader_hint);
          return make_error(errc::unavailable, std::string{"proposal refused: "} + raft::to_string(r.code));
        }
        auto rp = self->make_response_promise<std::string>();
        auto now = self->clock().now();
        st.proposals[r.index] = pending_proposal{r.term, rp, now + st.settings.request_timeout};
        st.proposed_at[r.index] = now;
        schedule_drive(self);
        return rp;
      },
      [=](query_atom, std::string& request, bool linearizable) -> caf::result<std::string> {
        auto& st = self->state;
        if (!linearizable) return st.sm->query(request);
        auto id = st.next_read_id++;
        auto r = st.core->read_index(id);
        if (!r.ok()) {
          if (r.code == raft::errc::not_leader) return not_leader_error(r.leader_hint);
          return make_error(errc::unavailable, std::string{"read refused: "} + raft::to_string(r.code));
        }
        auto rp = self->make_response_promise<std::string>();
        st.reads[id] = pending_read{std::move(request), rp, self->clock().now() + st.settings.request_timeout};
        schedule_drive(self);
        return rp;
      },
      [=](status_atom) { return status_of(self); },
      [=](member_change_atom, uint8_t kind, std::string& node) -> caf::result<group_status> {
        auto& st = self->state;
        auto& c = *st.core;
        if (c.state() != raft::role::leader) return not_leader_error(c.leader());
        if (st.change.active)
          return make_error(errc::unavailable, "another membership change (" + st.change.node + ") is in progress");
        bool add = kind == 0;
        auto& conf = c.current_config();
        if (add && conf.is_voter(node)) return status_of(self);
        if (!add && !conf.contains(node)) return status_of(self);
        auto& ch = st.change;
        ch = member_change{};
        ch.add = add;
        ch.node = node;
        ch.deadline = self->clock().now() + std::chrono::seconds(30);
        if (add && conf.is_learner(node)) {
          ch.promoting = true;
        } else {
          auto type = add ? raft::conf_change_type::add_learner : raft::conf_change_type::remove_node;
          auto r = c.propose_conf_change(raft::conf_change{type, node});
          if (!r.ok()) {
            if (r.code == raft::errc::not_leader) return not_leader_error(r.leader_hint);
            auto why = std::string{"membership change refused: "} + raft::to_string(r.code);
            if (r.code == raft::errc::invalid_conf_change) return make_error(errc::bad_request, why);
            return make_error(errc::unavailable, why);
          }
          ch.index = r.index;
        }
        ch.active = true;
        ch.promise = self->make_response_promise<group_status>();
        log::info(subsystem, "group {}: {} {}", st.settings.group, add ? "adding" : "removing", node);
        try_promote(self);
        schedule_drive(self);
        return ch.promise;
      },
      [=](step_down_atom) -> caf::result<bool> {
        auto& st = self->state;
        auto& c = *st.core;
        if (c.state() != raft::role::leader) return true;
        std::string target;
        uint64_t best = 0;
        for (auto& voter : c.current_config().voters) {
          auto* pr = voter == st.settings.self ? nullptr : c.progress_of(voter);
          if (pr && pr->match() >= best) {
            best = pr->match();
            target = voter;
          }
        }
        if (target.empty()) return false;  // a single voter has no one to hand over to
        auto r = c.transfer_leadership(target);
        if (!r.ok()) return false;
        log::info(subsystem, "group {}: handing leadership to {} before stopping", st.settings.group, target);
        auto rp = self->make_response_promise<bool>();
        st.stepping_down.push_back(rp);
        st.step_down_deadline = self->clock().now() + st.settings.tick_interval * (2 * st.settings.election_ticks);
        schedule_drive(self);
        return rp;
      },
      [=](transfer_atom, std::string& target) -> bool {
        auto& st = self->state;
        auto& c = *st.core;
        if (c.state() != raft::role::leader || target == st.settings.self) return false;
        auto* pr = c.progress_of(target);
        if (!pr || !c.current_config().is_voter(target) || pr->match() < c.log().last_index()) return false;
        if (!c.transfer_leadership(target).ok()) return false;
        log::info(subsystem, "group {}: handing leadership to its preferred leader {}", st.settings.group, target);
        schedule_drive(self);
        return true;
      },
      [=](raft_drive_atom) {
        self->state.drive_scheduled = false;
        drive(self);
      },
      [=](raft_tick_atom) {
        self->state.core->tick();
        expire_requests(self);
        try_promote(self);
        schedule_drive(self);
      },
      [=](member_atom, const member_status& m) {
        if (!m.node_id.empty() && (m.state == "down" || m.state == "suspected"))
          self->state.core->report_unreachable(m.node_id);
      },
    };
  });
}

}  // namespace dsync
