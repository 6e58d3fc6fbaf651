#include "actors/http_gateway.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <type_traits>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "actors/log.hpp"
#include "protocols/cache/types.hpp"
#include "protocols/locks/lock_table.hpp"
#include "protocols/queue/queue_shard.hpp"

namespace dsync {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr size_t max_path_bytes = 1024;
constexpr auto request_timeout = 5s;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  send_json(res, status, json{{"error", code}, {"message", message}});
}

// The human part of an error: a dsync error's reason, or CAF's rendering of another.
std::string message_of(const caf::error& err) {
  if (err.category() == caf::atom("dsync") && err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  if (err == caf::sec::request_timeout) return "no answer within the request timeout";
  return error_reason(err);
}

// Maps a node's answer to HTTP: no quorum or no answer in time is 503.
void send_failure(httplib::Response& res, const caf::error& err) {
  if (err == errc::unavailable || err == caf::sec::request_timeout)
    return send_error(res, 503, "unavailable", message_of(err));
  if (err == errc::bad_request) return send_error(res, 400, "bad_request", message_of(err));
  if (err == errc::not_found) return send_error(res, 404, "not_found", message_of(err));
  if (err == errc::not_leader) return send_error(res, 503, "unavailable", "no reachable Raft leader");
  if (err == errc::timeout) return send_error(res, 409, "timeout", message_of(err));
  if (err == errc::not_held) return send_error(res, 409, "not_held", message_of(err));
  if (err == errc::limit_exceeded) return send_error(res, 429, "limit_exceeded", message_of(err));
  if (err == errc::stale_receipt) return send_error(res, 409, "stale_receipt", message_of(err));
  if (err == errc::deadlock) {
    json body{{"error", "deadlock"}, {"message", message_of(err)}, {"cycle", json::array()}};
    if (err.context().match_elements<std::string, std::vector<std::string>>())
      body["cycle"] = err.context().get_as<std::vector<std::string>>(1);
    return send_json(res, 409, body);
  }
  send_error(res, 500, "internal", message_of(err));
}

// Parses a JSON object body; on failure writes the 400 and returns nothing.
std::optional<json> parse_body(const httplib::Request& req, httplib::Response& res) {
  auto body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) {
    send_error(res, 400, "bad_request", "the body is not valid JSON");
    return std::nullopt;
  }
  if (!body.is_object()) {
    send_error(res, 400, "bad_request", "the body must be a JSON object");
    return std::nullopt;
  }
  return body;
}

json to_json(const group_status& g) {
  return json{{"group", g.group},
              {"leader", g.leader.empty() ? json(nullptr) : json(g.leader)},
              {"term", g.term},
              {"role", g.role},
              {"commit_index", g.commit_index},
              {"applied_index", g.applied_index},
              {"last_index", g.last_index},
              {"snapshot_index", g.snapshot_index},
              {"voters", g.voters},
              {"learners", g.learners}};
}

// Reads an optional non-negative integer field; on a bad value writes the 400.
bool read_uint(const json& body, const char* field, uint64_t& out, httplib::Response& res) {
  auto v = body.find(field);
  if (v == body.end()) return true;
  if (!v->is_number_unsigned()) {
    send_error(res, 400, "bad_request", std::string{"\""} + field + "\" must be a non-negative integer");
    return false;
  }
  out = v->get<uint64_t>();
  return true;
}

// Reads the required "client" string field; on a bad value writes the 400.
std::optional<std::string> read_client(const json& body, httplib::Response& res) {
  auto c = body.find("client");
  if (c == body.end() || !c->is_string()) {
    send_error(res, 400, "bad_request", "the body needs \"client\": a string naming the lock holder");
    return std::nullopt;
  }
  return c->get<std::string>();
}

json to_json(const lock_grant& g) {
  return json{{"client", g.client}, {"mode", g.mode}, {"token", g.token}, {"ttl_ms", g.ttl_ms},
              {"expires_in_ms", g.expires_in_ms}};
}

json to_json(const queue_info& q) {
  return json{{"queue", q.queue}, {"shard", q.shard}, {"ready", q.ready}, {"in_flight", q.in_flight},
              {"delayed", q.delayed}, {"dead", q.dead}, {"max_deliveries", q.max_deliveries}};
}

