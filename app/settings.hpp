// Node settings: one table of every setting, read in rising precedence from built-in
// defaults, a config file (CAF's ini format), environment variables and command-line
// flags, then validated as a whole. Parsing is pure (the environment and the file's text
// come in as arguments) so every error path is unit-tested; only prepare_data_dir()
// touches the file system.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dsync {

enum class coherence_protocol { mesi, mosi, moesi };
enum class log_level { trace, debug, info, warn, error, off };

std::string to_string(coherence_protocol p);  // "MESI", "MOSI", "MOESI"
std::string to_string(log_level l);           // "trace" .. "off"

struct peer_address {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
  friend bool operator==(const peer_address& a, const peer_address& b) {
    return a.host == b.host && a.port == b.port;
  }
};

// "localhost" and 127.0.0.1 name the same node; otherwise hosts compare as text (no DNS).
bool same_address(const peer_address& a, const peer_address& b);

struct node_settings {
  std::string node_id;
  std::string node_host = "127.0.0.1";
  uint16_t node_port = 5000;
  uint16_t http_port = 6000;  // NODE_PORT + 1000 unless set
  std::vector<peer_address> cluster_nodes;  // the other members, never this node
  std::string cluster_id = "dsync";
  // new: the listed members form a new cluster together. existing: this node joins a running
  // cluster and waits to be added (dsyncctl member add) instead of bootstrapping.
  bool join_existing = false;
  std::string data_dir;  // "" until resolved: default is ./dsync-data/<node_id>
  bool data_dir_explicit = false;
  std::string redis_host = "127.0.0.1";
  uint16_t redis_port = 6379;
  uint64_t cache_size = 10000;  // lines per node
  uint32_t queue_shards = 16;   // fixed at cluster creation; every node must agree
  uint32_t queue_replicas = 3;  // replicas per shard (fewer if the cluster is smaller)
  coherence_protocol protocol = coherence_protocol::mesi;
  bool cache_lfu = false;            // CACHE_EVICTION: lru (false) or lfu
  bool cache_write_through = false;  // CACHE_WRITE_POLICY: write-back (false) or write-through
  log_level level = log_level::info;
  uint32_t peer_ping_ms = 200;      // how often a peer is pinged
  uint32_t peer_suspect_ms = 1000;  // no answer for this long: suspected
  uint32_t peer_down_ms = 3000;     // no answer for this long: down
  uint32_t raft_tick_ms = 25;          // one logical tick of every Raft group
  uint32_t raft_election_ticks = 10;   // election timeout: [10, 20) ticks
  uint32_t raft_heartbeat_ticks = 2;
  uint64_t raft_snapshot_entries = 10000;  // applied entries between snapshots
  uint64_t http_max_body_bytes = 1 << 20;
  uint32_t http_max_connections = 4096;
};

// What the command line asked for besides running a node.
enum class launch_action { run, help, version, dump_config };

struct launch_plan {
  launch_action action = launch_action::run;
  node_settings settings;
  // Options for CAF itself (--middleman.*, --scheduler.*, --openssl.* and the same
  // sections of the config file), handed to CAF's own parser, which rejects unknown ones.
  std::vector<std::string> caf_args;
  std::string config_file;  // "" when none was given
};

struct settings_error {
  std::string message;  // one line that names the setting, its source and what is wrong
};

// Reads the config file named by --config-file (through read_file) and folds in the
// environment and the arguments (argv without the program name). Either a plan or the
// first error found.
struct parse_result {
  std::optional<launch_plan> plan;
  std::optional<settings_error> error;
};
using file_reader = std::optional<std::string> (*)(const std::string& path, std::string& why);
parse_result parse_launch(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env,
                          file_reader read_file);

std::optional<std::string> read_text_file(const std::string& path, std::string& why);
std::map<std::string, std::string> current_environment();

// The --help text: every setting with its flag, environment variable and default.
std::string settings_help(const std::string& program);
// The effective settings, as a config file that would reproduce them.
std::string dump_settings(const node_settings& s);

// Resolves the data directory (default ./dsync-data/<node_id>, created if missing; an
// explicit DATA_DIR must already exist so a mistyped mount point is caught), checks that
// it is a writable directory and takes an exclusive lock on it so two nodes never share
// it. Returns the lock's file descriptor (held for the life of the process) or an error.
struct data_dir_lock {
  int fd = -1;
  std::optional<settings_error> error;
};
data_dir_lock prepare_data_dir(node_settings& s);

}  // namespace dsync
