#include "actors/http_gateway.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>

#include <caf/all.hpp>

#include "actors/cache_mirror.hpp"
#include "actors/http/request_parser.hpp"
#include "actors/http/server.hpp"
#include "actors/log.hpp"
#include "protocols/cache/types.hpp"
#include "protocols/locks/lock_table.hpp"
#include "protocols/queue/queue_shard.hpp"

namespace dsync {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr auto request_timeout = 5s;
constexpr size_t max_ack_batch = 100;
constexpr auto tick_interval = 250ms;  // how often request deadlines are checked

using gateway_tick_atom = caf::atom_constant<caf::atom("gw_tick")>;

// The message of an error: a dsync error's reason, or CAF's rendering of another.
std::string message_of(const caf::error& err) {
  if (err.category() == caf::atom("dsync") && err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  if (err == caf::sec::request_timeout) return "no answer within the request timeout";
  return error_reason(err);
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

json to_json(const lock_grant& g) {
  return json{{"client", g.client}, {"mode", g.mode}, {"token", g.token}, {"ttl_ms", g.ttl_ms},
              {"expires_in_ms", g.expires_in_ms}};
}

json to_json(const queue_info& q) {
  return json{{"queue", q.queue}, {"shard", q.shard}, {"ready", q.ready}, {"in_flight", q.in_flight},
              {"delayed", q.delayed}, {"dead", q.dead}, {"max_deliveries", q.max_deliveries}};
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

// Response text. Strings may hold bytes that are not UTF-8 (a name given through the CAF API,
// a request's bytes quoted in an error): they are replaced, never a reason to throw.
std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// `s` as a JSON string, as json_text writes it; text that needs no escaping (nearly all)
// is copied as it is, without building a json value.
std::string json_string(std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char ch) {
    auto b = static_cast<unsigned char>(ch);
    return b >= 0x20 && b < 0x80 && b != '"' && b != '\\';
  });
  if (!plain) return json_text(json(std::string{s}));
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

// A stored payload is the JSON text the producer sent; it goes back as JSON.
json payload_json(const std::string& text) {
  auto v = json::parse(text, nullptr, false);
  return v.is_discarded() ? json(text) : v;
}

// A route pattern: literal segments, {name} for one non-empty segment, {name...} (last
// only) for the non-empty rest of the path.
struct pattern {
  std::vector<std::string> segments;  // "" marks a {name} segment
  bool rest = false;                  // the last "" takes the rest of the path

  explicit pattern(const std::string& text) {
    size_t pos = 1;
    while (pos <= text.size()) {
      auto slash = text.find('/', pos);
      auto seg = text.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      if (!seg.empty() && seg.front() == '{') {
        rest = seg.size() > 5 && seg.compare(seg.size() - 4, 4, "...}") == 0;
        segments.emplace_back();
      } else {
        segments.push_back(seg);
      }
      if (slash == std::string::npos) break;
      pos = slash + 1;
    }
  }

  bool match(const std::string& path, std::vector<std::string>& args) const {
    args.clear();
    if (path.empty() || path.front() != '/') return false;
    size_t pos = 1;
    for (size_t i = 0; i < segments.size(); ++i) {
      if (pos > path.size()) return false;
      bool last = i + 1 == segments.size();
      if (last && rest) {
        if (pos >= path.size()) return false;
        args.push_back(path.substr(pos));
        return true;
      }
      auto slash = path.find('/', pos);
      auto seg_end = slash == std::string::npos ? path.size() : slash;
      auto seg = std::string_view{path}.substr(pos, seg_end - pos);
      if (segments[i].empty()) {
        if (seg.empty()) return false;
        args.emplace_back(seg);
      } else if (seg != segments[i]) {
        return false;
      }
      if (last) return slash == std::string::npos;
      if (slash == std::string::npos) return false;
      pos = slash + 1;
    }
    return false;
  }
};

struct route;

// One request being answered. Handlers answer it exactly once, maybe later, from a
// response handler; all of it runs in the gateway actor (a cache hit: on the HTTP loop).
struct http_call {
  http::request req;
  std::vector<std::string> args;  // the {name} parts of the route, in order
  uint64_t connection = 0;        // the HTTP server's
  struct route* route = nullptr;
  steady::time_point started;
  bool answered = false;
  std::optional<std::multimap<steady::time_point, std::weak_ptr<http_call>>::iterator> deadline;
};
using call_ptr = std::shared_ptr<http_call>;


struct route {
  std::string method;
  std::string label;  // the pattern, as the metrics name it
  pattern path;
  std::function<void(const call_ptr&)> handler;
  metrics::histogram* latency;
  // Created on first use, from the gateway actor or the HTTP loop (cache hits).
  std::shared_ptr<std::array<std::atomic<metrics::counter*>, 600>> by_status;
};

}  // namespace
}  // namespace dsync

// Handed from the HTTP loop to the gateway actor within the process, never serialised.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsync::call_ptr)

namespace dsync {

struct http_gateway::impl {
  caf::actor_system& sys;
  node_api node;
  node_settings settings;
  metrics::registry& metrics;
  http::limits limits;
  std::vector<route> routes;
  caf::actor worker;  // the gateway actor: routes requests and asks the node
  std::unique_ptr<http::server> server;
  // This node's readable cache lines, kept by the cache service; null: every get asks it.
  std::shared_ptr<cache_mirror> cache_lines;
  metrics::histogram* cache_get_seconds = nullptr;