// A stored payload is the JSON text the producer sent; it goes back as JSON.
json payload_json(const std::string& text) {
  auto v = json::parse(text, nullptr, false);
  return v.is_discarded() ? json(text) : v;
}

// Reads an optional non-negative integer query parameter; on a bad value writes the 400.
bool read_param(const httplib::Request& req, const char* name, uint64_t& out, httplib::Response& res) {
  if (!req.has_param(name)) return true;
  auto v = req.get_param_value(name);
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
    send_error(res, 400, "bad_request", std::string{name} + " must be a non-negative integer, not '" + v + "'");
    return false;
  }
  out = std::stoull(v);
  return true;
}

json to_json(const member_status& m) {
  return json{{"node_id", m.node_id.empty() ? json(nullptr) : json(m.node_id)},
              {"address", m.address},
              {"state", m.state},
              {"reason", m.reason},
              {"since_ms", m.since_ms},
              {"last_contact_ms", m.last_contact_ms},
              {"http_port", m.http_port}};
}

// cpp-httplib listens with a backlog of 5 (a compile-time constant of Debian's build), so
// a burst of new connections overflows the accept queue and clients see resets. Linux
// lets listen() be called again on a listening socket to raise the backlog; find ours.
void raise_listen_backlog(uint16_t port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    uint16_t bound = 0;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    else if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

struct http_gateway::impl {
  caf::actor_system& sys;
  node_api node;
  node_settings settings;
  metrics::registry& metrics;
  httplib::Server server;
  std::thread thread;

  impl(caf::actor_system& s, node_api n, const node_settings& cfg, metrics::registry& m)
    : sys(s), node(std::move(n)), settings(cfg), metrics(m) {}

  // Asks the node actor and waits (on this HTTP worker thread) for its answer.
  template <class T, class... Ts>
  caf::expected<T> ask_within(caf::duration timeout, Ts&&... xs) {
    caf::scoped_actor self{sys};
    caf::expected<T> out{caf::sec::request_timeout};
    self->request(node, timeout, std::forward<Ts>(xs)...)
      .receive([&](T& value) { out = std::move(value); }, [&](caf::error& err) { out = std::move(err); });
    return out;
  }

  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    // A membership change waits for a learner to catch up; everything else is quick.
    constexpr bool slow = (std::is_same_v<std::decay_t<Ts>, member_add_atom> || ...)
                          || (std::is_same_v<std::decay_t<Ts>, member_remove_atom> || ...);
    auto timeout = slow ? caf::duration{std::chrono::seconds(40)} : caf::duration{request_timeout};
    return ask_within<T>(timeout, std::forward<Ts>(xs)...);
  }

  // Registers a handler that also records the request count and latency under `route`.
  template <class Handler>
  void route(const char* method, const std::string& pattern, Handler handler) {
    auto* latency = &metrics.get_histogram("dsync_http_request_seconds", "HTTP request latency",
                                           metrics::latency_buckets_seconds(), {{"route", pattern}});
    auto by_status = std::make_shared<std::array<std::atomic<metrics::counter*>, 600>>();
    auto wrapped = [this, pattern, latency, handler, by_status](const httplib::Request& req,
                                                                       httplib::Response& res) {
      auto start = std::chrono::steady_clock::now();
      handler(req, res);
      latency->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      // The counter of each status is looked up (under the registry's lock) only once.
      auto code = static_cast<size_t>(res.status) < by_status->size() ? static_cast<size_t>(res.status) : 0;
      auto* c = (*by_status)[code].load(std::memory_order_acquire);
      if (c == nullptr) {
        c = &metrics.get_counter("dsync_http_requests_total", "HTTP requests by route and status",
                                 {{"route", pattern}, {"code", std::to_string(res.status)}});
        (*by_status)[code].store(c, std::memory_order_release);
      }
      c->inc();
    };
    if (std::strcmp(method, "GET") == 0) server.Get(pattern, wrapped);
    else if (std::strcmp(method, "POST") == 0) server.Post(pattern, wrapped);
    else if (std::strcmp(method, "PUT") == 0) server.Put(pattern, wrapped);
    else if (std::strcmp(method, "DELETE") == 0) server.Delete(pattern, wrapped);
  }

  void install_routes() {
    route("GET", "/v1/health", [this](const httplib::Request&, httplib::Response& res) {
      auto r = ask<health_status>(health_atom::value);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"node", r->node_id}, {"status", r->status}});
    });
    route("GET", "/v1/cluster", [this](const httplib::Request&, httplib::Response& res) {
      auto r = ask<cluster_status>(cluster_atom::value);
      if (!r) return send_failure(res, r.error());
      json members = json::array();
      for (auto& m : r->members) members.push_back(to_json(m));
      json groups = json::array();
      for (auto& g : r->groups) groups.push_back(to_json(g));
      send_json(res, 200,
                json{{"node", r->node_id},
                     {"cluster_id", r->cluster_id},
                     {"leader", r->leader.empty() ? json(nullptr) : json(r->leader)},
                     {"term", r->term},
                     {"members", members},
                     {"groups", groups}});
    });
    route("POST", "/v1/cluster/members", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto id = body->find("node_id");
      if (id == body->end() || !id->is_string())
        return send_error(res, 400, "bad_request", "the body needs \"node_id\": a string");
      auto r = ask<group_status>(member_add_atom::value, id->get<std::string>(), false);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, to_json(*r));
    });
    route("DELETE", R"(/v1/cluster/members/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto r = ask<group_status>(member_remove_atom::value, std::string{req.matches[1]}, false);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, to_json(*r));
    });
    route("PUT", R"(/v1/kv/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto v = body->find("value");
      if (v == body->end() || !v->is_string())
        return send_error(res, 400, "bad_request", "the body needs \"value\": a string");
      auto r = ask<uint64_t>(kv_put_atom::value, std::string{req.matches[1]}, v->get<std::string>(), false);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"revision", *r}});
    });
    route("GET", R"(/v1/kv/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto consistency = req.has_param("consistency") ? req.get_param_value("consistency") : "linearizable";
      if (consistency != "linearizable" && consistency != "stale")
        return send_error(res, 400, "bad_request", "consistency must be linearizable or stale, not " + consistency);
      auto r = ask<kv_entry>(kv_get_atom::value, std::string{req.matches[1]}, consistency == "linearizable", false);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"key", r->key}, {"value", r->value}, {"revision", r->revision}});
    });
    route("DELETE", R"(/v1/kv/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto r = ask<uint64_t>(kv_del_atom::value, std::string{req.matches[1]}, false);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"revision", *r}});
    });
    route("POST", R"(/v1/locks/([^/]+)/acquire)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      lock_request r;
      r.lock = req.matches[1];
      auto client = read_client(*body, res);
      if (!client) return;
      r.client = *client;
      if (auto m = body->find("mode"); m != body->end()) {
        if (!m->is_string()) return send_error(res, 400, "bad_request", "\"mode\" must be \"exclusive\" or \"shared\"");
        r.mode = m->get<std::string>();
      }
      if (!read_uint(*body, "wait_ms", r.wait_ms, res) || !read_uint(*body, "ttl_ms", r.ttl_ms, res)) return;
      if (r.wait_ms > locks::max_wait_ms)
        return send_error(res, 400, "bad_request", "wait_ms is " + std::to_string(r.wait_ms) + "; the limit is "
                                                     + std::to_string(locks::max_wait_ms));
      auto timeout = caf::duration{std::chrono::milliseconds(r.wait_ms) + request_timeout + 1s};
      auto g = ask_within<lock_grant>(timeout, lock_acquire_atom::value, r, false);
      if (!g) return send_failure(res, g.error());
      auto out = to_json(*g);
      out["granted"] = true;
      send_json(res, 200, out);
    });
    route("POST", R"(/v1/locks/([^/]+)/release)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto client = read_client(*body, res);
      if (!client) return;
      auto held = ask<bool>(lock_release_atom::value, std::string{req.matches[1]}, *client, false);
      if (!held) return send_failure(res, held.error());
      if (*held) return send_json(res, 200, json{{"released", true}});
      send_json(res, 200, json{{"released", false}, {"cancelled_wait", true}});
    });
    route("POST", R"(/v1/locks/([^/]+)/refresh)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto client = read_client(*body, res);
      if (!client) return;
      auto g = ask<lock_grant>(lock_refresh_atom::value, std::string{req.matches[1]}, *client, false);
      if (!g) return send_failure(res, g.error());
      send_json(res, 200, to_json(*g));
    });
    route("GET", R"(/v1/locks/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto consistency = req.has_param("consistency") ? req.get_param_value("consistency") : "linearizable";
      if (consistency != "linearizable" && consistency != "stale")
        return send_error(res, 400, "bad_request", "consistency must be linearizable or stale, not " + consistency);
      auto r = ask<lock_info>(lock_status_atom::value, std::string{req.matches[1]}, consistency == "linearizable", false);
      if (!r) return send_failure(res, r.error());
      json holders = json::array();
      for (auto& h : r->holders) holders.push_back(to_json(h));
      json waiters = json::array();
      for (auto& w : r->waiters)
        waiters.push_back(json{{"client", w.client}, {"mode", w.mode}, {"upgrade", w.upgrade},
                               {"gives_up_in_ms", w.gives_up_in_ms}});
      send_json(res, 200, json{{"lock", r->lock}, {"mode", r->mode}, {"holders", holders}, {"waiters", waiters}});
    });
    route("POST", R"(/v1/queues/([^/]+)/messages)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto p = body->find("payload");
      if (p == body->end()) return send_error(res, 400, "bad_request", "the body needs \"payload\": any JSON value");
      auto payload = p->dump();
      if (payload.size() > queue::max_payload_bytes)
        return send_error(res, 413, "payload_too_large", "the payload is " + std::to_string(payload.size())
                                                            + " bytes of JSON; the limit is "
                                                            + std::to_string(queue::max_payload_bytes));
      auto id = ask<std::string>(queue_enqueue_atom::value, std::string{req.matches[1]}, payload, false);
      if (!id) return send_failure(res, id.error());
      send_json(res, 201, json{{"id", *id}});
    });
    route("POST", R"(/v1/queues/([^/]+)/dequeue)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      queue_pull pull;
      pull.queue = req.matches[1];
      if (auto c = body->find("consumer"); c != body->end()) {
        if (!c->is_string()) return send_error(res, 400, "bad_request", "\"consumer\" must be a string");
        pull.consumer = c->get<std::string>();
      }
      if (!read_uint(*body, "max", pull.max, res) || !read_uint(*body, "visibility_ms", pull.visibility_ms, res)
          || !read_uint(*body, "wait_ms", pull.wait_ms, res))
        return;
      if (pull.wait_ms > queue::max_wait_ms)
        return send_error(res, 400, "bad_request", "wait_ms is " + std::to_string(pull.wait_ms) + "; the limit is "
                                                     + std::to_string(queue::max_wait_ms));
      auto timeout = caf::duration{std::chrono::milliseconds(pull.wait_ms) + request_timeout + 1s};
      auto got = ask_within<std::vector<queue_message>>(timeout, queue_dequeue_atom::value, pull, false);
      if (!got) return send_failure(res, got.error());
      json messages = json::array();
      for (auto& m : *got)
        messages.push_back(json{{"id", m.id}, {"receipt", m.receipt}, {"payload", payload_json(m.payload)},
                                {"deliveries", m.deliveries}});
      send_json(res, 200, json{{"messages", messages}});
    });
    auto ack_or_nack = [this](bool ack) {
      return [this, ack](const httplib::Request& req, httplib::Response& res) {
        auto body = parse_body(req, res);
        if (!body) return;
        auto id = body->find("id");
        if (id == body->end() || !id->is_string())
          return send_error(res, 400, "bad_request", "the body needs \"id\": the message id from dequeue");
        uint64_t receipt = 0;
        uint64_t delay_ms = 0;
        if (!read_uint(*body, "receipt", receipt, res) || !read_uint(*body, "delay_ms", delay_ms, res)) return;
        std::string queue = req.matches[1];
        if (ack) {
          auto r = ask<bool>(queue_ack_atom::value, queue, id->get<std::string>(), receipt, false);
          if (!r) return send_failure(res, r.error());
          return send_json(res, 200, json{{"acked", true}});
        }
        auto dead = ask<bool>(queue_nack_atom::value, queue, id->get<std::string>(), receipt, delay_ms, false);
        if (!dead) return send_failure(res, dead.error());
        send_json(res, 200, json{{"requeued", !*dead}, {"dead_lettered", *dead}});
      };
    };
    route("POST", R"(/v1/queues/([^/]+)/ack)", ack_or_nack(true));
    route("POST", R"(/v1/queues/([^/]+)/nack)", ack_or_nack(false));
    route("GET", R"(/v1/queues/([^/]+)/dlq)", [this](const httplib::Request& req, httplib::Response& res) {
      uint64_t cursor = 0;
      uint64_t limit = 100;
      if (!read_param(req, "cursor", cursor, res) || !read_param(req, "limit", limit, res)) return;
      auto r = ask<dead_letters>(queue_dlq_atom::value, std::string{req.matches[1]}, cursor, limit, false);
      if (!r) return send_failure(res, r.error());
      json messages = json::array();
      for (auto& m : r->messages)
        messages.push_back(json{{"id", m.id}, {"payload", payload_json(m.payload)}, {"deliveries", m.deliveries},
                                {"reason", m.reason}, {"last_failure", m.last_failure},
                                {"dead_since_ms", m.dead_since_ms}});
      send_json(res, 200, json{{"messages", messages}, {"next_cursor", r->next_cursor}});
    });
    route("POST", R"(/v1/queues/([^/]+)/redrive)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      uint64_t max = 100;
      if (!read_uint(*body, "max", max, res)) return;
      auto n = ask<uint64_t>(queue_redrive_atom::value, std::string{req.matches[1]}, max, false);
      if (!n) return send_failure(res, n.error());
      send_json(res, 200, json{{"redriven", *n}});
    });
    route("PUT", R"(/v1/queues/([^/]+)/config)", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      uint64_t max_deliveries = 0;
      if (!body->contains("max_deliveries"))
        return send_error(res, 400, "bad_request", "the body needs \"max_deliveries\": a positive integer");
      if (!read_uint(*body, "max_deliveries", max_deliveries, res)) return;
      auto q = ask<queue_info>(queue_config_atom::value, std::string{req.matches[1]}, max_deliveries, false);
      if (!q) return send_failure(res, q.error());
      send_json(res, 200, to_json(*q));
    });
    route("GET", R"(/v1/queues/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto q = ask<queue_info>(queue_stats_atom::value, std::string{req.matches[1]}, false);
      if (!q) return send_failure(res, q.error());
      if (!q->exists) return send_error(res, 404, "not_found", "no queue " + q->queue);
      send_json(res, 200, to_json(*q));
    });
    route("DELETE", R"(/v1/queues/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto n = ask<uint64_t>(queue_delete_atom::value, std::string{req.matches[1]}, false);
      if (!n) return send_failure(res, n.error());
      send_json(res, 200, json{{"deleted", true}, {"messages", *n}});
    });
    route("GET", "/v1/queues", [this](const httplib::Request&, httplib::Response& res) {
      auto names = ask<std::vector<std::string>>(queue_list_atom::value, all_shards, false);
      if (!names) return send_failure(res, names.error());
      send_json(res, 200, json{{"queues", *names}});
    });
    route("PUT", R"(/v1/cache/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto body = parse_body(req, res);
      if (!body) return;
      auto v = body->find("value");
      if (v == body->end() || !v->is_string())
        return send_error(res, 400, "bad_request", "the body needs \"value\": a string");
      auto value = v->get<std::string>();
      if (value.size() > cache::max_value_bytes)
        return send_error(res, 413, "payload_too_large", "the value is " + std::to_string(value.size())
                                                            + " bytes; the limit is "
                                                            + std::to_string(cache::max_value_bytes));
      auto r = ask<bool>(cache_put_atom::value, std::string{req.matches[1]}, value);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"ok", true}});
    });
    route("GET", R"(/v1/cache/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto r = ask<cache_entry>(cache_get_atom::value, std::string{req.matches[1]});
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"key", r->key}, {"value", r->value}, {"state", r->state}});
    });
    route("DELETE", R"(/v1/cache/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      auto r = ask<bool>(cache_del_atom::value, std::string{req.matches[1]});
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"deleted", true}});
    });
    route("POST", R"(/v1/cache/([^/]+)/invalidate)", [this](const httplib::Request& req, httplib::Response& res) {
      auto r = ask<bool>(cache_inval_atom::value, std::string{req.matches[1]});
      if (!r) return send_failure(res, r.error());
      send_json(res, 200, json{{"invalidated", true}});
    });
    route("GET", "/v1/cache", [this](const httplib::Request&, httplib::Response& res) {
      auto r = ask<cache_stats>(cache_stats_atom::value);
      if (!r) return send_failure(res, r.error());
      send_json(res, 200,
                json{{"node", r->node_id}, {"protocol", r->protocol}, {"write_policy", r->write_policy},
                     {"eviction", r->eviction}, {"capacity", r->capacity}, {"epoch", r->epoch},
                     {"homes", r->members},
                     {"lines", {{"M", r->lines_m}, {"O", r->lines_o}, {"E", r->lines_e}, {"S", r->lines_s}}},
                     {"hits", r->hits}, {"misses", r->misses}, {"evictions", r->evictions},
                     {"write_backs", r->write_backs}, {"invalidations", r->invalidations},
                     {"memory_reads", r->memory_reads}, {"memory_writes", r->memory_writes},
                     {"messages_sent", r->messages_sent}});
    });
    route("GET", "/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(metrics.expose(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  void install_limits() {
    server.set_payload_max_length(settings.http_max_body_bytes);
    server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      if (req.path.size() > max_path_bytes) {
        send_error(res, 414, "uri_too_long",
                   "path is " + std::to_string(req.path.size()) + " bytes; the limit is "
                     + std::to_string(max_path_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // a handler already wrote its JSON error
      metrics
        .get_counter("dsync_http_requests_total", "HTTP requests by route and status",
                     {{"route", "unmatched"}, {"code", std::to_string(res.status)}})
        .inc();
      switch (res.status) {
        case 404: {
          static const char* const get_only[] = {"/v1/health", "/v1/cluster", "/metrics"};
          for (auto* p : get_only)
            if (req.path == p && req.method != "GET")
              return send_error(res, 405, "method_not_allowed", req.method + " " + req.path + " is not supported; use GET");
          return send_error(res, 404, "not_found", "no such endpoint: " + req.method + " " + req.path);
        }
        case 413:
          return send_error(res, 413, "payload_too_large",
                            "request body exceeds " + std::to_string(settings.http_max_body_bytes) + " bytes");
        case 414: return send_error(res, 414, "uri_too_long", "request line too long");
        case 400: return send_error(res, 400, "bad_request", "malformed request, or a header line over 8 KiB");
        default: return send_error(res, res.status, "http_error", "HTTP status " + std::to_string(res.status));
      }
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log::error("http", "handler failed: {}", what);
      send_error(res, 500, "internal", what);
    });
    auto threads = settings.http_threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_read_timeout(10, 0);
    server.set_write_timeout(10, 0);
    server.set_keep_alive_max_count(1000000);
    server.set_tcp_nodelay(true);  // answers are small: never wait for Nagle
  }
};

http_gateway::http_gateway(caf::actor_system& sys, node_api node, const node_settings& settings,
                           metrics::registry& metrics)
  : impl_(std::make_unique<impl>(sys, std::move(node), settings, metrics)) {}

http_gateway::~http_gateway() { stop(); }

std::optional<std::string> http_gateway::start() {
  auto& d = *impl_;
  d.install_limits();
  d.install_routes();
  if (!d.server.bind_to_port(d.settings.node_host.c_str(), d.settings.http_port))
    return "cannot listen for HTTP on " + d.settings.node_host + ":" + std::to_string(d.settings.http_port)
           + ": " + std::strerror(errno);
  raise_listen_backlog(d.settings.http_port);
  d.thread = std::thread([&d] { d.server.listen_after_bind(); });
  log::info("http", "serving HTTP on {}:{}", d.settings.node_host, d.settings.http_port);
  return std::nullopt;
}

void http_gateway::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

}  // namespace dsync
