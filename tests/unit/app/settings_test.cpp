#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <unistd.h>

#include "app/settings.hpp"

using namespace dsync;

namespace {

std::map<std::string, std::string> files;  // what the fake file reader serves

std::optional<std::string> fake_reader(const std::string& path, std::string& why) {
  auto i = files.find(path);
  if (i == files.end()) {
    why = "No such file or directory";
    return std::nullopt;
  }
  return i->second;
}

parse_result parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  return parse_launch(args, env, fake_reader);
}

node_settings ok(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = parse(std::move(args), std::move(env));
  INFO((r.error ? r.error->message : std::string{}));
  REQUIRE(r.plan);
  REQUIRE_FALSE(r.error);
  return r.plan->settings;
}

std::string error_of(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = parse(std::move(args), std::move(env));
  REQUIRE(r.error);
  REQUIRE_FALSE(r.plan);
  return r.error->message;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* const cluster3 = R"(; three nodes on one host
cluster-id = "test-3"
cache-coherence-protocol = "MOESI"

[members]
node-1 = "127.0.0.1:5000"
node-2 = "127.0.0.1:5001"  ; trailing comment
node-3 = '127.0.0.1:5002'

[middleman]
heartbeat-interval = 100ms
)";

}  // namespace

TEST_CASE("the original design's launch line gives a node with its peers and derived HTTP port") {
  auto s = ok({}, {{"NODE_ID", "node-1"}, {"NODE_PORT", "5000"},
                   {"CLUSTER_NODES", "localhost:5001,localhost:5002"}});
  CHECK(s.node_id == "node-1");
  CHECK(s.node_port == 5000);
  CHECK(s.http_port == 6000);
  REQUIRE(s.cluster_nodes.size() == 2);
  CHECK(s.cluster_nodes[0].to_string() == "localhost:5001");
  CHECK(s.cluster_nodes[1].to_string() == "localhost:5002");
  CHECK(s.data_dir == "dsync-data/node-1");
  CHECK_FALSE(s.data_dir_explicit);
  CHECK(s.protocol == coherence_protocol::mesi);
  CHECK(s.level == log_level::info);
}

TEST_CASE("precedence: defaults < config file < environment < flags") {
  files["/c.ini"] = "node-id = \"file\"\nredis-port = 7001\ncache-size = 10\nlog-level = debug\n";
  auto from_file = ok({"--config-file=/c.ini"});
  CHECK(from_file.node_id == "file");
  CHECK(from_file.redis_port == 7001);
  CHECK(from_file.cache_size == 10);
  CHECK(from_file.level == log_level::debug);
  auto from_env = ok({"--config-file=/c.ini"}, {{"REDIS_PORT", "7002"}, {"CACHE_SIZE", "20"}});
  CHECK(from_env.redis_port == 7002);
  CHECK(from_env.cache_size == 20);
  auto from_flag = ok({"--config-file", "/c.ini", "--redis-port=7003", "--cache-size", "30"},
                      {{"REDIS_PORT", "7002"}, {"CACHE_SIZE", "20"}});
  CHECK(from_flag.redis_port == 7003);
  CHECK(from_flag.cache_size == 30);
  CHECK(from_flag.node_id == "file");
}