  // Gateway actor state: touched only in the actor.
  caf::event_based_actor* self = nullptr;
  std::multimap<steady::time_point, std::weak_ptr<http_call>> waiting;  // calls asked of the node, by deadline

  impl(caf::actor_system& s, node_api n, const node_settings& cfg, metrics::registry& m,
       std::shared_ptr<cache_mirror> lines)
    : sys(s), node(std::move(n)), settings(cfg), metrics(m), cache_lines(std::move(lines)) {
    limits.max_body = settings.http_max_body_bytes;
    cache_get_seconds =
      &metrics.get_histogram(cache_get_seconds_metric, cache_get_seconds_help, metrics::latency_buckets_seconds());
  }

  // ---- answering ----------------------------------------------------------------------

  void respond(http_call& c, int status, const std::string& body, const char* content_type = "application/json") {
    if (c.answered) return;
    c.answered = true;
    if (c.deadline) {
      waiting.erase(*c.deadline);
      c.deadline.reset();
    }
    if (c.route) {
      c.route->latency->observe(std::chrono::duration<double>(steady::now() - c.started).count());
      count(*c.route->by_status, c.route->label, status);
    }
    server->respond(c.connection, status, content_type, body, !c.req.keep_alive);
  }

  void count(std::array<std::atomic<metrics::counter*>, 600>& by_status, const std::string& label, int status) {
    auto code = static_cast<size_t>(status) < by_status.size() ? static_cast<size_t>(status) : 0;
    auto* counter = by_status[code].load(std::memory_order_acquire);
    if (counter == nullptr) {  // a race creates it twice: the registry hands out the same one
      counter = &metrics.get_counter("dsync_http_requests_total", "HTTP requests by route and status",
                                     {{"route", label}, {"code", std::to_string(status)}});
      by_status[code].store(counter, std::memory_order_release);
    }
    counter->inc();
  }

  void send_json(http_call& c, int status, const json& body) { respond(c, status, json_text(body)); }

  void send_error(http_call& c, int status, const std::string& code, const std::string& message) {
    send_json(c, status, json{{"error", code}, {"message", message}});
  }

  // Maps a node's answer to HTTP: no quorum or no answer in time is 503.
  static std::pair<int, json> failure_of(const caf::error& err) {
    auto error = [&](int status, const char* code, const std::string& message) {
      return std::pair<int, json>{status, json{{"error", code}, {"message", message}}};
    };
    if (err == errc::unavailable || err == caf::sec::request_timeout)
      return error(503, "unavailable", message_of(err));
    if (err == errc::bad_request) return error(400, "bad_request", message_of(err));
    if (err == errc::not_found) return error(404, "not_found", message_of(err));
    if (err == errc::not_leader) return error(503, "unavailable", "no reachable Raft leader");
    if (err == errc::timeout) return error(409, "timeout", message_of(err));
    if (err == errc::not_held) return error(409, "not_held", message_of(err));
    if (err == errc::limit_exceeded) return error(429, "limit_exceeded", message_of(err));
    if (err == errc::stale_receipt) return error(409, "stale_receipt", message_of(err));
    if (err == errc::deadlock) {
      auto out = error(409, "deadlock", message_of(err));
      out.second["cycle"] = json::array();
      if (err.context().match_elements<std::string, std::vector<std::string>>())
        out.second["cycle"] = err.context().get_as<std::vector<std::string>>(1);
      return out;
    }
    return error(500, "internal", message_of(err));
  }

