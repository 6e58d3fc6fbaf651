// dsyncctl: the command-line client. Talks to one node over CAF (dsync::client).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsync/client.hpp"

namespace {

using json = nlohmann::json;

struct context {
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  std::chrono::milliseconds timeout{5000};
  bool as_json = false;
  bool stale = false;  // reads from the local replica instead of through the leader
  std::unique_ptr<dsync::client> client;
};

using command_fn = std::function<int(context&, const std::vector<std::string>&)>;

struct command {
  std::string usage;
  std::string help;
  command_fn run;
};

// Commands by their words ("cluster status"); `lock`, `queue` and `cache` join here.
std::map<std::string, command>& commands() {
  static std::map<std::string, command> table;
  return table;
}

int usage_error(const std::string& message) {
  std::cerr << "dsyncctl: " << message << "\n";
  std::cerr << "usage: dsyncctl [--node HOST:PORT] [--timeout MS] [--json] COMMAND [ARGS]\n"
               "       dsyncctl --help\n";
  return 2;
}

int print_help() {
  std::cout << "usage: dsyncctl [--node HOST:PORT] [--timeout MS] [--json] COMMAND [ARGS]\n\n"
               "  --node HOST:PORT   node API to talk to (default $DSYNC_NODE or 127.0.0.1:5000)\n"
               "  --timeout MS       give up on an answer after MS milliseconds (default 5000)\n"
               "  --json             print answers as JSON\n"
               "  --stale            read from the node's own replica (faster, may lag)\n\ncommands:\n";
  for (auto& [name, c] : commands()) std::cout << fmt::format("  {:<28} {}\n", c.usage, c.help);
  return 0;
}

int call_failed(context& ctx, const caf::error& err) {
  std::cerr << "dsyncctl: " << ctx.client->describe(err) << "\n";
  return 1;
}

std::string age(uint64_t then_ms) {
  if (then_ms == 0) return "never";
  auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  auto d = now > then_ms ? now - then_ms : 0;
  if (d < 10000) return fmt::format("{:.1f}s ago", d / 1000.0);
  return fmt::format("{}s ago", d / 1000);
}

void register_commands() {
  auto& t = commands();
  t["health"] = {"health", "is the node up", [](context& ctx, const std::vector<std::string>& args) {
                   if (!args.empty()) return usage_error("health takes no arguments");
                   auto r = ctx.client->health();
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << json{{"node", r->node_id}, {"status", r->status}}.dump() << "\n";
                   else std::cout << r->node_id << " " << r->status << "\n";
                   return 0;
                 }};
  t["kv put"] = {"kv put KEY VALUE", "write a key of the replicated store",
                 [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 2) return usage_error("kv put needs KEY VALUE");
                   auto r = ctx.client->put(args[0], args[1]);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << json{{"revision", *r}}.dump() << "\n";
                   else std::cout << "revision " << *r << "\n";
                   return 0;
                 }};
  t["kv get"] = {"kv get KEY", "read a key (linearizable unless --stale)",
                 [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 1) return usage_error("kv get needs KEY");
                   auto r = ctx.client->get(args[0], !ctx.stale);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json)
                     std::cout << json{{"key", r->key}, {"value", r->value}, {"revision", r->revision}}.dump() << "\n";
                   else std::cout << r->value << "\n";
                   return 0;
                 }};
  t["kv del"] = {"kv del KEY", "delete a key", [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 1) return usage_error("kv del needs KEY");
                   auto r = ctx.client->del(args[0]);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << json{{"revision", *r}}.dump() << "\n";
                   else std::cout << "revision " << *r << "\n";
                   return 0;
                 }};
  auto print_group = [](context& ctx, const dsync::group_status& g) {
    if (ctx.as_json) {
      std::cout << json{{"group", g.group}, {"leader", g.leader}, {"term", g.term}, {"voters", g.voters},
                        {"learners", g.learners}}
                     .dump()
                << "\n";
      return;
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (auto& x : v) out += (out.empty() ? "" : ",") + x;
      return out.empty() ? std::string{"-"} : out;
    };
    std::cout << "voters " << join(g.voters) << "  learners " << join(g.learners) << "\n";
  };
  t["member add"] = {"member add NODE_ID", "add a running node (CLUSTER_STATE=existing) as a voter",
                     [=](context& ctx, const std::vector<std::string>& args) {
                       if (args.size() != 1) return usage_error("member add needs NODE_ID");
                       auto r = ctx.client->add_member(args[0]);
                       if (!r) return call_failed(ctx, r.error());
                       print_group(ctx, *r);
                       return 0;
                     }};
  t["member remove"] = {"member remove NODE_ID", "remove a node from the cluster's voters",
                        [=](context& ctx, const std::vector<std::string>& args) {
                          if (args.size() != 1) return usage_error("member remove needs NODE_ID");
                          auto r = ctx.client->remove_member(args[0]);
                          if (!r) return call_failed(ctx, r.error());
                          print_group(ctx, *r);
                          return 0;
                        }};
  t["cluster status"] = {
    "cluster status", "members and their state as this node sees them",
    [](context& ctx, const std::vector<std::string>& args) {
      if (!args.empty()) return usage_error("cluster status takes no arguments");
      auto r = ctx.client->cluster();
      if (!r) return call_failed(ctx, r.error());
      if (ctx.as_json) {
        json members = json::array();
        for (auto& m : r->members)
          members.push_back({{"node_id", m.node_id}, {"address", m.address}, {"state", m.state},
                             {"reason", m.reason}, {"since_ms", m.since_ms},
                             {"last_contact_ms", m.last_contact_ms}, {"http_port", m.http_port}});
        std::cout << json{{"node", r->node_id}, {"cluster_id", r->cluster_id},
                          {"leader", r->leader}, {"term", r->term}, {"members", members}}
                       .dump()
                  << "\n";
        return 0;
      }
      std::cout << fmt::format("cluster {}  seen from {}  leader {}  term {}\n", r->cluster_id, r->node_id,
                               r->leader.empty() ? "-" : r->leader, r->term);
      std::cout << fmt::format("{:<16} {:<22} {:<11} {:<12} {:<13} {}\n", "NODE", "ADDRESS", "STATE", "SINCE",
                               "LAST CONTACT", "REASON");
      for (auto& m : r->members)
        std::cout << fmt::format("{:<16} {:<22} {:<11} {:<12} {:<13} {}\n",
                                 m.node_id.empty() ? "?" : m.node_id, m.address, m.state, age(m.since_ms),
                                 m.state == "self" ? "-" : age(m.last_contact_ms), m.reason);
      return 0;
    }};
}