TEST_CASE("every setting is read from its environment variable") {
  auto s = ok({}, {{"NODE_ID", "n.1_a-b"}, {"NODE_HOST", "localhost"}, {"NODE_PORT", "7000"},
                   {"HTTP_PORT", "7100"}, {"CLUSTER_ID", "prod"}, {"DATA_DIR", "/var/lib/dsync"},
                   {"REDIS_HOST", "10.0.0.5"}, {"REDIS_PORT", "6380"}, {"CACHE_SIZE", "5"},
                   {"CACHE_COHERENCE_PROTOCOL", "mosi"}, {"LOG_LEVEL", "WARN"}, {"PEER_PING_MS", "100"},
                   {"PEER_SUSPECT_MS", "500"}, {"PEER_DOWN_MS", "900"}, {"HTTP_MAX_BODY_BYTES", "4096"},
                   {"HTTP_MAX_CONNECTIONS", "3"}, {"RAFT_TICK_MS", "10"}, {"RAFT_ELECTION_TICKS", "20"},
                   {"RAFT_HEARTBEAT_TICKS", "3"}, {"RAFT_SNAPSHOT_ENTRIES", "500"}, {"QUEUE_SHARDS", "8"},
                   {"QUEUE_REPLICAS", "5"}, {"CACHE_EVICTION", "LFU"}, {"CACHE_WRITE_POLICY", "write-through"}});
  CHECK(s.node_id == "n.1_a-b");
  CHECK(s.node_host == "localhost");
  CHECK(s.node_port == 7000);
  CHECK(s.http_port == 7100);
  CHECK(s.cluster_id == "prod");
  CHECK(s.data_dir == "/var/lib/dsync");
  CHECK(s.data_dir_explicit);
  CHECK(s.redis_host == "10.0.0.5");
  CHECK(s.redis_port == 6380);
  CHECK(s.cache_size == 5);
  CHECK(s.protocol == coherence_protocol::mosi);
  CHECK(s.level == log_level::warn);
  CHECK(s.peer_ping_ms == 100);
  CHECK(s.peer_suspect_ms == 500);
  CHECK(s.peer_down_ms == 900);
  CHECK(s.http_max_body_bytes == 4096);
  CHECK(s.http_max_connections == 3);
  CHECK(s.raft_tick_ms == 10);
  CHECK(s.raft_election_ticks == 20);
  CHECK(s.raft_heartbeat_ticks == 3);
  CHECK(s.raft_snapshot_entries == 500);
  CHECK(s.queue_shards == 8);
  CHECK(s.queue_replicas == 5);
  CHECK(s.cache_lfu);
  CHECK(s.cache_write_through);
  CHECK_FALSE(s.join_existing);
  CHECK(ok({}, {{"NODE_ID", "n"}, {"CLUSTER_STATE", "existing"}}).join_existing);
}

TEST_CASE("a cluster file lists every member; NODE_ID picks this node's entry") {
  files["/cluster-3.ini"] = cluster3;
  auto r = parse({"--config-file=/cluster-3.ini"}, {{"NODE_ID", "node-2"}});
  REQUIRE(r.plan);
  auto& s = r.plan->settings;
  CHECK(s.cluster_id == "test-3");
  CHECK(s.protocol == coherence_protocol::moesi);
  CHECK(s.node_port == 5001);
  CHECK(s.http_port == 6001);
  REQUIRE(s.cluster_nodes.size() == 2);
  CHECK(s.cluster_nodes[0].to_string() == "127.0.0.1:5000");
  CHECK(s.cluster_nodes[1].to_string() == "127.0.0.1:5002");
  // CAF's own sections are handed to CAF's parser.
  REQUIRE(r.plan->caf_args.size() == 1);
  CHECK(r.plan->caf_args[0] == "--middleman.heartbeat-interval=100ms");
}

