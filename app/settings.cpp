#include "app/settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

extern char** environ;

namespace dsync {

std::string to_string(coherence_protocol p) {
  switch (p) {
    case coherence_protocol::mesi: return "MESI";
    case coherence_protocol::mosi: return "MOSI";
    case coherence_protocol::moesi: return "MOESI";
  }
  return "?";
}

std::string to_string(log_level l) {
  switch (l) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "?";
}

namespace {

// Sections of the config file (and --group.key flags) that belong to CAF itself.
const std::set<std::string> caf_groups = {"middleman", "scheduler", "openssl", "work-stealing",
                                          "stream"};

constexpr size_t max_name_length = 64;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Errors quote what was given: control characters in it must not break their one line.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

using check_result = std::optional<std::string>;  // an error text, or nothing when fine

check_result parse_uint(const std::string& v, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (v.empty() || v.size() > 19 || !std::all_of(v.begin(), v.end(), ::isdigit))
    return fmt::format("not a whole number (expected {}..{})", lo, hi);
  auto x = std::stoull(v);
  if (x < lo || x > hi) return fmt::format("out of range (expected {}..{})", lo, hi);
  out = x;
  return {};
}

check_result parse_port(const std::string& v, uint16_t& out) {
  uint64_t x = 0;
  if (parse_uint(v, 1, 65535, x)) return "not a port number (expected 1..65535)";
  out = static_cast<uint16_t>(x);
  return {};
}

bool valid_name(const std::string& v) {
  return !v.empty() && v.size() <= max_name_length
         && std::all_of(v.begin(), v.end(), [](unsigned char c) {
              return std::isalnum(c) || c == '-' || c == '_' || c == '.';
            });
}

bool valid_host(const std::string& v) {
  return !v.empty() && v.size() <= 253
         && std::all_of(v.begin(), v.end(), [](unsigned char c) {
              return std::isalnum(c) || c == '-' || c == '.' || c == ':' || c == '_';
            });
}

check_result parse_address(const std::string& text, peer_address& out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return fmt::format("'{}' is not host:port", text);
  auto host = text.substr(0, colon);
  if (!valid_host(host)) return fmt::format("'{}' has an invalid host name", text);
  if (parse_port(text.substr(colon + 1), out.port))
    return fmt::format("'{}' has an invalid port (expected 1..65535)", text);
  out.host = host;
  return {};
}

// "localhost" and 127.0.0.1 name the same node; no DNS here, the rest compares as text.
std::string canonical_host(const std::string& h) {
  auto l = lower(h);
  return l == "localhost" ? "127.0.0.1" : l;
}


std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in{v};
  while (std::getline(in, cur, ',')) {
    cur = trim(cur);
    if (cur.size() >= 2 && (cur.front() == '"' || cur.front() == '\'') && cur.back() == cur.front())
      cur = cur.substr(1, cur.size() - 2);
    out.push_back(cur);
  }
  return out;
}

// A setting that is a whole number in [lo, hi], stored in member `field`.
template <class T>
std::function<check_result(node_settings&, const std::string&)> number(T node_settings::*field, uint64_t lo,
                                                                       uint64_t hi) {
  return [=](node_settings& s, const std::string& v) -> check_result {
    uint64_t x = 0;
    if (auto err = parse_uint(v, lo, hi, x)) return err;
    s.*field = static_cast<T>(x);
    return {};
  };
}

struct setting_def {
  const char* key;  // flag --key and config-file key
  const char* env;
  const char* default_text;
  const char* help;
  std::function<check_result(node_settings&, const std::string&)> apply;
};

const std::vector<setting_def>& setting_table() {
  static const std::vector<setting_def> table = {
    {"node-id", "NODE_ID", "(required)", "this node's unique name: letters, digits, '-', '_', '.'",
     [](node_settings& s, const std::string& v) -> check_result {
       if (!valid_name(v))
         return fmt::format("'{}' is not a node name (1-{} of letters, digits, '-', '_', '.')", v,
                            max_name_length);
       s.node_id = v;
       return {};
     }},
    {"node-host", "NODE_HOST", "127.0.0.1", "address this node listens on and peers reach it at",
     [](node_settings& s, const std::string& v) -> check_result {
       if (!valid_host(v)) return fmt::format("'{}' is not a host name or address", v);
       s.node_host = v;
       return {};
     }},
    {"node-port", "NODE_PORT", "5000", "CAF port of the node API (peers and CAF clients)",
     [](node_settings& s, const std::string& v) { return parse_port(v, s.node_port); }},
    {"http-port", "HTTP_PORT", "NODE_PORT + 1000", "HTTP/JSON API and /metrics port",
     [](node_settings& s, const std::string& v) { return parse_port(v, s.http_port); }},
    {"cluster-nodes", "CLUSTER_NODES", "(none: a single-node cluster)",
     "comma-separated host:port of the OTHER members",
     [](node_settings& s, const std::string& v) -> check_result {
       s.cluster_nodes.clear();
       if (trim(v).empty()) return {};
       for (auto& item : split_list(v)) {
         peer_address a;
         if (auto err = parse_address(item, a)) return err;
         for (auto& known : s.cluster_nodes)
           if (same_address(known, a)) return fmt::format("lists {} twice", item);
         s.cluster_nodes.push_back(a);
       }
       return {};
     }},
    {"cluster-id", "CLUSTER_ID", "dsync", "name of the cluster; nodes of another cluster are refused",
     [](node_settings& s, const std::string& v) -> check_result {
       if (!valid_name(v)) return fmt::format("'{}' is not a cluster name", v);
       s.cluster_id = v;
       return {};
     }},
    {"cluster-state", "CLUSTER_STATE", "new",
     "new: the members start a new cluster; existing: join a running one (then: dsyncctl member add)",
     [](node_settings& s, const std::string& v) -> check_result {
       if (v == "new") s.join_existing = false;
       else if (v == "existing") s.join_existing = true;
       else return fmt::format("'{}' is not a cluster state (expected new or existing)", v);
       return {};
     }},
    {"data-dir", "DATA_DIR", "./dsync-data/<node-id>",
     "directory for the write-ahead log and snapshots (an explicit one must exist)",
     [](node_settings& s, const std::string& v) -> check_result {
       if (v.empty()) return "is empty";
       s.data_dir = v;
       s.data_dir_explicit = true;
       return {};
     }},
    {"redis-host", "REDIS_HOST", "127.0.0.1", "Redis server behind the cache",
     [](node_settings& s, const std::string& v) -> check_result {
       if (!valid_host(v)) return fmt::format("'{}' is not a host name or address", v);
       s.redis_host = v;
       return {};
     }},
    {"redis-port", "REDIS_PORT", "6379", "Redis port",
     [](node_settings& s, const std::string& v) { return parse_port(v, s.redis_port); }},
    {"cache-size", "CACHE_SIZE", "10000", "cache capacity of this node, in lines (1..100000000)",
     number(&node_settings::cache_size, 1, 100000000)},
    {"queue-shards", "QUEUE_SHARDS", "16",
     "queue shards (each a Raft group), fixed when the cluster is created (1..1024); every node must agree",
     number(&node_settings::queue_shards, 1, 1024)},
    {"queue-replicas", "QUEUE_REPLICAS", "3", "replicas of each queue shard (1..7); every node must agree",
     number(&node_settings::queue_replicas, 1, 7)},
    {"cache-coherence-protocol", "CACHE_COHERENCE_PROTOCOL", "MESI",
     "MESI, MOSI or MOESI; every node of a cluster must agree",
     [](node_settings& s, const std::string& v) -> check_result {
       auto l = lower(v);
       if (l == "mesi") s.protocol = coherence_protocol::mesi;
       else if (l == "mosi") s.protocol = coherence_protocol::mosi;
       else if (l == "moesi") s.protocol = coherence_protocol::moesi;
       else return fmt::format("'{}' is not a coherence protocol (expected MESI, MOSI or MOESI)", v);
       return {};
     }},
    {"cache-eviction", "CACHE_EVICTION", "lru", "cache replacement: lru or lfu",
     [](node_settings& s, const std::string& v) -> check_result {
       auto l = lower(v);
       if (l != "lru" && l != "lfu") return fmt::format("'{}' is not a replacement policy (expected lru or lfu)", v);
       s.cache_lfu = l == "lfu";
       return {};
     }},
    {"cache-write-policy", "CACHE_WRITE_POLICY", "write-back",
     "write-back (dirty lines reach Redis when evicted or downgraded) or write-through (every put)",
     [](node_settings& s, const std::string& v) -> check_result {
       auto l = lower(v);
       if (l != "write-back" && l != "write-through")
         return fmt::format("'{}' is not a write policy (expected write-back or write-through)", v);
       s.cache_write_through = l == "write-through";
       return {};
     }},
    {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error or off",
     [](node_settings& s, const std::string& v) -> check_result {
       static const std::pair<const char*, log_level> names[] = {
         {"trace", log_level::trace}, {"debug", log_level::debug}, {"info", log_level::info},
         {"warn", log_level::warn},   {"warning", log_level::warn}, {"error", log_level::error},
         {"off", log_level::off}};
       for (auto& [name, level] : names)
         if (lower(v) == name) {
           s.level = level;
           return {};
         }
       return fmt::format("'{}' is not a log level (expected trace, debug, info, warn, error or off)", v);
     }},
    {"peer-ping-ms", "PEER_PING_MS", "200", "how often each peer is pinged, in ms (10..10000)",
     number(&node_settings::peer_ping_ms, 10, 10000)},
    {"peer-suspect-ms", "PEER_SUSPECT_MS", "1000",
     "a peer silent this long is suspected, in ms (20..60000)",
     number(&node_settings::peer_suspect_ms, 20, 60000)},
    {"peer-down-ms", "PEER_DOWN_MS", "3000",
     "a peer silent this long is down, in ms (50..600000); a closed connection is down at once",
     number(&node_settings::peer_down_ms, 50, 600000)},
    {"raft-tick-ms", "RAFT_TICK_MS", "25", "length of one Raft tick, in ms (1..1000)",
     number(&node_settings::raft_tick_ms, 1, 1000)},
    {"raft-election-ticks", "RAFT_ELECTION_TICKS", "10",
     "election timeout in ticks, randomized over [n, 2n) (3..1000)",
     number(&node_settings::raft_election_ticks, 3, 1000)},
    {"raft-heartbeat-ticks", "RAFT_HEARTBEAT_TICKS", "2", "leader heartbeat interval in ticks (1..100)",
     number(&node_settings::raft_heartbeat_ticks, 1, 100)},
    {"raft-snapshot-entries", "RAFT_SNAPSHOT_ENTRIES", "10000",
     "applied entries between two snapshots of a group (100..100000000)",
     number(&node_settings::raft_snapshot_entries, 100, 100000000)},
    {"http-max-body-bytes", "HTTP_MAX_BODY_BYTES", "1048576",
     "largest HTTP request body accepted (1024..67108864); larger ones get 413",
     number(&node_settings::http_max_body_bytes, 1024, 64 << 20)},
    {"http-max-connections", "HTTP_MAX_CONNECTIONS", "4096",
     "open HTTP connections served at once (1..1000000); more are answered 503 and closed",
     number(&node_settings::http_max_connections, 1, 1000000)},
  };
  return table;
}

const setting_def* find_setting(const std::string& key) {
  for (auto& d : setting_table())
    if (key == d.key) return &d;
  return nullptr;
}

// One value from one source, applied in order: later assignments win.
struct assignment {
  const setting_def* def;
  std::string value;
  std::string source;  // e.g. "environment variable NODE_PORT"
};

struct config_file {
  std::vector<assignment> settings;
  std::vector<std::pair<std::string, std::string>> members;  // [members] node-id = host:port
  std::vector<int> member_lines;
  std::vector<std::string> caf_args;
};

// Strips one pair of matching quotes; a list [a, "b"] becomes "a,b".
check_result ini_value(const std::string& raw, std::string& out) {
  auto v = trim(raw);
  if (!v.empty() && v.front() == '[') {
    if (v.back() != ']') return "a list must end with ']'";
    std::string joined;
    for (auto& item : split_list(v.substr(1, v.size() - 2))) {
      if (item.empty()) continue;
      joined += (joined.empty() ? "" : ",") + item;
    }
    out = joined;
    return {};
  }
  if (!v.empty() && (v.front() == '"' || v.front() == '\'')) {
    if (v.size() < 2 || v.back() != v.front()) return "a quoted value must end with its quote";
    out = v.substr(1, v.size() - 2);
    return {};
  }
  out = v;
  return {};
}

std::optional<settings_error> parse_config_file(const std::string& path, const std::string& text,
                                                config_file& out) {
  std::istringstream in{text};
  std::string line, section;
  int line_no = 0;
  auto fail = [&](const std::string& what) {
    return settings_error{fmt::format("config file {} line {}: {}", path, line_no, what)};
  };
  while (std::getline(in, line)) {
    ++line_no;
    // Comments start with ';' or '#' outside quotes.
    char quote = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      char c = line[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == ';' || c == '#') {
        line.resize(i);
        break;
      }
    }
    line = trim(line);
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line.back() != ']') return fail("a section header must end with ']'");
      section = trim(line.substr(1, line.size() - 2));
      if (section != "global" && section != "dsync" && section != "members"
          && !caf_groups.count(section))
        return fail(fmt::format("unknown section [{}] (expected [members], [dsync] or one of CAF's: "
                                "[middleman], [scheduler], [openssl])",
                                section));
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) return fail(fmt::format("'{}' is not key=value", line));
    auto key = trim(line.substr(0, eq));
    std::string value;
    if (auto err = ini_value(line.substr(eq + 1), value)) return fail(fmt::format("{}: {}", key, *err));
    if (section == "members") {
      if (!valid_name(key)) return fail(fmt::format("'{}' is not a node name", key));
      for (auto& [id, addr] : out.members)
        if (id == key) return fail(fmt::format("member {} is listed twice", key));
      out.members.emplace_back(key, value);
      out.member_lines.push_back(line_no);
    } else if (caf_groups.count(section)) {
      out.caf_args.push_back(fmt::format("--{}.{}={}", section, key, trim(line.substr(eq + 1))));
    } else if (auto def = find_setting(key)) {
      out.settings.push_back({def, value, fmt::format("{} line {} ({})", path, line_no, key)});
    } else {
      return fail(fmt::format("unknown setting '{}' (see --help for the list)", key));
    }
  }
  return {};
}

}  // namespace

