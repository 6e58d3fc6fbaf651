// dsyncctl: the command-line client. Talks to one node over CAF (dsync::client).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsync/client.hpp"

namespace {

using json = nlohmann::json;

// JSON output. Keys, values and names are bytes to dsync: any that are not UTF-8 are replaced.
std::string text(const json& j, int indent = -1) { return j.dump(indent, ' ', false, json::error_handler_t::replace); }

struct context {
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  std::chrono::milliseconds timeout{5000};
  bool as_json = false;
  bool stale = false;  // reads from the local replica instead of through the leader
  // Lock options.
  std::string lock_client;  // --client, default $DSYNC_CLIENT
  std::string lock_mode = "exclusive";
  uint64_t wait_ms = 0;
  uint64_t ttl_ms = 10000;
  // Queue options.
  std::string consumer;
  uint64_t max = 1;
  uint64_t visibility_ms = 30000;
  uint64_t delay_ms = 0;
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
               "  --stale            read from the node's own replica (faster, may lag)\n"
               "  --client ID        lock holder id (default $DSYNC_CLIENT; lock run: host-pid)\n"
               "  --mode MODE        lock mode: exclusive (default) or shared\n"
               "  --wait MS          how long acquire waits for the lock (default 0: try once;\n"
               "                     lock run: 60000)\n"
               "  --ttl MS           lease of a grant (default 10000)\n"
               "  --consumer ID      queue consumer name (queue pop)\n"
               "  --max N            messages per queue pop (default 1), or per redrive\n"
               "  --visibility MS    how long popped messages stay invisible (default 30000)\n"
               "  --delay MS         queue nack: ready again after MS (default 0)\n\ncommands:\n";
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

std::string need_client(context& ctx) {
  if (!ctx.lock_client.empty()) return ctx.lock_client;
  if (const char* env = std::getenv("DSYNC_CLIENT"); env && *env) return env;
  return {};
}

void print_grant(context& ctx, const dsync::lock_grant& g) {
  if (ctx.as_json)
    std::cout << text(json{{"lock", g.lock}, {"client", g.client}, {"mode", g.mode}, {"token", g.token},
                      {"ttl_ms", g.ttl_ms}, {"expires_in_ms", g.expires_in_ms}})
              << "\n";
  else
    std::cout << fmt::format("{} held by {} ({}) token {} expires in {} ms\n", g.lock, g.client, g.mode, g.token,
                             g.expires_in_ms);
}

void register_lock_commands();
void register_queue_commands();
void register_cache_commands();

void register_commands() {
  register_lock_commands();
  register_queue_commands();
  register_cache_commands();
  auto& t = commands();
  t["health"] = {"health", "is the node up", [](context& ctx, const std::vector<std::string>& args) {
                   if (!args.empty()) return usage_error("health takes no arguments");
                   auto r = ctx.client->health();
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << text(json{{"node", r->node_id}, {"status", r->status}}) << "\n";
                   else std::cout << r->node_id << " " << r->status << "\n";
                   return 0;
                 }};
  t["kv put"] = {"kv put KEY VALUE", "write a key of the replicated store",
                 [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 2) return usage_error("kv put needs KEY VALUE");
                   auto r = ctx.client->put(args[0], args[1]);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << text(json{{"revision", *r}}) << "\n";
                   else std::cout << "revision " << *r << "\n";
                   return 0;
                 }};
  t["kv get"] = {"kv get KEY", "read a key (linearizable unless --stale)",
                 [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 1) return usage_error("kv get needs KEY");
                   auto r = ctx.client->get(args[0], !ctx.stale);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json)
                     std::cout << text(json{{"key", r->key}, {"value", r->value}, {"revision", r->revision}}) << "\n";
                   else std::cout << r->value << "\n";
                   return 0;
                 }};
  t["kv del"] = {"kv del KEY", "delete a key", [](context& ctx, const std::vector<std::string>& args) {
                   if (args.size() != 1) return usage_error("kv del needs KEY");
                   auto r = ctx.client->del(args[0]);
                   if (!r) return call_failed(ctx, r.error());
                   if (ctx.as_json) std::cout << text(json{{"revision", *r}}) << "\n";
                   else std::cout << "revision " << *r << "\n";
                   return 0;
                 }};
  auto print_group = [](context& ctx, const dsync::group_status& g) {
    if (ctx.as_json) {
      std::cout << text(json{{"group", g.group}, {"leader", g.leader}, {"term", g.term}, {"voters", g.voters},
                        {"learners", g.learners}})
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
        std::cout << text(json{{"node", r->node_id}, {"cluster_id", r->cluster_id},
                          {"leader", r->leader}, {"term", r->term}, {"members", members}})
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

// Set by SIGINT/SIGTERM while `lock run` waits for its command.
volatile std::sig_atomic_t stop_requested = 0;

// `lock run`: holds the lock (refreshing it at a third of its lease) while COMMAND runs,
// then releases it and exits with the command's status. If the lease is lost, the command
// is stopped (SIGTERM) and lock run exits 1: its work is no longer protected.
int run_locked(context& ctx, const std::string& name, const std::string& client, std::vector<std::string> argv) {
  auto g = ctx.client->acquire_lock(name, client, ctx.lock_mode, std::chrono::milliseconds(ctx.wait_ms),
                                    std::chrono::milliseconds(ctx.ttl_ms));
  if (!g) return call_failed(ctx, g.error());
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  auto token = std::to_string(g->token);
  pid_t child = ::fork();
  if (child < 0) {
    std::cerr << "dsyncctl: fork: " << std::strerror(errno) << "\n";
    ctx.client->release_lock(name, client);
    return 1;
  }
  if (child == 0) {
    ::setenv("DSYNC_LOCK_NAME", name.c_str(), 1);
    ::setenv("DSYNC_LOCK_CLIENT", client.c_str(), 1);
    ::setenv("DSYNC_LOCK_TOKEN", token.c_str(), 1);
    ::execvp(args[0], args.data());
    std::cerr << "dsyncctl: cannot run " << argv[0] << ": " << std::strerror(errno) << "\n";
    std::_Exit(127);
  }
  struct sigaction on_stop {};
  on_stop.sa_handler = [](int) { stop_requested = 1; };
  ::sigaction(SIGINT, &on_stop, nullptr);
  ::sigaction(SIGTERM, &on_stop, nullptr);
  auto refresh_every = std::chrono::milliseconds(std::max<uint64_t>(ctx.ttl_ms / 3, 10));
  auto next_refresh = std::chrono::steady_clock::now() + refresh_every;
  bool lost = false;
  int status = 0;
  for (;;) {
    auto done = ::waitpid(child, &status, WNOHANG);
    if (done == child) break;
    if (stop_requested) {
      ::kill(child, SIGTERM);
      stop_requested = 0;
    }
    if (!lost && std::chrono::steady_clock::now() >= next_refresh) {
      auto r = ctx.client->refresh_lock(name, client);
      if (r) {
        next_refresh = std::chrono::steady_clock::now() + refresh_every;
      } else if (r.error() == dsync::errc::not_held) {
        std::cerr << "dsyncctl: lost lock " << name << " (lease lapsed); stopping the command\n";
        lost = true;
        ::kill(child, SIGTERM);
      } else {
        // Unavailable for now (an election): try again soon, within the lease.
        next_refresh = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!lost) {
    auto r = ctx.client->release_lock(name, client);
    if (!r) std::cerr << "dsyncctl: releasing " << name << ": " << ctx.client->describe(r.error()) << "\n";
  }
  if (lost) return 1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void register_lock_commands() {
  auto& t = commands();
  auto named = [](const std::vector<std::string>& args) -> std::optional<std::string> {
    if (args.size() != 1) return std::nullopt;
    return args[0];
  };
  t["lock acquire"] = {"lock acquire NAME", "take a lock (--client, --mode, --wait, --ttl)",
                       [=](context& ctx, const std::vector<std::string>& args) {
                         auto name = named(args);
                         if (!name) return usage_error("lock acquire needs NAME");
                         auto client = need_client(ctx);
                         if (client.empty()) return usage_error("lock acquire needs --client ID (or $DSYNC_CLIENT)");
                         auto g = ctx.client->acquire_lock(*name, client, ctx.lock_mode,
                                                           std::chrono::milliseconds(ctx.wait_ms),
                                                           std::chrono::milliseconds(ctx.ttl_ms));
                         if (!g) return call_failed(ctx, g.error());
                         print_grant(ctx, *g);
                         return 0;
                       }};
  t["lock release"] = {"lock release NAME", "give a lock back (or stop waiting for it)",
                       [=](context& ctx, const std::vector<std::string>& args) {
                         auto name = named(args);
                         if (!name) return usage_error("lock release needs NAME");
                         auto client = need_client(ctx);
                         if (client.empty()) return usage_error("lock release needs --client ID (or $DSYNC_CLIENT)");
                         auto r = ctx.client->release_lock(*name, client);
                         if (!r) return call_failed(ctx, r.error());
                         if (ctx.as_json) std::cout << text(json{{"released", *r}, {"cancelled_wait", !*r}}) << "\n";
                         else std::cout << (*r ? "released " : "stopped waiting for ") << *name << "\n";
                         return 0;
                       }};
  t["lock refresh"] = {"lock refresh NAME", "renew the lease of a held lock",
                       [=](context& ctx, const std::vector<std::string>& args) {
                         auto name = named(args);
                         if (!name) return usage_error("lock refresh needs NAME");
                         auto client = need_client(ctx);
                         if (client.empty()) return usage_error("lock refresh needs --client ID (or $DSYNC_CLIENT)");
                         auto g = ctx.client->refresh_lock(*name, client);
                         if (!g) return call_failed(ctx, g.error());
                         print_grant(ctx, *g);
                         return 0;
                       }};
  t["lock status"] = {"lock status NAME", "holders (with tokens and leases) and waiters",
                      [=](context& ctx, const std::vector<std::string>& args) {
                        auto name = named(args);
                        if (!name) return usage_error("lock status needs NAME");
                        auto r = ctx.client->lock_status(*name, !ctx.stale);
                        if (!r) return call_failed(ctx, r.error());
                        if (ctx.as_json) {
                          json holders = json::array();
                          for (auto& h : r->holders)
                            holders.push_back({{"client", h.client}, {"mode", h.mode}, {"token", h.token},
                                               {"ttl_ms", h.ttl_ms}, {"expires_in_ms", h.expires_in_ms}});
                          json waiters = json::array();
                          for (auto& w : r->waiters)
                            waiters.push_back({{"client", w.client}, {"mode", w.mode}, {"upgrade", w.upgrade},
                                               {"gives_up_in_ms", w.gives_up_in_ms}});
                          std::cout << text(json{{"lock", r->lock}, {"mode", r->mode}, {"holders", holders},
                                            {"waiters", waiters}})
                                    << "\n";
                          return 0;
                        }
                        std::cout << r->lock << ": " << r->mode << "\n";
                        for (auto& h : r->holders)
                          std::cout << fmt::format("  held by {} ({}) token {} expires in {} ms\n", h.client, h.mode,
                                                   h.token, h.expires_in_ms);
                        for (auto& w : r->waiters)
                          std::cout << fmt::format("  waiting: {} ({}{}) gives up in {} ms\n", w.client, w.mode,
                                                   w.upgrade ? ", upgrade" : "", w.gives_up_in_ms);
                        return 0;
                      }};
  t["lock run"] = {"lock run NAME -- COMMAND...", "run COMMAND while holding the lock (like etcdctl lock)",
                   [=](context& ctx, const std::vector<std::string>& args) {
                     if (args.size() < 3 || args[1] != "--") return usage_error("lock run needs NAME -- COMMAND [ARGS]");
                     auto client = need_client(ctx);
                     if (client.empty()) {
                       char host[256] = {};
                       ::gethostname(host, sizeof host - 1);
                       client = fmt::format("{}-{}", host, ::getpid());
                     }
                     return run_locked(ctx, args[0], client, std::vector<std::string>(args.begin() + 2, args.end()));
                   }};
}

// A receipt argument: digits, or nothing for "the current delivery".
std::optional<uint64_t> parse_receipt(const std::vector<std::string>& args, size_t at) {
  if (args.size() <= at) return 0;
  auto& v = args[at];
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoull(v);
}

void register_queue_commands() {
  auto& t = commands();
  t["queue push"] = {"queue push QUEUE PAYLOAD", "enqueue (PAYLOAD: JSON, or text stored as a JSON string)",
                     [](context& ctx, const std::vector<std::string>& args) {
                       if (args.size() != 2) return usage_error("queue push needs QUEUE PAYLOAD");
                       auto parsed = json::parse(args[1], nullptr, false);
                       std::string payload;
                       try {
                         // Text that is not JSON travels as a JSON string; it must be UTF-8 then.
                         payload = parsed.is_discarded() ? json(args[1]).dump() : parsed.dump();
                       } catch (const json::exception&) {
                         return usage_error("queue push: PAYLOAD is neither JSON nor UTF-8 text");
                       }
                       auto id = ctx.client->enqueue(args[0], payload);
                       if (!id) return call_failed(ctx, id.error());
                       if (ctx.as_json) std::cout << text(json{{"id", *id}}) << "\n";
                       else std::cout << *id << "\n";
                       return 0;
                     }};
  t["queue pop"] = {"queue pop QUEUE", "dequeue (--consumer, --max, --visibility, --wait)",
                    [](context& ctx, const std::vector<std::string>& args) {
                      if (args.size() != 1) return usage_error("queue pop needs QUEUE");
                      auto got = ctx.client->dequeue(args[0], ctx.consumer, ctx.max,
                                                     std::chrono::milliseconds(ctx.visibility_ms),
                                                     std::chrono::milliseconds(ctx.wait_ms));
                      if (!got) return call_failed(ctx, got.error());
                      json out = json::array();
                      for (auto& m : *got) {
                        auto p = json::parse(m.payload, nullptr, false);
                        out.push_back({{"id", m.id}, {"receipt", m.receipt}, {"payload", p.is_discarded() ? json(m.payload) : p},
                                       {"deliveries", m.deliveries}});
                      }
                      if (ctx.as_json) std::cout << text(json{{"messages", out}}) << "\n";
                      else
                        for (auto& m : out)
                          std::cout << fmt::format("{} receipt {} deliveries {}: {}\n", m["id"].get<std::string>(),
                                                   m["receipt"].get<uint64_t>(), m["deliveries"].get<uint64_t>(),
                                                   text(m["payload"]));
                      return 0;
                    }};
  t["queue ack"] = {"queue ack QUEUE ID [RECEIPT]", "delete a delivered message",
                    [](context& ctx, const std::vector<std::string>& args) {
                      auto receipt = parse_receipt(args, 2);
                      if (args.size() < 2 || args.size() > 3 || !receipt)
                        return usage_error("queue ack needs QUEUE ID [RECEIPT]");
                      auto r = ctx.client->acknowledge(args[0], args[1], *receipt);
                      if (!r) return call_failed(ctx, r.error());
                      std::cout << (ctx.as_json ? text(json{{"acked", true}}) : "acked " + args[1]) << "\n";
                      return 0;
                    }};
  t["queue nack"] = {"queue nack QUEUE ID [RECEIPT]", "hand a message back (--delay)",
                     [](context& ctx, const std::vector<std::string>& args) {
                       auto receipt = parse_receipt(args, 2);
                       if (args.size() < 2 || args.size() > 3 || !receipt)
                         return usage_error("queue nack needs QUEUE ID [RECEIPT]");
                       auto dead = ctx.client->nack(args[0], args[1], *receipt, std::chrono::milliseconds(ctx.delay_ms));
                       if (!dead) return call_failed(ctx, dead.error());
                       if (ctx.as_json) std::cout << text(json{{"requeued", !*dead}, {"dead_lettered", *dead}}) << "\n";
                       else std::cout << (*dead ? "dead-lettered " : "requeued ") << args[1] << "\n";
                       return 0;
                     }};
  t["queue stats"] = {"queue stats QUEUE", "ready, in flight, delayed and dead messages",
                      [](context& ctx, const std::vector<std::string>& args) {
                        if (args.size() != 1) return usage_error("queue stats needs QUEUE");
                        auto q = ctx.client->queue_stats(args[0]);
                        if (!q) return call_failed(ctx, q.error());
                        if (ctx.as_json)
                          std::cout << text(json{{"queue", q->queue}, {"exists", q->exists}, {"shard", q->shard},
                                            {"ready", q->ready}, {"in_flight", q->in_flight}, {"delayed", q->delayed},
                                            {"dead", q->dead}, {"max_deliveries", q->max_deliveries}})
                                    << "\n";
                        else
                          std::cout << fmt::format("{} (shard {}{}): ready {} in flight {} delayed {} dead {} "
                                                   "max deliveries {}\n",
                                                   q->queue, q->shard, q->exists ? "" : ", no such queue", q->ready,
                                                   q->in_flight, q->delayed, q->dead, q->max_deliveries);
                        return 0;
                      }};
  t["queue dlq"] = {"queue dlq QUEUE", "list the dead-letter queue (--max entries)",
                    [](context& ctx, const std::vector<std::string>& args) {
                      if (args.size() != 1) return usage_error("queue dlq needs QUEUE");
                      auto page = ctx.client->dead_letters_of(args[0], 0, std::max<uint64_t>(ctx.max, 100));
                      if (!page) return call_failed(ctx, page.error());
                      json out = json::array();
                      for (auto& m : page->messages)
                        out.push_back({{"id", m.id}, {"payload", m.payload}, {"deliveries", m.deliveries},
                                       {"reason", m.reason}, {"last_failure", m.last_failure}});
                      if (ctx.as_json) std::cout << text(json{{"messages", out}, {"next_cursor", page->next_cursor}}) << "\n";
                      else
                        for (auto& m : page->messages)
                          std::cout << fmt::format("{} deliveries {} {} ({}): {}\n", m.id, m.deliveries, m.reason,
                                                   m.last_failure, m.payload);
                      return 0;
                    }};
  t["queue redrive"] = {"queue redrive QUEUE", "move dead messages back to ready (--max)",
                        [](context& ctx, const std::vector<std::string>& args) {
                          if (args.size() != 1) return usage_error("queue redrive needs QUEUE");
                          auto n = ctx.client->redrive(args[0], std::max<uint64_t>(ctx.max, 100));
                          if (!n) return call_failed(ctx, n.error());
                          std::cout << (ctx.as_json ? text(json{{"redriven", *n}}) : "redriven " + std::to_string(*n))
                                    << "\n";
                          return 0;
                        }};
  t["queue delete"] = {"queue delete QUEUE", "drop a queue with all its messages",
                       [](context& ctx, const std::vector<std::string>& args) {
                         if (args.size() != 1) return usage_error("queue delete needs QUEUE");
                         auto n = ctx.client->delete_queue(args[0]);
                         if (!n) return call_failed(ctx, n.error());
                         std::cout << (ctx.as_json ? text(json{{"deleted", true}, {"messages", *n}})
                                                   : "deleted with " + std::to_string(*n) + " messages")
                                   << "\n";
                         return 0;
                       }};
  t["queue list"] = {"queue list", "the queues of the cluster", [](context& ctx, const std::vector<std::string>& args) {
                       if (!args.empty()) return usage_error("queue list takes no arguments");
                       auto names = ctx.client->list_queues();
                       if (!names) return call_failed(ctx, names.error());
                       if (ctx.as_json) std::cout << text(json{{"queues", *names}}) << "\n";
                       else
                         for (auto& n : *names) std::cout << n << "\n";
                       return 0;
                     }};
}

void register_cache_commands() {
  auto& t = commands();
  t["cache get"] = {"cache get KEY", "read through this node's cache (prints the line state)",
                    [](context& ctx, const std::vector<std::string>& args) {
                      if (args.size() != 1) return usage_error("cache get needs KEY");
                      auto r = ctx.client->cache_get(args[0]);
                      if (!r) return call_failed(ctx, r.error());
                      if (ctx.as_json) std::cout << text(json{{"key", r->key}, {"value", r->value}, {"state", r->state}}) << "\n";
                      else std::cout << r->value << "  (" << r->state << ")\n";
                      return 0;
                    }};
  t["cache put"] = {"cache put KEY VALUE", "write through the coherent cache",
                    [](context& ctx, const std::vector<std::string>& args) {
                      if (args.size() != 2) return usage_error("cache put needs KEY VALUE");
                      auto r = ctx.client->cache_put(args[0], args[1]);
                      if (!r) return call_failed(ctx, r.error());
                      std::cout << (ctx.as_json ? text(json{{"ok", true}}) : "ok") << "\n";
                      return 0;
                    }};
  t["cache del"] = {"cache del KEY", "delete everywhere, Redis included",
                    [](context& ctx, const std::vector<std::string>& args) {
                      if (args.size() != 1) return usage_error("cache del needs KEY");
                      auto r = ctx.client->cache_del(args[0]);
                      if (!r) return call_failed(ctx, r.error());
                      std::cout << (ctx.as_json ? text(json{{"deleted", true}}) : "deleted") << "\n";
                      return 0;
                    }};
  t["cache invalidate"] = {"cache invalidate KEY", "drop every cached copy (dirty data written back)",
                           [](context& ctx, const std::vector<std::string>& args) {
                             if (args.size() != 1) return usage_error("cache invalidate needs KEY");
                             auto r = ctx.client->invalidate(args[0]);
                             if (!r) return call_failed(ctx, r.error());
                             std::cout << (ctx.as_json ? text(json{{"invalidated", true}}) : "invalidated") << "\n";
                             return 0;
                           }};
  t["cache stats"] = {"cache stats", "this node's cache: lines by state, hits, misses, ...",
                      [](context& ctx, const std::vector<std::string>& args) {
                        if (!args.empty()) return usage_error("cache stats takes no arguments");
                        auto r = ctx.client->cache_statistics();
                        if (!r) return call_failed(ctx, r.error());
                        json out{{"node", r->node_id}, {"protocol", r->protocol}, {"write_policy", r->write_policy},
                                 {"eviction", r->eviction}, {"capacity", r->capacity}, {"epoch", r->epoch},
                                 {"lines", {{"M", r->lines_m}, {"O", r->lines_o}, {"E", r->lines_e}, {"S", r->lines_s}}},
                                 {"hits", r->hits}, {"misses", r->misses}, {"evictions", r->evictions},
                                 {"write_backs", r->write_backs}, {"invalidations", r->invalidations},
                                 {"memory_reads", r->memory_reads}, {"memory_writes", r->memory_writes}};
                        std::cout << (ctx.as_json ? text(out) : text(out, 2)) << "\n";
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
  bool wait_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag) -> std::optional<std::string> {
      if (arg.rfind(flag + "=", 0) == 0) return arg.substr(flag.size() + 1);
      if (arg == flag && i + 1 < argc) return std::string{argv[++i]};
      return std::nullopt;
    };
    if (arg == "-h" || arg == "--help") return print_help();
    auto millis = [&](const std::string& flag, uint64_t& out) {
      auto v = value(flag);
      if (!v || v->empty() || v->size() > 9 || v->find_first_not_of("0123456789") != std::string::npos) return false;
      out = std::stoull(*v);
      return true;
    };
    if (arg == "--") {
      // The rest belongs to the command (lock run NAME -- COMMAND ARGS...).
      for (; i < argc; ++i) words.push_back(argv[i]);
      break;
    }
    if (arg.rfind("--consumer", 0) == 0) {
      auto v = value("--consumer");
      if (!v) return usage_error("--consumer needs a name");
      ctx.consumer = *v;
    } else if (arg.rfind("--max", 0) == 0) {
      if (!millis("--max", ctx.max) || ctx.max == 0) return usage_error("--max needs a positive number");
    } else if (arg.rfind("--visibility", 0) == 0) {
      if (!millis("--visibility", ctx.visibility_ms)) return usage_error("--visibility needs a number of milliseconds");
    } else if (arg.rfind("--delay", 0) == 0) {
      if (!millis("--delay", ctx.delay_ms)) return usage_error("--delay needs a number of milliseconds");
    } else if (arg.rfind("--client", 0) == 0) {
      auto v = value("--client");
      if (!v || v->empty()) return usage_error("--client needs an id");
      ctx.lock_client = *v;
    } else if (arg.rfind("--mode", 0) == 0) {
      auto v = value("--mode");
      if (!v || (*v != "exclusive" && *v != "shared")) return usage_error("--mode needs exclusive or shared");
      ctx.lock_mode = *v;
    } else if (arg.rfind("--wait", 0) == 0) {
      if (!millis("--wait", ctx.wait_ms)) return usage_error("--wait needs a number of milliseconds");
      wait_given = true;
    } else if (arg.rfind("--ttl", 0) == 0) {
      if (!millis("--ttl", ctx.ttl_ms)) return usage_error("--ttl needs a number of milliseconds");
    } else if (arg == "--json") {
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
    if (name == "lock run" && !wait_given) ctx.wait_ms = 60000;
    return c->second.run(ctx, std::vector<std::string>(words.begin() + static_cast<long>(n), words.end()));
  }
  return usage_error("unknown command '" + words[0] + "' (see --help)");
}