TEST_CASE("cluster file errors name the file, the line and the member") {
  files["/cluster-3.ini"] = cluster3;
  CHECK(contains(error_of({"--config-file=/cluster-3.ini"}, {{"NODE_ID", "node-9"}}),
                 "NODE_ID node-9 is not listed in [members] of /cluster-3.ini (node-1, node-2, node-3)"));
  CHECK(contains(error_of({"--config-file=/cluster-3.ini"}, {{"NODE_ID", "node-1"}, {"CLUSTER_NODES", "h:1"}}),
                 "do not set CLUSTER_NODES as well"));
  CHECK(contains(error_of({"--config-file=/cluster-3.ini"}, {{"NODE_ID", "node-1"}, {"NODE_PORT", "5009"}}),
                 "disagree with member node-1"));
  files["/dup.ini"] = "[members]\nnode-1 = \"h:1\"\nnode-1 = \"h:2\"\n";
  CHECK(contains(error_of({"--config-file=/dup.ini"}, {{"NODE_ID", "node-1"}}),
                 "/dup.ini line 3: member node-1 is listed twice"));
  files["/same.ini"] = "[members]\nnode-1 = \"localhost:1\"\nnode-2 = \"127.0.0.1:1\"\n";
  CHECK(contains(error_of({"--config-file=/same.ini"}, {{"NODE_ID", "node-1"}}),
                 "line 3: member node-2 reuses the address 127.0.0.1:1"));
  files["/badaddr.ini"] = "[members]\nnode-1 = \"nohostport\"\n";
  CHECK(contains(error_of({"--config-file=/badaddr.ini"}, {{"NODE_ID", "node-1"}}),
                 "line 2: member node-1: 'nohostport' is not host:port"));
}

TEST_CASE("control characters that an error quotes are escaped: it stays one line") {
  files["/cr.ini"] = "log-\rlevel = info\n";
  CHECK(error_of({"--config-file=/cr.ini"}) ==
        "config file /cr.ini line 1: unknown setting 'log-\\x0dlevel' (see --help for the list)");
  CHECK(contains(error_of({"--redis-port=63\n79"}), "63\\x0a79: not a port number"));
}

TEST_CASE("config file syntax errors name the file and line") {
  files["/a.ini"] = "node-id = x\nbogus-key = 1\n";
  CHECK(error_of({"--config-file=/a.ini"}) ==
        "config file /a.ini line 2: unknown setting 'bogus-key' (see --help for the list)");
  files["/b.ini"] = "[nope]\n";
  CHECK(contains(error_of({"--config-file=/b.ini"}), "line 1: unknown section [nope]"));
  files["/c.ini"] = "[members\n";
  CHECK(contains(error_of({"--config-file=/c.ini"}), "line 1: a section header must end with ']'"));
  files["/d.ini"] = "node-id\n";
  CHECK(contains(error_of({"--config-file=/d.ini"}), "line 1: 'node-id' is not key=value"));
  files["/e.ini"] = "node-id = \"unterminated\n";
  CHECK(contains(error_of({"--config-file=/e.ini"}), "line 1: node-id: a quoted value must end with its quote"));
  files["/f.ini"] = "cluster-nodes = [\"a:1\", \"b:2\"\n";
  CHECK(contains(error_of({"--config-file=/f.ini"}), "a list must end with ']'"));
  files["/g.ini"] = "node-id = n1\nnode-port = 0\n";
  CHECK(error_of({"--config-file=/g.ini"}) ==
        "/g.ini line 2 (node-port)=0: not a port number (expected 1..65535)");
  CHECK(contains(error_of({"--config-file=/missing.ini"}),
                 "cannot read config file /missing.ini: No such file or directory"));
  files["/h.ini"] = "[members]\nbad name = \"h:1\"\n";
  CHECK(contains(error_of({"--config-file=/h.ini"}), "'bad name' is not a node name"));
}

TEST_CASE("a list in the config file is read like a comma-separated value") {
  files["/l.ini"] = "node-id = n1\ncluster-nodes = [\"a:1\", 'b:2']\n";
  auto s = ok({"--config-file=/l.ini"});
  REQUIRE(s.cluster_nodes.size() == 2);
  CHECK(s.cluster_nodes[1].to_string() == "b:2");
}

