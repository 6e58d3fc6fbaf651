#include "actors/node_actor.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>

#include "actors/control_machine.hpp"
#include "actors/forwarder.hpp"
#include "actors/log.hpp"

namespace dsync {

namespace {

using namespace std::chrono_literals;

// Inner steps leave time for the outer ones within the gateway's 5 s.
constexpr auto local_timeout = 3s;
constexpr auto forward_timeout = 4s;

struct node_state {
  node_info self;
  peer_links_actor links;
  raft_host_actor raft;
  lock_service_actor locks;
  queue_service_actor queues;
  cache_service_actor cache;
  metrics::registry* metrics = nullptr;
  metrics::counter* forwarded = nullptr;
  forwarder fwd;
  static const char* name;
};
const char* node_state::name = "node-api";

using self_ptr = node_api::stateful_pointer<node_state>;

// Sends the same request to the leader's node actor (marked forwarded) and relays its answer.
template <class T, class... Ts>
void forward_to_leader(self_ptr self, caf::typed_response_promise<T> rp, const std::string& leader, Ts... xs) {
  self->state.forwarded->inc();
  self->state.fwd.call<T>(
    self, leader, forward_timeout, [=](T& answer) mutable { rp.deliver(std::move(answer)); },
    [=](caf::error& err) mutable { rp.deliver(std::move(err)); }, xs...);
}

// The answer to a request that failed on this replica with `err`: on a follower (not_leader)
// the request `xs...` goes to the leader, unless it was forwarded here already.
template <class T, class... Ts>
void forward_on_follower(self_ptr self, caf::typed_response_promise<T> rp, caf::error& err, bool forwarded, Ts... xs) {
  if (err != errc::not_leader || forwarded) {
    rp.deliver(std::move(err));
    return;
  }
  auto leader = leader_of(err);
  if (leader.empty()) {
    rp.deliver(make_error(errc::unavailable, "no Raft leader is known yet"));
    return;
  }
  forward_to_leader<T>(self, rp, leader, xs...);
}

std::optional<std::string> check_key(const std::string& key) {
  if (key.empty()) return "the key is empty";
  if (key.size() > kv::max_key_bytes)
    return "the key is " + std::to_string(key.size()) + " bytes; the limit is " + std::to_string(kv::max_key_bytes);
  return std::nullopt;
}

// Proposes a KV write to the control group; on a follower, forwards the client's request
// (`retry`: the same request with forwarded = true) to the leader, unless it was forwarded.
template <class... Retry>
caf::result<uint64_t> kv_write(self_ptr self, const kv::command& c, bool forwarded, Retry... retry) {
  auto rp = self->make_response_promise<uint64_t>();
  propose_decoded<kv::outcome>(
    self, self->state.raft, control_group, control::kv_command(c),
    [](const std::string& answer, kv::outcome& o) { return kv::decode(answer, o); }, "state machine",
    [=](kv::outcome& o) mutable { rp.deliver(o.revision); },
    [=](caf::error& err) mutable { forward_on_follower<uint64_t>(self, rp, err, forwarded, retry...); });
  return rp;
}

// A membership change of the control group, run on the leader.
template <class... Retry>
void change_members(self_ptr self, caf::typed_response_promise<group_status> rp, uint8_t kind,
                    const std::string& node, bool forwarded, Retry... retry) {
  self->request(self->state.raft, std::chrono::seconds(35), member_change_atom::value, control_group, kind, node)
    .then(
      [=](group_status& status) mutable {
        if (kind == 1) {
          // A removed member's address is forgotten: restarted members stop looking for it.
          self->request(self->state.raft, caf::infinite, propose_atom::value, control_group,
                        control::member_address_command(node, "", 0))
            .then([](std::string&) {},
                  [=](caf::error& err) {
                    log::warn("node", "could not forget the address of removed member {}: {}", node,
                              self->system().render(err));
                  });
        }
        rp.deliver(std::move(status));
      },
      [=](caf::error& err) mutable { forward_on_follower<group_status>(self, rp, err, forwarded, retry...); });
}

// Records the address of `node` in the control group, so that every member links to it
// from then on, also after a restart with its old CLUSTER_NODES; then adds it as a voter.
// On a follower the request goes to the leader with the address (the leader may not know
// the new node yet: it links to it once the address is applied).
void record_address_then_add(self_ptr self, caf::typed_response_promise<group_status> rp, const std::string& node,
                             const std::string& host, uint16_t port, bool forwarded) {
  self->request(self->state.raft, caf::infinite, propose_atom::value, control_group,
                control::member_address_command(node, host, port))
    .then([=](std::string&) mutable {
            change_members(self, rp, 0, node, forwarded, member_add_atom::value, node, host, port);
          },
          [=](caf::error& err) mutable {
            forward_on_follower<group_status>(self, rp, err, forwarded, member_add_atom::value, node, host, port);
          });
}

}  // namespace

node_api spawn_node_actor(caf::actor_system& sys, node_info self_info, peer_links_actor links, raft_host_actor raft,
                          lock_service_actor locks, queue_service_actor queues, cache_service_actor cache,
                          metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> node_api::behavior_type {
    self->state.self = self_info;
    self->state.links = links;
    self->state.raft = raft;
    self->state.locks = locks;
    self->state.queues = queues;
    self->state.cache = cache;
    self->state.fwd.init(links);
    self->state.metrics = &registry;
    self->state.forwarded =
      &registry.get_counter("dsync_requests_forwarded_total", "Requests forwarded to the Raft leader's node");
    self->set_down_handler([=](caf::down_msg& dm) { self->state.fwd.on_down(dm); });
    return {
      [=](health_atom) { return health_status{self->state.self.node_id, "ok"}; },
      [=](cluster_atom) -> caf::result<cluster_status> {
        auto rp = self->make_response_promise<cluster_status>();
        self->request(self->state.links, 2s, members_atom::value)
          .then(
            [=](std::vector<member_status>& peers) mutable {
              auto& me = self->state.self;
              cluster_status out;
              out.node_id = me.node_id;
              out.cluster_id = me.cluster_id;
              out.members.push_back(member_status{me.host + ":" + std::to_string(me.port), me.node_id, "self", "",
                                                  me.started_at_ms, wall_clock_ms(), me.http_port});
              for (auto& p : peers) out.members.push_back(std::move(p));
              self->request(self->state.raft, 2s, status_atom::value)
                .then(
                  [=](std::vector<group_status>& groups) mutable {
                    for (auto& g : groups)
                      if (g.group == control_group) {
                        out.leader = g.leader;
                        out.term = g.term;
                      }
                    out.groups = std::move(groups);
                    rp.deliver(std::move(out));
                  },
                  [=](caf::error&) mutable { rp.deliver(std::move(out)); });
            },
            [=](caf::error& err) mutable {
              rp.deliver(make_error(errc::unavailable, "membership view: " + self->system().render(err)));
            });
        return rp;
      },
      [=](hello_atom, const node_info& peer, caf::strong_actor_ptr& api) -> caf::result<node_info> {
        // CAF 0.17 can lose track of which connection a peer's messages come in on (see
        // peer_links.cpp); its messages then arrive without a sender and no answer gets back.
        if (!self->current_sender()) {
          log::warn("peers", "a handshake from {} at {}:{} arrived without a sender: this node cannot answer it",
                    peer.node_id, peer.host, peer.port);
          self->state.metrics
            ->get_counter("dsync_peer_handshakes_anonymous_total",
                          "Peer handshakes that arrived without a sender (a CAF routing fault)")
            .inc();
        }
        if (auto why = check_compatible(self->state.self, peer)) {
          log::error("peers", "refusing handshake from {} at {}:{}: {}", peer.node_id, peer.host, peer.port, *why);
          self->state.metrics
            ->get_counter("dsync_peer_handshakes_refused_total", "Handshakes refused because cluster settings disagree",
                          {{"by", "us"}})
            .inc();
          return make_error(errc::handshake_refused, *why);
        }
        self->send(self->state.links, hello_atom::value, peer, caf::actor_cast<node_api>(std::move(api)));
        return self->state.self;
      },
      [=](ping_atom a, std::string& from, uint64_t seq) {
        return self->delegate(self->state.links, a, std::move(from), seq);
      },
      [=](raft_atom, std::vector<raft::message>& ms) { self->send(self->state.raft, raft_atom::value, std::move(ms)); },
      [=](kv_put_atom, std::string& key, std::string& value, bool forwarded) -> caf::result<uint64_t> {
        if (auto bad = check_key(key)) return make_error(errc::bad_request, *bad);
        if (value.size() > kv::max_value_bytes)
          return make_error(errc::bad_request, "the value is " + std::to_string(value.size()) +
                                                 " bytes; the limit is " + std::to_string(kv::max_value_bytes));
        return kv_write(self, kv::command{kv::op::put, key, value}, forwarded, kv_put_atom::value, key, value, true);
      },
      [=](kv_del_atom, std::string& key, bool forwarded) -> caf::result<uint64_t> {
        if (auto bad = check_key(key)) return make_error(errc::bad_request, *bad);
        return kv_write(self, kv::command{kv::op::erase, key, {}}, forwarded, kv_del_atom::value, key, true);
      },
      [=](member_add_atom, std::string& node, bool forwarded) -> caf::result<group_status> {
        if (node.empty() || node.size() > 64) return make_error(errc::bad_request, "a node id has 1-64 characters");
        // Only a running, linked node can catch up; refuse others at once.
        auto rp = self->make_response_promise<group_status>();
        auto not_linked = [=]() mutable {
          rp.deliver(make_error(errc::bad_request, "node " + node + " is not linked to " + self->state.self.node_id +
                                                      ": start it with CLUSTER_STATE=existing and this cluster's "
                                                      "members in CLUSTER_NODES first"));
        };
        auto add_at_its_address = [=](std::vector<member_status>& members) mutable {
          auto m = std::find_if(members.begin(), members.end(), [&](const member_status& s) {
            return s.node_id == node && (s.state == "alive" || s.state == "suspected");
          });
          auto colon = m == members.end() ? std::string::npos : m->address.rfind(':');
          if (colon == std::string::npos) return not_linked();
          auto port = static_cast<uint16_t>(std::strtoul(m->address.c_str() + colon + 1, nullptr, 10));
          record_address_then_add(self, rp, node, m->address.substr(0, colon), port, forwarded);
        };
        // lookup waits for a link being made (the node just started); members has its address.
        self->request(self->state.links, local_timeout, lookup_atom::value, node)
          .then(
            [=](node_api&) mutable {
              self->request(self->state.links, local_timeout, members_atom::value)
                .then(add_at_its_address, [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
            },
            [=](caf::error&) mutable { not_linked(); });
        return rp;
      },
      [=](member_add_atom, std::string& node, std::string& host, uint16_t port) -> caf::result<group_status> {
        if (node.empty() || node.size() > 64 || host.empty() || host.size() > 255 || port == 0)
          return make_error(errc::bad_request, "a forwarded member add needs a node id of 1-64 characters and its address");
        auto rp = self->make_response_promise<group_status>();
        record_address_then_add(self, rp, node, host, port, true);
        return rp;
      },
      [=](member_remove_atom, std::string& node, bool forwarded) -> caf::result<group_status> {
        if (node.empty() || node.size() > 64) return make_error(errc::bad_request, "a node id has 1-64 characters");
        auto rp = self->make_response_promise<group_status>();
        change_members(self, rp, 1, node, forwarded, member_remove_atom::value, node, true);
        return rp;
      },
      [=](kv_get_atom, std::string& key, bool linearizable, bool forwarded) -> caf::result<kv_entry> {
        if (auto bad = check_key(key)) return make_error(errc::bad_request, *bad);
        auto rp = self->make_response_promise<kv_entry>();
        auto deliver = [=](const std::string& answer) mutable {
          std::optional<kv::value_record> v;
          if (!control::decode_kv_answer(answer, v))
            { rp.deliver(make_error(errc::internal, "malformed answer from the state machine")); return; }
          if (!v) { rp.deliver(make_error(errc::not_found, "no value for key " + key)); return; }
          rp.deliver(kv_entry{key, v->value, v->revision});
        };
        self->request(self->state.raft, caf::infinite, query_atom::value, control_group, control::kv_query(key),
                      linearizable)
          .then([=](std::string& answer) mutable { deliver(answer); },
                [=](caf::error& err) mutable {
                  forward_on_follower<kv_entry>(self, rp, err, forwarded, kv_get_atom::value, key, linearizable, true);
                });
        return rp;
      },
      [=](lock_acquire_atom a, lock_request& req, bool forwarded) -> caf::result<lock_grant> {
        return self->delegate(self->state.locks, a, std::move(req), forwarded);
      },
      [=](lock_release_atom a, std::string& lock, std::string& client, bool forwarded) -> caf::result<bool> {
        return self->delegate(self->state.locks, a, std::move(lock), std::move(client), forwarded);
      },
      [=](lock_refresh_atom a, std::string& lock, std::string& client, bool forwarded) -> caf::result<lock_grant> {
        return self->delegate(self->state.locks, a, std::move(lock), std::move(client), forwarded);
      },
      [=](lock_status_atom a, std::string& lock, bool linearizable, bool forwarded) -> caf::result<lock_info> {
        return self->delegate(self->state.locks, a, std::move(lock), linearizable, forwarded);
      },
      [=](queue_enqueue_atom a, std::string& queue, std::string& payload, bool forwarded) -> caf::result<std::string> {
        return self->delegate(self->state.queues, a, std::move(queue), std::move(payload), forwarded);
      },
      [=](queue_dequeue_atom a, queue_pull& pull, bool forwarded) -> caf::result<std::vector<queue_message>> {
        return self->delegate(self->state.queues, a, std::move(pull), forwarded);
      },
      [=](queue_ack_atom a, std::string& queue, std::string& id, uint64_t receipt, bool forwarded) -> caf::result<bool> {
        return self->delegate(self->state.queues, a, std::move(queue), std::move(id), receipt, forwarded);
      },
      [=](queue_nack_atom a, std::string& queue, std::string& id, uint64_t receipt, uint64_t delay_ms,
          bool forwarded) -> caf::result<bool> {
        return self->delegate(self->state.queues, a, std::move(queue), std::move(id), receipt, delay_ms, forwarded);
      },
      [=](queue_stats_atom a, std::string& queue, bool forwarded) -> caf::result<queue_info> {
        return self->delegate(self->state.queues, a, std::move(queue), forwarded);
      },
      [=](queue_dlq_atom a, std::string& queue, uint64_t cursor, uint64_t limit, bool forwarded)
        -> caf::result<dead_letters> {
        return self->delegate(self->state.queues, a, std::move(queue), cursor, limit, forwarded);
      },
      [=](queue_redrive_atom a, std::string& queue, uint64_t max, bool forwarded) -> caf::result<uint64_t> {
        return self->delegate(self->state.queues, a, std::move(queue), max, forwarded);
      },
      [=](queue_delete_atom a, std::string& queue, bool forwarded) -> caf::result<uint64_t> {
        return self->delegate(self->state.queues, a, std::move(queue), forwarded);
      },
      [=](queue_config_atom a, std::string& queue, uint64_t max_deliveries, bool forwarded) -> caf::result<queue_info> {
        return self->delegate(self->state.queues, a, std::move(queue), max_deliveries, forwarded);
      },
      [=](queue_list_atom a, uint32_t shard, bool forwarded) -> caf::result<std::vector<std::string>> {
        return self->delegate(self->state.queues, a, shard, forwarded);
      },
      [=](cache_get_atom a, std::string& key) -> caf::result<cache_entry> {
        return self->delegate(self->state.cache, a, std::move(key));
      },
      [=](cache_put_atom a, std::string& key, std::string& value) -> caf::result<bool> {
        return self->delegate(self->state.cache, a, std::move(key), std::move(value));
      },
      [=](cache_del_atom a, std::string& key) -> caf::result<bool> {
        return self->delegate(self->state.cache, a, std::move(key));
      },
      [=](cache_inval_atom a, std::string& key) -> caf::result<bool> {
        return self->delegate(self->state.cache, a, std::move(key));
      },
      [=](cache_stats_atom a) -> caf::result<cache_stats> { return self->delegate(self->state.cache, a); },
      // In order, so that each pair of coherence components sees its messages in order.
      [=](cache_msg_atom a, std::string& from, std::string& bytes) {
        self->send(self->state.cache, a, std::move(from), std::move(bytes));
      },
      [=](forward_sweep_atom) { self->state.fwd.sweep(self); },
    };
  });
}

}  // namespace dsync