bool same_address(const peer_address& a, const peer_address& b) {
  return a.port == b.port && canonical_host(a.host) == canonical_host(b.host);
}

parse_result parse_launch(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env, file_reader read_file) {
  parse_result result;
  auto fail = [&](const std::string& msg) {
    result.error = settings_error{printable(msg)};
    result.plan.reset();
    return result;
  };
  launch_plan plan;
  std::vector<assignment> cli;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      plan.action = launch_action::help;
      continue;
    }
    if (arg == "--version") {
      plan.action = launch_action::version;
      continue;
    }
    if (arg == "--dump-config") {
      plan.action = launch_action::dump_config;
      continue;
    }
    if (arg.rfind("--", 0) != 0) return fail(fmt::format("unexpected argument '{}' (see --help)", arg));
    auto eq = arg.find('=');
    auto key = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      value = args[++i];
    } else {
      return fail(fmt::format("option --{} needs a value (--{}=VALUE)", key, key));
    }
    auto dot = key.find('.');
    if (key == "config-file") {
      if (value.empty()) return fail("option --config-file needs a path");
      plan.config_file = value;
    } else if (dot != std::string::npos && caf_groups.count(key.substr(0, dot))) {
      plan.caf_args.push_back(fmt::format("--{}={}", key, value));
    } else if (auto def = find_setting(key)) {
      cli.push_back({def, value, fmt::format("option --{}", key)});
    } else {
      return fail(fmt::format("unknown option --{} (see --help)", key));
    }
  }
  if (plan.action == launch_action::help || plan.action == launch_action::version) {
    result.plan = plan;
    return result;
  }

  config_file file;
  if (!plan.config_file.empty()) {
    std::string why;
    auto text = read_file(plan.config_file, why);
    if (!text) return fail(fmt::format("cannot read config file {}: {}", plan.config_file, why));
    if (auto err = parse_config_file(plan.config_file, *text, file)) return fail(err->message);
  }
  std::vector<assignment> from_env;
  for (auto& def : setting_table()) {
    auto i = env.find(def.env);
    if (i != env.end())
      from_env.push_back({&def, i->second, fmt::format("environment variable {}", def.env)});
  }

  auto& s = plan.settings;
  bool http_port_set = false, cluster_nodes_set = false, host_set = false, port_set = false;
  for (auto* source : {&file.settings, &from_env, &cli})
    for (auto& a : *source) {
      if (auto err = a.def->apply(s, a.value))
        return fail(fmt::format("{}={}: {}", a.source, a.value, *err));
      std::string key = a.def->key;
      http_port_set |= key == "http-port";
      cluster_nodes_set |= key == "cluster-nodes";
      host_set |= key == "node-host";
      port_set |= key == "node-port";
    }

  if (s.node_id.empty())
    return fail("NODE_ID is required: set NODE_ID, --node-id or node-id in the config file");

  // A [members] section describes the whole cluster; this node is the entry named NODE_ID.
  if (!file.members.empty()) {
    if (cluster_nodes_set)
      return fail(fmt::format("config file {} lists [members]; do not set CLUSTER_NODES as well",
                              plan.config_file));
    bool found = false;
    std::vector<peer_address> others;
    std::string names;
    for (size_t i = 0; i < file.members.size(); ++i) {
      auto& [id, text] = file.members[i];
      names += (names.empty() ? "" : ", ") + id;
      peer_address a;
      if (auto err = parse_address(text, a))
        return fail(fmt::format("config file {} line {}: member {}: {}", plan.config_file,
                                file.member_lines[i], id, *err));
      for (auto& o : others)
        if (same_address(o, a))
          return fail(fmt::format("config file {} line {}: member {} reuses the address {}",
                                  plan.config_file, file.member_lines[i], id, text));
      if (id == s.node_id) {
        found = true;
        if ((host_set && canonical_host(s.node_host) != canonical_host(a.host))
            || (port_set && s.node_port != a.port))
          return fail(fmt::format("NODE_HOST/NODE_PORT {}:{} disagree with member {} = {} in {}",
                                  s.node_host, s.node_port, id, text, plan.config_file));
        s.node_host = a.host;
        s.node_port = a.port;
        port_set = true;
      }
      others.push_back(a);
    }
    if (!found)
      return fail(fmt::format("NODE_ID {} is not listed in [members] of {} ({})", s.node_id,
                              plan.config_file, names));
    s.cluster_nodes.clear();
    for (auto& a : others)
      if (!(a.host == s.node_host && a.port == s.node_port)) s.cluster_nodes.push_back(a);
  }

  peer_address self{s.node_host, s.node_port};
  for (auto& p : s.cluster_nodes)
    if (same_address(p, self))
      return fail(fmt::format("CLUSTER_NODES lists this node itself ({}); list only the other members",
                              p.to_string()));
  if (!http_port_set) {
    if (s.node_port > 65535 - 1000)
      return fail(fmt::format("HTTP_PORT defaults to NODE_PORT + 1000 = {}, which is not a port; "
                              "set HTTP_PORT",
                              s.node_port + 1000));
    s.http_port = static_cast<uint16_t>(s.node_port + 1000);
  }
  if (s.http_port == s.node_port)
    return fail(fmt::format("HTTP_PORT and NODE_PORT are both {}; they must differ", s.node_port));
  for (auto& p : s.cluster_nodes)
    if (canonical_host(p.host) == canonical_host(s.node_host) && p.port == s.http_port)
      return fail(fmt::format("HTTP_PORT {} is the CAF port of member {}", s.http_port, p.to_string()));
  if (!(s.peer_ping_ms < s.peer_suspect_ms && s.peer_suspect_ms < s.peer_down_ms))
    return fail(fmt::format("peer timing must satisfy PEER_PING_MS < PEER_SUSPECT_MS < PEER_DOWN_MS "
                            "(got {} / {} / {})",
                            s.peer_ping_ms, s.peer_suspect_ms, s.peer_down_ms));
  if (s.raft_heartbeat_ticks >= s.raft_election_ticks)
    return fail(fmt::format("RAFT_HEARTBEAT_TICKS ({}) must be below RAFT_ELECTION_TICKS ({})",
                            s.raft_heartbeat_ticks, s.raft_election_ticks));
  if (s.data_dir.empty()) s.data_dir = "dsync-data/" + s.node_id;

  plan.caf_args.insert(plan.caf_args.begin(), file.caf_args.begin(), file.caf_args.end());
  result.plan = std::move(plan);
  return result;
}