TEST_CASE("bad values name the variable, the value and what is expected") {
  std::map<std::string, std::string> base{{"NODE_ID", "n1"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto env = base;
    env[k] = v;
    return error_of({}, env);
  };
  CHECK(with("NODE_PORT", "abc") == "environment variable NODE_PORT=abc: not a port number (expected 1..65535)");
  CHECK(contains(with("NODE_PORT", "0"), "not a port number"));
  CHECK(contains(with("NODE_PORT", "65536"), "not a port number"));
  CHECK(contains(with("NODE_PORT", "-1"), "not a port number"));
  CHECK(contains(with("NODE_PORT", ""), "not a port number"));
  CHECK(contains(with("HTTP_PORT", "99999999999999999999999"), "HTTP_PORT"));
  CHECK(contains(with("REDIS_PORT", "x"), "REDIS_PORT=x: not a port number"));
  CHECK(contains(with("CACHE_SIZE", "0"), "CACHE_SIZE=0: out of range (expected 1..100000000)"));
  CHECK(contains(with("CACHE_SIZE", "12k"), "not a whole number"));
  CHECK(contains(with("CACHE_COHERENCE_PROTOCOL", "MOXI"),
                 "'MOXI' is not a coherence protocol (expected MESI, MOSI or MOESI)"));
  CHECK(contains(with("LOG_LEVEL", "loud"), "'loud' is not a log level"));
  CHECK(contains(with("NODE_ID", "a b"), "'a b' is not a node name"));
  CHECK(contains(with("NODE_ID", std::string(65, 'x')), "is not a node name"));
  CHECK(contains(with("NODE_HOST", "bad host"), "'bad host' is not a host name"));
  CHECK(contains(with("REDIS_HOST", ""), "REDIS_HOST=: '' is not a host name"));
  CHECK(contains(with("CLUSTER_ID", "a/b"), "'a/b' is not a cluster name"));
  CHECK(contains(with("DATA_DIR", ""), "DATA_DIR=: is empty"));
  CHECK(contains(with("PEER_PING_MS", "5"), "PEER_PING_MS=5: out of range (expected 10..10000)"));
  CHECK(contains(with("PEER_SUSPECT_MS", "10"), "out of range"));
  CHECK(contains(with("PEER_DOWN_MS", "1"), "out of range"));
  CHECK(contains(with("HTTP_MAX_BODY_BYTES", "10"), "out of range (expected 1024..67108864)"));
  CHECK(contains(with("HTTP_MAX_CONNECTIONS", "0"), "out of range (expected 1..1000000)"));
  CHECK(contains(with("CLUSTER_STATE", "old"), "'old' is not a cluster state (expected new or existing)"));
  CHECK(contains(with("RAFT_TICK_MS", "0"), "RAFT_TICK_MS=0: out of range (expected 1..1000)"));
  CHECK(contains(with("RAFT_ELECTION_TICKS", "2"), "out of range (expected 3..1000)"));
  CHECK(contains(with("RAFT_HEARTBEAT_TICKS", "x"), "not a whole number"));
  CHECK(contains(with("RAFT_SNAPSHOT_ENTRIES", "5"), "out of range (expected 100..100000000)"));
}

TEST_CASE("CLUSTER_NODES errors: syntax, duplicates, this node itself") {
  std::map<std::string, std::string> env{{"NODE_ID", "n1"}, {"NODE_PORT", "5000"}};
  auto with = [&](const std::string& nodes) {
    auto e = env;
    e["CLUSTER_NODES"] = nodes;
    return error_of({}, e);
  };
  CHECK(contains(with("localhost"), "'localhost' is not host:port"));
  CHECK(contains(with("a:1,:2"), "':2' is not host:port"));
  CHECK(contains(with("a:x"), "'a:x' has an invalid port"));
  CHECK(contains(with("a:0"), "'a:0' has an invalid port"));
  CHECK(contains(with("a b:1"), "has an invalid host name"));
  CHECK(contains(with("a:1,a:1"), "lists a:1 twice"));
  CHECK(contains(with("localhost:1,127.0.0.1:1"), "lists 127.0.0.1:1 twice"));
  CHECK(with("localhost:5000,b:1") ==
        "CLUSTER_NODES lists this node itself (localhost:5000); list only the other members");
  CHECK(contains(with("127.0.0.1:5001,127.0.0.1:6000"), "HTTP_PORT 6000 is the CAF port of member 127.0.0.1:6000"));
  auto e = env;
  e["CLUSTER_NODES"] = "";
  CHECK(ok({}, e).cluster_nodes.empty());
}

TEST_CASE("cross-setting rules") {
  CHECK(error_of({}) == "NODE_ID is required: set NODE_ID, --node-id or node-id in the config file");
  CHECK(error_of({}, {{"NODE_ID", "n"}, {"NODE_PORT", "64600"}}) ==
        "HTTP_PORT defaults to NODE_PORT + 1000 = 65600, which is not a port; set HTTP_PORT");
  CHECK(ok({}, {{"NODE_ID", "n"}, {"NODE_PORT", "64600"}, {"HTTP_PORT", "64601"}}).http_port == 64601);
  CHECK(error_of({}, {{"NODE_ID", "n"}, {"NODE_PORT", "7000"}, {"HTTP_PORT", "7000"}}) ==
        "HTTP_PORT and NODE_PORT are both 7000; they must differ");
  CHECK(contains(error_of({}, {{"NODE_ID", "n"}, {"PEER_SUSPECT_MS", "5000"}}),
                 "PEER_PING_MS < PEER_SUSPECT_MS < PEER_DOWN_MS (got 200 / 5000 / 3000)"));
  CHECK(contains(error_of({}, {{"NODE_ID", "n"}, {"PEER_PING_MS", "1000"}}), "PEER_PING_MS < PEER_SUSPECT_MS"));
  CHECK(error_of({}, {{"NODE_ID", "n"}, {"RAFT_HEARTBEAT_TICKS", "10"}}) ==
        "RAFT_HEARTBEAT_TICKS (10) must be below RAFT_ELECTION_TICKS (10)");
}

TEST_CASE("command-line errors") {
  CHECK(error_of({"--bogus=1"}) == "unknown option --bogus (see --help)");
  CHECK(error_of({"stray"}) == "unexpected argument 'stray' (see --help)");
  CHECK(error_of({"--node-id"}) == "option --node-id needs a value (--node-id=VALUE)");
  CHECK(error_of({"--node-id", "--node-port=1"}) == "option --node-id needs a value (--node-id=VALUE)");
  CHECK(error_of({"--config-file="}) == "option --config-file needs a path");
  CHECK(error_of({"--node-id=n", "--node-port=x"}) == "option --node-port=x: not a port number (expected 1..65535)");
}

TEST_CASE("CAF options pass through, help and version need no other setting") {
  auto r = parse({"--node-id=n", "--scheduler.max-threads=1", "--middleman.heartbeat-interval", "50ms"});
  REQUIRE(r.plan);
  CHECK(r.plan->caf_args == std::vector<std::string>{"--scheduler.max-threads=1", "--middleman.heartbeat-interval=50ms"});
  CHECK(parse({"--help"}).plan->action == launch_action::help);
  CHECK(parse({"-h"}).plan->action == launch_action::help);
  CHECK(parse({"--version"}).plan->action == launch_action::version);
  CHECK(parse({"--dump-config", "--node-id=n"}).plan->action == launch_action::dump_config);
}

TEST_CASE("help lists every setting with its environment variable; dump reproduces the settings") {
  auto help = settings_help("dsync-node");
  for (auto* env : {"NODE_ID", "NODE_HOST", "NODE_PORT", "HTTP_PORT", "CLUSTER_NODES", "CLUSTER_ID", "CLUSTER_STATE",
                    "DATA_DIR", "REDIS_HOST", "REDIS_PORT", "CACHE_SIZE", "QUEUE_SHARDS", "QUEUE_REPLICAS",
                    "CACHE_COHERENCE_PROTOCOL", "CACHE_EVICTION", "CACHE_WRITE_POLICY", "LOG_LEVEL", "PEER_PING_MS",
                    "PEER_SUSPECT_MS", "PEER_DOWN_MS", "RAFT_TICK_MS", "RAFT_ELECTION_TICKS", "RAFT_HEARTBEAT_TICKS",
                    "RAFT_SNAPSHOT_ENTRIES", "HTTP_MAX_BODY_BYTES", "HTTP_MAX_CONNECTIONS"})
    CHECK_MESSAGE(contains(help, env), env);
  CHECK(contains(help, "NODE_PORT + 1000"));
  // Every setting away from its default, so that one the file reader dropped would show.
  auto original = ok({}, {{"NODE_ID", "n1"}, {"NODE_HOST", "10.1.2.3"}, {"NODE_PORT", "7000"}, {"HTTP_PORT", "7100"},
                          {"CLUSTER_NODES", "a:1,b:2"}, {"CLUSTER_ID", "prod"}, {"CLUSTER_STATE", "existing"},
                          {"DATA_DIR", "/d"}, {"REDIS_HOST", "10.0.0.5"}, {"REDIS_PORT", "6380"}, {"CACHE_SIZE", "5"},
                          {"QUEUE_SHARDS", "8"}, {"QUEUE_REPLICAS", "5"}, {"CACHE_COHERENCE_PROTOCOL", "MOSI"},
                          {"CACHE_EVICTION", "lfu"}, {"CACHE_WRITE_POLICY", "write-through"}, {"LOG_LEVEL", "warn"},
                          {"PEER_PING_MS", "100"}, {"PEER_SUSPECT_MS", "500"}, {"PEER_DOWN_MS", "900"},
                          {"RAFT_TICK_MS", "10"}, {"RAFT_ELECTION_TICKS", "20"}, {"RAFT_HEARTBEAT_TICKS", "3"},
                          {"RAFT_SNAPSHOT_ENTRIES", "500"}, {"HTTP_MAX_BODY_BYTES", "4096"},
                          {"HTTP_MAX_CONNECTIONS", "3"}});
  files["/dump.ini"] = dump_settings(original);
  auto again = ok({"--config-file=/dump.ini"});
  CHECK(dump_settings(again) == dump_settings(original));
  CHECK(dump_settings(again) != dump_settings(ok({}, {{"NODE_ID", "n1"}})));
  CHECK(again.queue_shards == 8);
  CHECK(again.queue_replicas == 5);
  CHECK(again.cache_lfu);
  CHECK(again.cache_write_through);
  CHECK(again.protocol == coherence_protocol::mosi);
  CHECK(again.raft_snapshot_entries == 500);
  CHECK(again.http_max_connections == 3);
}

TEST_CASE("data directory: default created, explicit must exist, one node per directory") {
  auto base = std::filesystem::temp_directory_path() / ("dsync-settings-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  node_settings s;
  s.node_id = "n1";
  s.data_dir = (base / "default" / "n1").string();
  auto first = prepare_data_dir(s);
  REQUIRE_FALSE(first.error);
  CHECK(std::filesystem::is_directory(s.data_dir));
  auto second = prepare_data_dir(s);
  REQUIRE(second.error);
  CHECK(contains(second.error->message, "is in use by another dsync-node"));
  ::close(first.fd);

  node_settings missing = s;
  missing.data_dir = (base / "nope").string();
  missing.data_dir_explicit = true;
  auto r = prepare_data_dir(missing);
  REQUIRE(r.error);
  CHECK(contains(r.error->message, "does not exist"));

  node_settings file = s;
  file.data_dir = (base / "afile").string();
  file.data_dir_explicit = true;
  { std::FILE* f = std::fopen(file.data_dir.c_str(), "w"); std::fclose(f); }
  r = prepare_data_dir(file);
  REQUIRE(r.error);
  CHECK(contains(r.error->message, "is not a directory"));
  std::filesystem::remove_all(base);
}