  void send_failure(http_call& c, const caf::error& err) {
    auto [status, body] = failure_of(err);
    send_json(c, status, body);
  }

  // Asks the node actor; `on_answer(T&)` answers the call, a failure is mapped by send_failure.
  // The timeout is kept here (expire_calls) rather than by CAF, whose clock thread would
  // be woken for every request.
  template <class T, class OnAnswer, class... Ts>
  void ask_within(const call_ptr& c, steady::duration timeout, OnAnswer on_answer, Ts&&... xs) {
    answer_within(c, timeout);
    self->request(node, caf::infinite, std::forward<Ts>(xs)...)
      .then([c, on_answer](T& value) mutable {
              if (!c->answered) on_answer(value);
            },
            [this, c](caf::error& err) { send_failure(*c, err); });
  }

  // The call is answered 503 if nothing answers it within `timeout`.
  void answer_within(const call_ptr& c, steady::duration timeout) {
    if (!c->deadline) c->deadline = waiting.emplace(steady::now() + timeout, c);
  }

  void expire_calls() {
    auto now = steady::now();
    while (!waiting.empty() && waiting.begin()->first <= now) {
      auto c = waiting.begin()->second.lock();
      waiting.erase(waiting.begin());
      if (c) {
        c->deadline.reset();
        send_error(*c, 503, "unavailable", "no answer within the request timeout");
      }
    }
  }

  template <class T, class OnAnswer, class... Ts>
  void ask(const call_ptr& c, OnAnswer on_answer, Ts&&... xs) {
    ask_within<T>(c, request_timeout, std::move(on_answer), std::forward<Ts>(xs)...);
  }

  // ---- request validation helpers (each writes the 400 and returns false/nothing) -----

  std::optional<json> parse_body(http_call& c) {
    auto body = json::parse(c.req.body, nullptr, false);
    if (body.is_discarded()) {
      send_error(c, 400, "bad_request", "the body is not valid JSON");
      return std::nullopt;
    }
    if (!body.is_object()) {
      send_error(c, 400, "bad_request", "the body must be a JSON object");
      return std::nullopt;
    }
    return body;
  }

  bool read_uint(http_call& c, const json& body, const char* field, uint64_t& out) {
    auto v = body.find(field);
    if (v == body.end()) return true;
    if (!v->is_number_unsigned()) {
      send_error(c, 400, "bad_request", std::string{"\""} + field + "\" must be a non-negative integer");
      return false;
    }
    out = v->get<uint64_t>();
    return true;
  }

