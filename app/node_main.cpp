// dsync-node: reads and validates the settings, then runs one node until SIGTERM/SIGINT.
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <unistd.h>

#include "actors/cache_mirror.hpp"
#include "actors/http_gateway.hpp"
#include "actors/log.hpp"
#include "actors/metrics.hpp"
#include "actors/node_actor.hpp"
#include "actors/control_machine.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/raft_host.hpp"
#include "actors/raft/wal_log_store.hpp"
#include "app/settings.hpp"
#include "dsync/api.hpp"

namespace {

using namespace dsync;

struct node_config : caf::actor_system_config {
  node_config() {
    register_types(*this);
    load<caf::io::middleman>();
    // Lowest round-trip latency on small machines (CAF-0.17-GUIDE §10); overridable.
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", 1);
  }
};

int fail(const std::string& message, int code = 2) {
  std::cerr << "dsync-node: " << message << "\n";
  return code;
}

node_info describe(const node_settings& s) {
  node_info info;
  info.node_id = s.node_id;
  info.cluster_id = s.cluster_id;
  info.software = software_version;
  info.coherence_protocol = to_string(s.protocol);
  info.queue_shards = s.queue_shards;
  info.queue_replicas = s.queue_replicas;
  info.host = s.node_host;
  info.port = s.node_port;
  info.http_port = s.http_port;
  info.started_at_ms = wall_clock_ms();
  return info;
}

// Raft logs of this node: one write-ahead log directory per group under DATA_DIR.
log_opener open_logs(const node_settings& s) {
  auto dir_of = [dir = s.data_dir](uint64_t group) { return dir + "/raft-" + std::to_string(group); };
  return log_opener{
    [=](uint64_t group) {
      std::error_code ec;
      for (auto& f : std::filesystem::directory_iterator(dir_of(group), ec))
        if (f.path().filename().string().rfind("wal-", 0) == 0) return true;
      return false;
    },
    [=](uint64_t group, const raft::configuration& bootstrap) -> std::unique_ptr<log_store> {
      auto store = std::make_unique<wal_log_store>(dir_of(group), bootstrap);
      auto& r = store->recovery();
      log::info("storage", "group {}: {} {} (snapshot at {}, {} entries, {} segments){}", group,
                r.created ? "created" : "recovered", dir_of(group), r.snapshot_index, r.entries, r.segments,
                r.dropped_bytes ? ", dropped a torn tail of " + std::to_string(r.dropped_bytes) + " bytes" : "");
      for (auto& note : r.notes) log::warn("storage", "group {}: {}", group, note);
      return store;
    },
  };
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_launch(args, current_environment(), read_text_file);
  if (parsed.error) return fail(parsed.error->message);
  auto plan = std::move(*parsed.plan);
  switch (plan.action) {
    case launch_action::help: std::cout << settings_help("dsync-node"); return 0;
    case launch_action::version: std::cout << "dsync-node " << software_version << "\n"; return 0;
    case launch_action::dump_config: std::cout << dump_settings(plan.settings); return 0;
    case launch_action::run: break;
  }
  auto& s = plan.settings;
  log::init(s.node_id, s.level);

  node_config cfg;
  std::istringstream no_ini;  // never read caf-application.ini from the working directory
  if (auto err = cfg.parse(plan.caf_args, no_ini))
    return fail("bad CAF option: " + caf::actor_system_config::render(err));
  if (cfg.cli_helptext_printed) return 0;

  auto lock = prepare_data_dir(s);
  if (lock.error) return fail(lock.error->message);

  // An existing log is opened (and recovered) before anything starts, so that a log that
  // cannot be trusted stops the node here with a clear message instead of later.
  auto logs = open_logs(s);
  auto recovered = std::make_shared<std::map<uint64_t, std::unique_ptr<log_store>>>();
  std::vector<uint64_t> groups{control_group};
  for (uint32_t shard = 0; shard < s.queue_shards; ++shard) groups.push_back(shard_group(shard));
  for (auto group : groups) {
    if (!logs.exists(group)) continue;
    try {
      (*recovered)[group] = logs.open(group, raft::configuration{});
    } catch (const std::exception& e) {
      return fail("refusing to start: the Raft log of group " + std::to_string(group) + " cannot be trusted: " + e.what(),
                  1);
    }
  }
  auto open = logs.open;
  logs.open = [=](uint64_t group, const raft::configuration& bootstrap) {
    if (auto r = recovered->find(group); r != recovered->end() && r->second) return std::move(r->second);
    return open(group, bootstrap);
  };

  // Signals are taken by sigwait() below; block them before CAF starts its threads so
  // that no other thread receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  int exit_code = 0;
  // Outlives the actor system: its destructor waits for actors that still record metrics.
  metrics::registry registry;
  {
    caf::actor_system sys{cfg};
    auto self_info = describe(s);
    registry.get_gauge("dsync_node_info", "Constant 1, labelled with this node's identity",
                       {{"node", s.node_id}, {"cluster", s.cluster_id}, {"version", software_version},
                        {"coherence_protocol", self_info.coherence_protocol}})
      .set(1);
    registry.get_gauge("dsync_node_start_time_seconds", "Start time of this node, seconds since the epoch")
      .set(static_cast<double>(self_info.started_at_ms) / 1000.0);

    auto links = spawn_peer_links(sys, self_info, s.cluster_nodes, s.join_existing, timing_from(s), registry);
    raft_host_settings rs;
    rs.self = s.node_id;
    rs.queue_shards = s.queue_shards;
    rs.queue_replicas = s.queue_replicas;
    rs.expected_peers = s.cluster_nodes.size();
    rs.join_existing = s.join_existing;
    rs.group_defaults.tick_interval = std::chrono::milliseconds{s.raft_tick_ms};
    rs.group_defaults.election_ticks = s.raft_election_ticks;
    rs.group_defaults.heartbeat_ticks = s.raft_heartbeat_ticks;
    rs.group_defaults.snapshot_every_entries = s.raft_snapshot_entries;
    rs.group_defaults.seed = std::hash<std::string>{}(s.node_id) ^ self_info.started_at_ms;
    rs.group_defaults.request_timeout = std::chrono::seconds(3);
    auto locks = spawn_lock_service(sys, s.node_id, links, registry);
    auto queues = spawn_queue_service(sys, queue_service_settings{s.node_id, s.queue_shards, s.queue_replicas}, links,
                                      registry);
    auto redis = spawn_redis_actor(sys, redis_settings_from(s), registry);
    cache_service_settings cs;
    cs.self = s.node_id;
    cs.protocol = to_string(s.protocol);
    cs.write_through = s.cache_write_through;
    cs.lfu = s.cache_lfu;
    cs.capacity = s.cache_size;
    cs.redis_address = s.redis_host + ":" + std::to_string(s.redis_port);
    cs.peer_ping_ms = s.peer_ping_ms;
    cs.peer_down_ms = s.peer_down_ms;
    // This node's readable cache lines: written by the cache service after each step of its
    // controller, read by the HTTP gateway to answer hits without an actor.
    auto cache_lines = std::make_shared<cache_mirror>();
    auto cache = spawn_cache_service(sys, cs, links, redis, registry, cache_lines);
    rs.make_machine = [locks, queues, cache, links](uint64_t group) -> std::unique_ptr<state_machine> {
      if (group == control_group)
        return std::make_unique<control_machine>(observe_locks(locks), observe_cache(cache), observe_members(links));
      return std::make_unique<queue_machine>(group, static_cast<uint32_t>(group - 1), observe_queues(queues));
    };
    auto raft = spawn_raft_host(sys, rs, logs, links, registry);
    caf::anon_send(locks, attach_atom::value, raft);
    caf::anon_send(queues, queue_attach_atom::value, raft);
    caf::anon_send(cache, cache_attach_atom::value, raft);
    auto node = spawn_node_actor(sys, self_info, links, raft, locks, queues, cache, registry);
    caf::anon_send(links, start_atom::value, node);
    http_gateway gateway{sys, node, s, registry, cache_lines};

    auto port = sys.middleman().publish(node, s.node_port, s.node_host.c_str(), true);
    if (!port) {
      exit_code = fail("cannot listen on " + s.node_host + ":" + std::to_string(s.node_port) + ": "
                         + sys.render(port.error()),
                       1);
    } else if (auto err = gateway.start()) {
      exit_code = fail(*err, 1);
    } else {
      std::string peers;
      for (auto& p : s.cluster_nodes) peers += (peers.empty() ? "" : ",") + p.to_string();
      log::info("node", "started: cluster {} node API {}:{} HTTP {}:{} peers [{}] data {} cache {} {}",
                s.cluster_id, s.node_host, s.node_port, s.node_host, s.http_port, peers, s.data_dir,
                to_string(s.protocol), s.cache_size);
      int sig = 0;
      sigwait(&stop_signals, &sig);
      log::info("node", "received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      // Hand Raft leadership over first, so the cluster does not wait an election timeout.
      caf::scoped_actor self{sys};
      self->request(raft, std::chrono::seconds(6), step_down_atom::value)
        .receive([](uint64_t) {}, [](caf::error& err) { log::warn("node", "leadership hand-over: {}", caf::to_string(err)); });
    }
    gateway.stop();
    sys.middleman().unpublish(node, s.node_port);
    caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(raft, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(locks, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(queues, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(cache, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(redis, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(links, caf::exit_reason::user_shutdown);
  }
  log::info("node", "stopped");
  ::close(lock.fd);
  return exit_code;
}