bool parse_node(const std::string& text, context& ctx) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  auto port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  auto n = std::stoul(port);
  if (n == 0 || n > 65535) return false;
  ctx.host = text.substr(0, colon);
  ctx.port = static_cast<uint16_t>(n);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  register_commands();
  context ctx;
  if (const char* env = std::getenv("DSYNC_NODE"); env && !parse_node(env, ctx))
    return usage_error(fmt::format("DSYNC_NODE={} is not host:port", env));
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag) -> std::optional<std::string> {
      if (arg.rfind(flag + "=", 0) == 0) return arg.substr(flag.size() + 1);
      if (arg == flag && i + 1 < argc) return std::string{argv[++i]};
      return std::nullopt;
    };
    if (arg == "-h" || arg == "--help") return print_help();
    if (arg == "--json") {
      ctx.as_json = true;
    } else if (arg == "--stale") {
      ctx.stale = true;
    } else if (arg.rfind("--node", 0) == 0) {
      auto v = value("--node");
      if (!v || !parse_node(*v, ctx)) return usage_error("--node needs HOST:PORT");
    } else if (arg.rfind("--timeout", 0) == 0) {
      auto v = value("--timeout");
      if (!v || v->empty() || v->size() > 7 || v->find_first_not_of("0123456789") != std::string::npos
          || std::stoul(*v) == 0)
        return usage_error("--timeout needs a number of milliseconds (1..9999999)");
      ctx.timeout = std::chrono::milliseconds{std::stoul(*v)};
    } else if (arg.rfind("--", 0) == 0) {
      return usage_error("unknown option " + arg);
    } else {
      words.push_back(arg);
    }
  }
  if (words.empty()) return usage_error("no command given (see --help)");
  // The longest run of leading words that names a command; the rest are its arguments.
  for (size_t n = words.size(); n > 0; --n) {
    std::string name;
    for (size_t i = 0; i < n; ++i) name += (i ? " " : "") + words[i];
    auto c = commands().find(name);
    if (c == commands().end()) continue;
    auto client = dsync::client::connect(ctx.host, ctx.port, ctx.timeout);
    if (!client) {
      std::cerr << fmt::format("dsyncctl: cannot reach the node at {}:{}: {}\n", ctx.host, ctx.port,
                               caf::to_string(client.error()));
      return 1;
    }
    ctx.client = std::move(*client);
    return c->second.run(ctx, std::vector<std::string>(words.begin() + static_cast<long>(n), words.end()));
  }
  return usage_error("unknown command '" + words[0] + "' (see --help)");
}