std::optional<std::string> read_text_file(const std::string& path, std::string& why) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    why = "not a regular file";
    return std::nullopt;
  }
  if (st.st_size > (1 << 20)) {
    why = "larger than 1 MiB";
    return std::nullopt;
  }
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

std::string settings_help(const std::string& program) {
  std::string out = fmt::format(
    "Usage: {} [--config-file=FILE] [--SETTING=VALUE ...]\n\n"
    "Runs one dsync node. Settings come from, in rising precedence: defaults, the config file\n"
    "(ini: 'key = value', a [members] section naming every node as node-id = \"host:port\"),\n"
    "environment variables, then flags.\n\n",
    program);
  out += fmt::format("  {:<36} {:<26} {}\n", "flag / config key", "environment", "default");
  for (auto& d : setting_table()) {
    out += fmt::format("  --{:<34} {:<26} {}\n", d.key, d.env, d.default_text);
    out += fmt::format("      {}\n", d.help);
  }
  out += "\n  --config-file=FILE                   read settings from FILE\n"
         "  --dump-config                        print the effective settings and exit\n"
         "  --version                            print the version and exit\n"
         "  --middleman.*, --scheduler.*, --openssl.*   passed to CAF (also as config-file sections)\n";
  return out;
}

std::string dump_settings(const node_settings& s) {
  std::string peers;
  for (auto& p : s.cluster_nodes) peers += (peers.empty() ? "" : ",") + p.to_string();
  return fmt::format(
    "node-id = \"{}\"\nnode-host = \"{}\"\nnode-port = {}\nhttp-port = {}\ncluster-nodes = \"{}\"\n"
    "cluster-id = \"{}\"\ncluster-state = \"{}\"\ndata-dir = \"{}\"\nredis-host = \"{}\"\nredis-port = {}\ncache-size = {}\n"
    "queue-shards = {}\nqueue-replicas = {}\ncache-eviction = \"{}\"\ncache-write-policy = \"{}\"\n"
    "cache-coherence-protocol = \"{}\"\nlog-level = \"{}\"\npeer-ping-ms = {}\npeer-suspect-ms = {}\n"
    "peer-down-ms = {}\nraft-tick-ms = {}\nraft-election-ticks = {}\nraft-heartbeat-ticks = {}\n"
    "raft-snapshot-entries = {}\nhttp-max-body-bytes = {}\nhttp-max-connections = {}\n",
    s.node_id, s.node_host, s.node_port, s.http_port, peers, s.cluster_id, s.join_existing ? "existing" : "new",
    s.data_dir, s.redis_host,
    s.redis_port, s.cache_size, s.queue_shards, s.queue_replicas,
    s.cache_lfu ? "lfu" : "lru", s.cache_write_through ? "write-through" : "write-back", to_string(s.protocol), to_string(s.level), s.peer_ping_ms,
    s.peer_suspect_ms, s.peer_down_ms, s.raft_tick_ms, s.raft_election_ticks, s.raft_heartbeat_ticks,
    s.raft_snapshot_entries, s.http_max_body_bytes, s.http_max_connections);
}

