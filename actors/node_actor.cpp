#include "actors/node_actor.hpp"

#include <chrono>

#include "actors/log.hpp"

namespace dsync {

namespace {

struct node_state {
  node_info self;
  peer_links_actor links;
  metrics::registry* metrics = nullptr;
  static const char* name;
};
const char* node_state::name = "node-api";

using self_ptr = node_api::stateful_pointer<node_state>;

}  // namespace

node_api spawn_node_actor(caf::actor_system& sys, node_info self_info, peer_links_actor links,
                          metrics::registry& registry) {
  return sys.spawn([=, &registry](self_ptr self) -> node_api::behavior_type {
    self->state.self = self_info;
    self->state.links = links;
    self->state.metrics = &registry;
    return {
      [=](health_atom) { return health_status{self->state.self.node_id, "ok"}; },
      [=](cluster_atom) -> caf::result<cluster_status> {
        auto rp = self->make_response_promise<cluster_status>();
        self->request(self->state.links, std::chrono::seconds(2), members_atom::value)
          .then(
            [=](std::vector<member_status>& peers) mutable {
              auto& me = self->state.self;
              cluster_status out;
              out.node_id = me.node_id;
              out.cluster_id = me.cluster_id;
              out.members.push_back(member_status{me.host + ":" + std::to_string(me.port), me.node_id,
                                                  "self", "", me.started_at_ms, wall_clock_ms(),
                                                  me.http_port});
              for (auto& p : peers) out.members.push_back(std::move(p));
              rp.deliver(std::move(out));
            },
            [=](caf::error& err) mutable {
              rp.deliver(make_error(errc::unavailable, "membership view: " + self->system().render(err)));
            });
        return rp;
      },
      [=](hello_atom, const node_info& peer) -> caf::result<node_info> {
        if (auto why = check_compatible(self->state.self, peer)) {
          log::error("peers", "refusing handshake from {} at {}:{}: {}", peer.node_id, peer.host,
                     peer.port, *why);
          self->state.metrics
            ->get_counter("dsync_peer_handshakes_refused_total",
                          "Handshakes refused because cluster settings disagree", {{"by", "us"}})
            .inc();
          return make_error(errc::handshake_refused, *why);
        }
        self->send(self->state.links, hello_atom::value, peer);
        return self->state.self;
      },
      [=](ping_atom, const std::string&, uint64_t seq) { return seq; },
    };
  });
}

}  // namespace dsync
