// The node's front actor (dsync::node_api), published on NODE_PORT. Peers, CAF clients and
// the HTTP gateway reach every subsystem of the node through it. A request that must run
// on a Raft leader is tried on the local replica and, when that is a follower, forwarded
// once to the leader's node actor, so a client never needs to know the leader.
#pragma once

#include "actors/cache_service.hpp"
#include "actors/lock_service.hpp"
#include "actors/metrics.hpp"
#include "actors/queue_service.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/raft_host.hpp"
#include "dsync/api.hpp"

namespace dsync {

node_api spawn_node_actor(caf::actor_system& sys, node_info self, peer_links_actor links, raft_host_actor raft,
                          lock_service_actor locks, queue_service_actor queues, cache_service_actor cache,
                          metrics::registry& metrics);

}  // namespace dsync