data_dir_lock prepare_data_dir(node_settings& s) {
  data_dir_lock out;
  auto fail = [&](std::string msg) {
    out.error = settings_error{std::move(msg)};
    return out;
  };
  struct stat st{};
  if (::stat(s.data_dir.c_str(), &st) != 0) {
    if (s.data_dir_explicit)
      return fail(fmt::format("DATA_DIR {} does not exist (create it first; dsync creates only its "
                              "default ./dsync-data/<node-id>)",
                              s.data_dir));
    std::string partial;
    std::istringstream parts{s.data_dir};
    std::string part;
    while (std::getline(parts, part, '/')) {
      partial += part;
      if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(fmt::format("cannot create data directory {}: {}", partial, std::strerror(errno)));
      partial += '/';
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return fail(fmt::format("DATA_DIR {} is not a directory", s.data_dir));
  }
  if (::access(s.data_dir.c_str(), W_OK | X_OK) != 0)
    return fail(fmt::format("DATA_DIR {} is not writable: {}", s.data_dir, std::strerror(errno)));
  auto lock_path = s.data_dir + "/LOCK";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(fmt::format("cannot open {}: {}", lock_path, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return fail(fmt::format("DATA_DIR {} is in use by another dsync-node (lock {} is held)",
                            s.data_dir, lock_path));
  }
  out.fd = fd;
  return out;
}

}  // namespace dsync
