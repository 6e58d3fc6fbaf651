// The node's front actor (dsync::node_api), published on NODE_PORT. Peers, CAF clients and
// the HTTP gateway reach every subsystem of the node through it.
#pragma once

#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "dsync/api.hpp"

namespace dsync {

node_api spawn_node_actor(caf::actor_system& sys, node_info self, peer_links_actor links,
                          metrics::registry& metrics);

}  // namespace dsync
