#include "actors/raft/raft_host.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include "actors/control_machine.hpp"
#include "actors/log.hpp"
#include "protocols/ring/hash_ring.hpp"

namespace dsync {

namespace {

struct host_state {
  raft_host_settings settings;
  log_opener logs;
  peer_links_actor links;
  metrics::registry* metrics = nullptr;
  std::map<uint64_t, raft_group_actor> groups;
  std::map<std::string, std::string> peer_ids;  // address -> node id, learned at handshakes
  metrics::counter* dropped = nullptr;
  static const char* name;
};
const char* host_state::name = "raft-host";

using self_ptr = raft_host_actor::stateful_pointer<host_state>;

void start_group(self_ptr self, uint64_t group, const raft::configuration& bootstrap) {
  auto& st = self->state;
  auto gs = st.settings.group_defaults;
  gs.group = group;
  gs.self = st.settings.self;
  std::unique_ptr<log_store> store;
  try {
    store = st.logs.open(group, bootstrap);
  } catch (const std::exception& e) {
    log::error("raft", "stopping the node: cannot open the log of group {}: {}", group, e.what());
    std::_Exit(70);
  }
  auto g = spawn_raft_group(self->system(), gs, std::move(store), st.settings.make_machine(group), st.links,
                            *st.metrics);
  self->link_to(g);  // a group that fails takes its host (and so the node) down
  st.groups.emplace(group, g);
  self->send(st.links, subscribe_atom::value, caf::actor_cast<membership_listener>(g));
}

void maybe_bootstrap(self_ptr self) {
  auto& st = self->state;
  if (st.groups.count(control_group) || st.peer_ids.size() < st.settings.expected_peers) return;
  raft::configuration conf;
  conf.voters.push_back(st.settings.self);
  for (auto& [addr, id] : st.peer_ids) conf.voters.push_back(id);
  std::sort(conf.voters.begin(), conf.voters.end());
  conf.voters.erase(std::unique(conf.voters.begin(), conf.voters.end()), conf.voters.end());
  log::info("raft", "bootstrapping the control group with voters {}", raft::to_string(conf));
  start_group(self, control_group, conf);
  ring::hash_ring placement(conf.voters);
  for (uint32_t shard = 0; shard < st.settings.queue_shards; ++shard) {
    raft::configuration replicas;
    replicas.voters = placement.shard_replicas(shard, st.settings.queue_replicas);
    if (std::find(replicas.voters.begin(), replicas.voters.end(), st.settings.self) == replicas.voters.end()) continue;
    std::sort(replicas.voters.begin(), replicas.voters.end());
    start_group(self, shard_group(shard), replicas);
  }
}

// A message from a peer, to the actor of its group.
void deliver(self_ptr self, raft::message& m) {
  auto& st = self->state;
  auto g = st.groups.find(m.group);
  // A queue shard's leader adds this node to the shard (rebalancing after a
  // membership change): start the group empty, to be filled by its leader.
  bool shard = m.group >= shard_group(0) && m.group < shard_group(st.settings.queue_shards);
  if (g == st.groups.end() && shard && st.groups.count(control_group)) {
    log::info("raft", "group {}: joining at the request of {}", m.group, m.from);
    start_group(self, m.group, raft::configuration{});
    g = st.groups.find(m.group);
  }
  if (g == st.groups.end()) {
    st.dropped->inc();
    return;
  }
  self->send(g->second, raft_atom::value, std::move(m));
}

caf::result<std::string> no_group(uint64_t group) {
  return make_error(errc::unavailable, "Raft group " + std::to_string(group) + " is not running on this node yet");
}

}  // namespace

raft_host_actor spawn_raft_host(caf::actor_system& sys, raft_host_settings settings, log_opener logs,
                                peer_links_actor links, metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> raft_host_actor::behavior_type {
    auto& st = self->state;
    st.settings = settings;
    st.logs = logs;
    st.links = links;
    st.metrics = &registry;
    st.dropped = &registry.get_counter("dsync_raft_messages_dropped_total",
                                       "Raft messages for a group that does not run here");
    if (st.logs.exists(control_group)) {
      start_group(self, control_group, raft::configuration{});
      for (uint32_t shard = 0; shard < settings.queue_shards; ++shard)
        if (st.logs.exists(shard_group(shard))) start_group(self, shard_group(shard), raft::configuration{});
    }
    else if (settings.join_existing) {
      log::info("raft", "joining a running cluster: waiting to be added (dsyncctl member add {})", settings.self);
      start_group(self, control_group, raft::configuration{});
    } else if (settings.expected_peers == 0) maybe_bootstrap(self);
    else log::info("raft", "waiting to reach all {} peers once to bootstrap the control group", settings.expected_peers);
    self->send(links, subscribe_atom::value, caf::actor_cast<membership_listener>(self));
    self->send(self, raft_tick_atom::value);
    return {
      [=](raft_tick_atom) {
        for (auto& [id, g] : self->state.groups) self->send(g, raft_tick_atom::value);
        self->delayed_send(self, self->state.settings.group_defaults.tick_interval, raft_tick_atom::value);
      },
      [=](raft_atom, std::vector<raft::message>& ms) {
        for (auto& m : ms) deliver(self, m);
      },
      [=](propose_atom, uint64_t group, std::string& command) -> caf::result<std::string> {
        auto g = self->state.groups.find(group);
        if (g == self->state.groups.end()) return no_group(group);
        return self->delegate(g->second, propose_atom::value, std::move(command));
      },
      [=](query_atom, uint64_t group, std::string& q, bool linearizable) -> caf::result<std::string> {
        auto g = self->state.groups.find(group);
        if (g == self->state.groups.end()) return no_group(group);
        return self->delegate(g->second, query_atom::value, std::move(q), linearizable);
      },
      [=](status_atom) -> caf::result<std::vector<group_status>> {
        auto rp = self->make_response_promise<std::vector<group_status>>();
        auto groups = self->state.groups;
        if (groups.empty()) {
          rp.deliver(std::vector<group_status>{});
          return rp;
        }
        auto out = std::make_shared<std::vector<group_status>>();
        auto left = std::make_shared<size_t>(groups.size());
        for (auto& [id, g] : groups) {
          self->request(g, std::chrono::seconds(2), status_atom::value)
            .then(
              [=](group_status& s) mutable {
                out->push_back(std::move(s));
                if (--*left == 0) {
                  std::sort(out->begin(), out->end(),
                            [](const group_status& a, const group_status& b) { return a.group < b.group; });
                  rp.deliver(std::move(*out));
                }
              },
              [=](caf::error&) mutable {
                if (--*left == 0) rp.deliver(std::move(*out));
              });
        }
        return rp;
      },
      [=](member_change_atom, uint64_t group, uint8_t kind, std::string& node) -> caf::result<group_status> {
        auto g = self->state.groups.find(group);
        if (g == self->state.groups.end())
          return make_error(errc::unavailable, "Raft group " + std::to_string(group) + " is not running on this node yet");
        return self->delegate(g->second, member_change_atom::value, kind, std::move(node));
      },
      [=](transfer_atom, uint64_t group, std::string& target) -> caf::result<bool> {
        auto g = self->state.groups.find(group);
        if (g == self->state.groups.end()) return false;
        return self->delegate(g->second, transfer_atom::value, std::move(target));
      },
      [=](step_down_atom) -> caf::result<uint64_t> {
        auto rp = self->make_response_promise<uint64_t>();
        auto groups = self->state.groups;
        if (groups.empty()) {
          rp.deliver(uint64_t{0});
          return rp;
        }
        auto handed = std::make_shared<uint64_t>(0);
        auto left = std::make_shared<size_t>(groups.size());
        for (auto& [id, g] : groups) {
          self->request(g, std::chrono::seconds(5), step_down_atom::value)
            .then(
              [=](bool ok) mutable {
                if (ok) ++*handed;
                if (--*left == 0) rp.deliver(*handed);
              },
              [=](caf::error&) mutable {
                if (--*left == 0) rp.deliver(*handed);
              });
        }
        return rp;
      },
      [=](member_atom, const member_status& m) {
        if (m.node_id.empty() || m.state != "alive") return;
        self->state.peer_ids[m.address] = m.node_id;
        maybe_bootstrap(self);
      },
    };
  });
}

}  // namespace dsync