  std::optional<std::string> read_client(http_call& c, const json& body) {
    auto v = body.find("client");
    if (v == body.end() || !v->is_string()) {
      send_error(c, 400, "bad_request", "the body needs \"client\": a string naming the lock holder");
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  bool read_param(http_call& c, const char* name, uint64_t& out) {
    auto p = c.req.params.find(name);
    if (p == c.req.params.end()) return true;
    auto& v = p->second;
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
      send_error(c, 400, "bad_request", std::string{name} + " must be a non-negative integer, not '" + v + "'");
      return false;
    }
    out = std::stoull(v);
    return true;
  }

  // "linearizable" (the default) or "stale"; nothing after writing the 400.
  std::optional<bool> read_consistency(http_call& c) {
    auto p = c.req.params.find("consistency");
    if (p == c.req.params.end() || p->second == "linearizable") return true;
    if (p->second == "stale") return false;
    send_error(c, 400, "bad_request", "consistency must be linearizable or stale, not " + p->second);
    return std::nullopt;
  }

  // ---- routes ---------------------------------------------------------------------------

  // {"messages": [{"id", "receipt"}, ...]}: acks them all at once (they share Raft
  // batches), answering each one's outcome: {"acked": n, "results": [...]}.
  void ack_batch(const call_ptr& c, const json& body) {
    auto& list = body["messages"];
    if (!list.is_array() || list.empty() || list.size() > max_ack_batch)
      return send_error(*c, 400, "bad_request",
                        "\"messages\" must be an array of 1.." + std::to_string(max_ack_batch) + " {\"id\", \"receipt\"}");
    std::vector<std::pair<std::string, uint64_t>> acks;
    for (auto& m : list) {
      auto id = m.is_object() ? m.find("id") : m.end();
      auto receipt = m.is_object() ? m.find("receipt") : m.end();
      if (!m.is_object() || id == m.end() || !id->is_string() || receipt == m.end() || !receipt->is_number_unsigned())
        return send_error(*c, 400, "bad_request",
                          "every item of \"messages\" needs \"id\" (a string) and \"receipt\" (a non-negative integer)");
      acks.emplace_back(id->get<std::string>(), receipt->get<uint64_t>());
    }
    struct outcome {
      json results = json::array();
      size_t left = 0;
      uint64_t acked = 0;
    };
    auto out = std::make_shared<outcome>();
    out->results = json(std::vector<json>(acks.size()));
    out->left = acks.size();
    answer_within(c, request_timeout);
    auto settle = [this, c, out](size_t i, json result) {
      out->results[i] = std::move(result);
      if (--out->left == 0) send_json(*c, 200, json{{"acked", out->acked}, {"results", out->results}});
    };
    for (size_t i = 0; i < acks.size(); ++i) {
      auto id = acks[i].first;
      self->request(node, caf::infinite, queue_ack_atom::value, c->args[0], id, acks[i].second, false)
        .then(
          [=](bool) {
            ++out->acked;
            settle(i, json{{"id", id}, {"acked", true}});
          },
          [=](caf::error& err) {
            auto [status, why] = failure_of(err);
            why["id"] = id;
            why["acked"] = false;
            settle(i, std::move(why));
          });
    }
  }

  void on(const char* method, const std::string& path, std::function<void(const call_ptr&)> handler) {
    auto* latency = &metrics.get_histogram("dsync_http_request_seconds", "HTTP request latency",
                                           metrics::latency_buckets_seconds(), {{"route", path}});
    routes.push_back(route{method, path, pattern{path}, std::move(handler), latency,
                           std::make_shared<std::array<std::atomic<metrics::counter*>, 600>>()});
  }

  void install_routes() {
    on("GET", "/v1/health", [this](const call_ptr& c) {
      ask<health_status>(c, [this, c](health_status& h) { send_json(*c, 200, json{{"node", h.node_id}, {"status", h.status}}); },
                         health_atom::value);
    });
    on("GET", "/v1/cluster", [this](const call_ptr& c) {
      ask<cluster_status>(
        c,
        [this, c](cluster_status& r) {
          json members = json::array();
          for (auto& m : r.members) members.push_back(to_json(m));
          json groups = json::array();
          for (auto& g : r.groups) groups.push_back(to_json(g));
          send_json(*c, 200,
                    json{{"node", r.node_id},
                         {"cluster_id", r.cluster_id},
                         {"leader", r.leader.empty() ? json(nullptr) : json(r.leader)},
                         {"term", r.term},
                         {"members", members},
                         {"groups", groups}});
        },
        cluster_atom::value);
    });
    auto membership_answer = [this](const call_ptr& c) {
      return [this, c](group_status& g) { send_json(*c, 200, to_json(g)); };
    };
    // A membership change waits for a learner to catch up.
    constexpr auto member_timeout = std::chrono::seconds(40);
    on("POST", "/v1/cluster/members", [=](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto id = body->find("node_id");
      if (id == body->end() || !id->is_string())
        return send_error(*c, 400, "bad_request", "the body needs \"node_id\": a string");
      ask_within<group_status>(c, member_timeout, membership_answer(c), member_add_atom::value,
                               id->get<std::string>(), false);
    });
    on("DELETE", "/v1/cluster/members/{node...}", [=](const call_ptr& c) {
      ask_within<group_status>(c, member_timeout, membership_answer(c), member_remove_atom::value,
                               c->args[0], false);
    });
    on("PUT", "/v1/kv/{key...}", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto v = body->find("value");
      if (v == body->end() || !v->is_string()) return send_error(*c, 400, "bad_request", "the body needs \"value\": a string");
      ask<uint64_t>(c, [this, c](uint64_t rev) { send_json(*c, 200, json{{"revision", rev}}); }, kv_put_atom::value,
                    c->args[0], v->get<std::string>(), false);
    });
    on("GET", "/v1/kv/{key...}", [this](const call_ptr& c) {
      auto linearizable = read_consistency(*c);
      if (!linearizable) return;
      ask<kv_entry>(
        c, [this, c](kv_entry& r) { send_json(*c, 200, json{{"key", r.key}, {"value", r.value}, {"revision", r.revision}}); },
        kv_get_atom::value, c->args[0], *linearizable, false);
    });
    on("DELETE", "/v1/kv/{key...}", [this](const call_ptr& c) {
      ask<uint64_t>(c, [this, c](uint64_t rev) { send_json(*c, 200, json{{"revision", rev}}); }, kv_del_atom::value,
                    c->args[0], false);
    });
    on("POST", "/v1/locks/{lock}/acquire", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      lock_request r;
      r.lock = c->args[0];
      auto client = read_client(*c, *body);
      if (!client) return;
      r.client = *client;
      if (auto m = body->find("mode"); m != body->end()) {
        if (!m->is_string()) return send_error(*c, 400, "bad_request", "\"mode\" must be \"exclusive\" or \"shared\"");
        r.mode = m->get<std::string>();
      }
      if (!read_uint(*c, *body, "wait_ms", r.wait_ms) || !read_uint(*c, *body, "ttl_ms", r.ttl_ms)) return;
      if (r.wait_ms > locks::max_wait_ms)
        return send_error(*c, 400, "bad_request", "wait_ms is " + std::to_string(r.wait_ms) + "; the limit is "
                                                    + std::to_string(locks::max_wait_ms));
      auto timeout = std::chrono::milliseconds(r.wait_ms) + request_timeout + 1s;
      ask_within<lock_grant>(
        c, timeout,
        [this, c](lock_grant& g) {
          auto out = to_json(g);
          out["granted"] = true;
          send_json(*c, 200, out);
        },
        lock_acquire_atom::value, r, false);
    });
    on("POST", "/v1/locks/{lock}/release", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto client = read_client(*c, *body);
      if (!client) return;
      ask<bool>(
        c,
        [this, c](bool held) {
          if (held) return send_json(*c, 200, json{{"released", true}});
          send_json(*c, 200, json{{"released", false}, {"cancelled_wait", true}});
        },
        lock_release_atom::value, c->args[0], *client, false);
    });
    on("POST", "/v1/locks/{lock}/refresh", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto client = read_client(*c, *body);
      if (!client) return;
      ask<lock_grant>(c, [this, c](lock_grant& g) { send_json(*c, 200, to_json(g)); }, lock_refresh_atom::value,
                      c->args[0], *client, false);
    });
    on("GET", "/v1/locks/{lock}", [this](const call_ptr& c) {
      auto linearizable = read_consistency(*c);
      if (!linearizable) return;
      ask<lock_info>(
        c,
        [this, c](lock_info& r) {
          json holders = json::array();
          for (auto& h : r.holders) holders.push_back(to_json(h));
          json waiters = json::array();
          for (auto& w : r.waiters)
            waiters.push_back(json{{"client", w.client}, {"mode", w.mode}, {"upgrade", w.upgrade},
                                   {"gives_up_in_ms", w.gives_up_in_ms}});
          send_json(*c, 200, json{{"lock", r.lock}, {"mode", r.mode}, {"holders", holders}, {"waiters", waiters}});
        },
        lock_status_atom::value, c->args[0], *linearizable, false);
    });
    on("POST", "/v1/queues/{queue}/messages", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto p = body->find("payload");
      if (p == body->end()) return send_error(*c, 400, "bad_request", "the body needs \"payload\": any JSON value");
      auto payload = p->dump();
      if (payload.size() > queue::max_payload_bytes)
        return send_error(*c, 413, "payload_too_large", "the payload is " + std::to_string(payload.size())
                                                           + " bytes of JSON; the limit is "
                                                           + std::to_string(queue::max_payload_bytes));
      ask<std::string>(c, [this, c](std::string& id) { send_json(*c, 201, json{{"id", id}}); },
                       queue_enqueue_atom::value, c->args[0], payload, false);
    });
    on("POST", "/v1/queues/{queue}/dequeue", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      queue_pull pull;
      pull.queue = c->args[0];
      if (auto v = body->find("consumer"); v != body->end()) {
        if (!v->is_string()) return send_error(*c, 400, "bad_request", "\"consumer\" must be a string");
        pull.consumer = v->get<std::string>();
      }
      if (!read_uint(*c, *body, "max", pull.max) || !read_uint(*c, *body, "visibility_ms", pull.visibility_ms)
          || !read_uint(*c, *body, "wait_ms", pull.wait_ms))
        return;
      if (pull.wait_ms > queue::max_wait_ms)
        return send_error(*c, 400, "bad_request", "wait_ms is " + std::to_string(pull.wait_ms) + "; the limit is "
                                                    + std::to_string(queue::max_wait_ms));
      auto timeout = std::chrono::milliseconds(pull.wait_ms) + request_timeout + 1s;
      ask_within<std::vector<queue_message>>(
        c, timeout,
        [this, c](std::vector<queue_message>& got) {
          json messages = json::array();
          for (auto& m : got)
            messages.push_back(json{{"id", m.id}, {"receipt", m.receipt}, {"payload", payload_json(m.payload)},
                                    {"deliveries", m.deliveries}});
          send_json(*c, 200, json{{"messages", messages}});
        },
        queue_dequeue_atom::value, pull, false);
    });
    auto ack_or_nack = [this](bool ack) {
      return [this, ack](const call_ptr& c) {
        auto body = parse_body(*c);
        if (!body) return;
        if (ack && body->contains("messages")) return ack_batch(c, *body);
        auto id = body->find("id");
        if (id == body->end() || !id->is_string())
          return send_error(*c, 400, "bad_request", "the body needs \"id\": the message id from dequeue");
        uint64_t receipt = 0;
        uint64_t delay_ms = 0;
        if (!read_uint(*c, *body, "receipt", receipt) || !read_uint(*c, *body, "delay_ms", delay_ms)) return;
        if (ack)
          return ask<bool>(c, [this, c](bool) { send_json(*c, 200, json{{"acked", true}}); }, queue_ack_atom::value,
                           c->args[0], id->get<std::string>(), receipt, false);
        ask<bool>(c, [this, c](bool dead) { send_json(*c, 200, json{{"requeued", !dead}, {"dead_lettered", dead}}); },
                  queue_nack_atom::value, c->args[0], id->get<std::string>(), receipt, delay_ms, false);
      };
    };
    on("POST", "/v1/queues/{queue}/ack", ack_or_nack(true));
    on("POST", "/v1/queues/{queue}/nack", ack_or_nack(false));
    on("GET", "/v1/queues/{queue}/dlq", [this](const call_ptr& c) {
      uint64_t cursor = 0;
      uint64_t limit = 100;
      if (!read_param(*c, "cursor", cursor) || !read_param(*c, "limit", limit)) return;
      ask<dead_letters>(
        c,
        [this, c](dead_letters& r) {
          json messages = json::array();
          for (auto& m : r.messages)
            messages.push_back(json{{"id", m.id}, {"payload", payload_json(m.payload)}, {"deliveries", m.deliveries},
                                    {"reason", m.reason}, {"last_failure", m.last_failure},
                                    {"dead_since_ms", m.dead_since_ms}});
          send_json(*c, 200, json{{"messages", messages}, {"next_cursor", r.next_cursor}});
        },
        queue_dlq_atom::value, c->args[0], cursor, limit, false);
    });
    on("POST", "/v1/queues/{queue}/redrive", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      uint64_t max = 100;
      if (!read_uint(*c, *body, "max", max)) return;
      ask<uint64_t>(c, [this, c](uint64_t n) { send_json(*c, 200, json{{"redriven", n}}); }, queue_redrive_atom::value,
                    c->args[0], max, false);
    });
    on("PUT", "/v1/queues/{queue}/config", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      uint64_t max_deliveries = 0;
      if (!body->contains("max_deliveries"))
        return send_error(*c, 400, "bad_request", "the body needs \"max_deliveries\": a positive integer");
      if (!read_uint(*c, *body, "max_deliveries", max_deliveries)) return;
      ask<queue_info>(c, [this, c](queue_info& q) { send_json(*c, 200, to_json(q)); }, queue_config_atom::value,
                      c->args[0], max_deliveries, false);
    });
    on("GET", "/v1/queues/{queue}", [this](const call_ptr& c) {
      ask<queue_info>(
        c,
        [this, c](queue_info& q) {
          if (!q.exists) return send_error(*c, 404, "not_found", "no queue " + q.queue);
          send_json(*c, 200, to_json(q));
        },
        queue_stats_atom::value, c->args[0], false);
    });
    on("DELETE", "/v1/queues/{queue}", [this](const call_ptr& c) {
      ask<uint64_t>(c, [this, c](uint64_t n) { send_json(*c, 200, json{{"deleted", true}, {"messages", n}}); },
                    queue_delete_atom::value, c->args[0], false);
    });
    on("GET", "/v1/queues", [this](const call_ptr& c) {
      ask<std::vector<std::string>>(
        c, [this, c](std::vector<std::string>& names) { send_json(*c, 200, json{{"queues", names}}); },
        queue_list_atom::value, all_shards, false);
    });
    on("PUT", "/v1/cache/{key}", [this](const call_ptr& c) {
      auto body = parse_body(*c);
      if (!body) return;
      auto v = body->find("value");
      if (v == body->end() || !v->is_string()) return send_error(*c, 400, "bad_request", "the body needs \"value\": a string");
      auto value = v->get<std::string>();
      if (value.size() > cache::max_value_bytes)
        return send_error(*c, 413, "payload_too_large", "the value is " + std::to_string(value.size())
                                                           + " bytes; the limit is "
                                                           + std::to_string(cache::max_value_bytes));
      ask<bool>(c, [this, c](bool) { send_json(*c, 200, json{{"ok", true}}); }, cache_put_atom::value, c->args[0],
                value);
    });
    on("GET", "/v1/cache/{key}", [this](const call_ptr& c) {  // hits were answered on the HTTP loop (answer_from_mirror)
      ask<cache_entry>(
        c, [this, c](cache_entry& r) { send_json(*c, 200, json{{"key", r.key}, {"value", r.value}, {"state", r.state}}); },
        cache_get_atom::value, c->args[0]);
    });
    on("DELETE", "/v1/cache/{key}", [this](const call_ptr& c) {
      ask<bool>(c, [this, c](bool) { send_json(*c, 200, json{{"deleted", true}}); }, cache_del_atom::value, c->args[0]);
    });
    on("POST", "/v1/cache/{key}/invalidate", [this](const call_ptr& c) {
      ask<bool>(c, [this, c](bool) { send_json(*c, 200, json{{"invalidated", true}}); }, cache_inval_atom::value,
                c->args[0]);
    });
    on("GET", "/v1/cache", [this](const call_ptr& c) {
      ask<cache_stats>(
        c,
        [this, c](cache_stats& r) {
          send_json(*c, 200,
                    json{{"node", r.node_id}, {"protocol", r.protocol}, {"write_policy", r.write_policy},
                         {"eviction", r.eviction}, {"capacity", r.capacity}, {"epoch", r.epoch},
                         {"homes", r.members},
                         {"lines", {{"M", r.lines_m}, {"O", r.lines_o}, {"E", r.lines_e}, {"S", r.lines_s}}},
                         {"hits", r.hits}, {"misses", r.misses}, {"evictions", r.evictions},
                         {"write_backs", r.write_backs}, {"invalidations", r.invalidations},
                         {"memory_reads", r.memory_reads}, {"memory_writes", r.memory_writes},
                         {"messages_sent", r.messages_sent}});
        },
        cache_stats_atom::value);
    });
    on("GET", "/metrics", [this](const call_ptr& c) {
      respond(*c, 200, metrics.expose(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  // ---- requests ------------------------------------------------------------------------

  std::array<std::atomic<metrics::counter*>, 600> unmatched{};
  route* cache_get_route = nullptr;

  // On the HTTP loop thread: a cache read hit is answered here, anything else goes to the
  // gateway actor.
  void on_request(uint64_t connection, http::request&& req) {
    auto started = steady::now();
    if (answer_from_mirror(connection, req, started)) return;
    auto c = std::make_shared<http_call>();
    c->req = std::move(req);
    c->connection = connection;
    c->started = started;
    caf::anon_send(worker, c);
  }

  // A hit on a line this node holds readable is answered from the mirror the cache service
  // keeps, without a message to any actor (cache_mirror.hpp says why that is coherent),
  // with the same body as the cache service's answer. Anything else (a miss, a line in
  // transit, a key this node does not hold) is the cache service's to answer.
  bool answer_from_mirror(uint64_t connection, const http::request& req, steady::time_point started) {
    static constexpr std::string_view prefix = "/v1/cache/";
    auto& path = req.path;
    if (!cache_lines || req.method != "GET" || path.compare(0, prefix.size(), prefix) != 0
        || path.size() == prefix.size() || path.find('/', prefix.size()) != std::string::npos)
      return false;
    auto key = path.substr(prefix.size());
    auto hit = cache_lines->lookup(key, started);
    if (!hit) return false;
    // The bodies of send_json and send_error, built by hand: the hottest answers.
    int status = hit->value ? 200 : 404;
    auto body = hit->value ? "{\"key\":" + json_string(key) + ",\"state\":\"" + std::string{cache::to_string(hit->state)}
                               + "\",\"value\":" + json_string(*hit->value) + "}"
                           : "{\"error\":\"not_found\",\"message\":" + json_string("no value for key " + key) + "}";
    server->respond(connection, status, "application/json", body, !req.keep_alive);
    auto seconds = std::chrono::duration<double>(steady::now() - started).count();
    cache_get_route->latency->observe(seconds);
    count(*cache_get_route->by_status, cache_get_route->label, status);
    cache_get_seconds->observe(seconds);
    return true;
  }

  // In the gateway actor.
  void dispatch(const call_ptr& c) {
    std::string allowed;
    for (auto& r : routes) {
      if (!r.path.match(c->req.path, c->args)) continue;
      if (r.method != c->req.method) {
        allowed += (allowed.empty() ? "" : ", ") + r.method;
        continue;
      }
      c->route = &r;
      try {
        r.handler(c);
      } catch (const std::exception& e) {
        // A handler's bug must cost one request, not the gateway (and with it the node).
        log::error("http", "{} {} failed: {}", c->req.method, c->req.path, e.what());
        if (!c->answered) send_error(*c, 500, "internal", std::string{"the request failed: "} + e.what());
      }
      return;
    }
    if (!allowed.empty()) {
      count(unmatched, "unmatched", 405);
      return send_error(*c, 405, "method_not_allowed",
                        c->req.method + " " + c->req.path + " is not supported; use " + allowed);
    }
    count(unmatched, "unmatched", 404);
    send_error(*c, 404, "not_found", "no such endpoint: " + c->req.method + " " + c->req.path);
  }

  caf::behavior run(caf::event_based_actor* actor) {
    self = actor;
    self->delayed_send(self, tick_interval, gateway_tick_atom::value);
    return {
      [this](const call_ptr& c) { dispatch(c); },
      [this](gateway_tick_atom) {
        expire_calls();
        self->delayed_send(self, tick_interval, gateway_tick_atom::value);
      },
    };
  }
};

http_gateway::http_gateway(caf::actor_system& sys, node_api node, const node_settings& settings,
                           metrics::registry& metrics, std::shared_ptr<cache_mirror> cache_lines)
  : impl_(std::make_unique<impl>(sys, std::move(node), settings, metrics, std::move(cache_lines))) {}

http_gateway::~http_gateway() { stop(); }

std::optional<std::string> http_gateway::start() {
  auto& d = *impl_;
  d.install_routes();
  for (auto& r : d.routes)
    if (r.method == "GET" && r.label == "/v1/cache/{key}") d.cache_get_route = &r;
  auto* state = impl_.get();
  d.worker = d.sys.spawn([state](caf::event_based_actor* self) { return state->run(self); });
  http::server_settings hs;
  hs.host = d.settings.node_host;
  hs.port = d.settings.http_port;
  hs.parse = d.limits;
  hs.max_connections = d.settings.http_max_connections;
  d.server = std::make_unique<http::server>(
    hs, [state](uint64_t connection, http::request&& req) { state->on_request(connection, std::move(req)); },
    [state](int status) { state->count(state->unmatched, "unmatched", status); });
  if (auto err = d.server->start()) {
    stop();
    return err;
  }
  log::info("http", "serving HTTP on {}:{}", d.settings.node_host, d.settings.http_port);
  return std::nullopt;
}

void http_gateway::stop() {
  if (!impl_) return;
  if (impl_->server) impl_->server->stop();  // no request reaches the actor after this
  if (!impl_->worker) return;
  caf::scoped_actor self{impl_->sys};
  self->monitor(impl_->worker);
  self->send_exit(impl_->worker, caf::exit_reason::user_shutdown);
  self->receive([](const caf::down_msg&) {}, caf::after(std::chrono::seconds(3)) >> [] {
    log::warn("http", "the HTTP gateway did not stop within 3 s");
  });
  impl_->worker = nullptr;
}

}  // namespace dsync
