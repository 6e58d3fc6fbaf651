// The coherent cache of one node: the actor that runs this node's cache controller and
// home directory (protocols/cache: MESI, MOSI or MOESI) and wires them to the world.
//
// - Clients: get / put / del / invalidate from the node API become controller requests;
//   their completions answer the callers (a request not done within the request timeout
//   is expired and answered errc::unavailable, naming Redis if Redis is what failed).
// - Other nodes: coherence messages travel through the peers' node APIs (cache_msg_atom),
//   one actor pair per two nodes, so each pair of components sees its messages in order,
//   as the protocol requires. Messages for this node's own components go through a local
//   queue, after the batch that produced them.
// - Memory: memory operations go to Redis through the redis actor; a failed one is retried
//   (they are idempotent) until it succeeds, as the protocol requires.
// - Membership: the control Raft group replicates the cache membership (the members that
//   are home directories; its epoch is the log index it was committed at), so every node
//   hashes keys to the same homes in the same epoch. Its leader commits a new membership
//   when a member has been down (or back) for a moment. Deaths and returns of peers come
//   from the peer links and go to both components at once.
// - Pauses: every input first checks this node's lease (protocols/cache/lease.hpp). A node
//   that was stopped long enough to have been declared dead (SIGSTOP, a stalled VM) drops
//   its components without acting on them, answers clients "unavailable", and rejoins as a
//   new incarnation in a newer epoch once every peer forgot the old one. A leader commits
//   a new epoch when a node rejoins or comes back, even if the members stay the same.
// - Read hits: after every step of the controller, and before acting on that step's
//   effects, the lines it changed are copied into (or erased from) the cache mirror, from
//   which the HTTP gateway answers hits without a message (cache_mirror.hpp says why that
//   is coherent). Hits served there are counted in the hit metrics and fed back into the
//   replacement order on the next request or tick.
#pragma once

#include <memory>

#include "actors/cache_mirror.hpp"
#include "actors/control_machine.hpp"
#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/raft_host.hpp"
#include "actors/redis/redis_pool.hpp"
#include "dsync/api.hpp"

namespace dsync {

using cache_members_atom = caf::atom_constant<caf::atom("c_members")>;
using cache_leader_atom = caf::atom_constant<caf::atom("c_leader")>;
using cache_tick_atom = caf::atom_constant<caf::atom("c_tick")>;
using cache_attach_atom = caf::atom_constant<caf::atom("c_attach")>;
using cache_later_atom = caf::atom_constant<caf::atom("c_later")>;

using cache_service_actor = caf::typed_actor<
  caf::replies_to<cache_get_atom, std::string>::with<cache_entry>,
  caf::replies_to<cache_put_atom, std::string, std::string>::with<bool>,
  caf::replies_to<cache_del_atom, std::string>::with<bool>,
  caf::replies_to<cache_inval_atom, std::string>::with<bool>,
  caf::replies_to<cache_stats_atom>::with<cache_stats>,
  caf::reacts_to<cache_msg_atom, std::string, std::string>,
  caf::reacts_to<cache_attach_atom, raft_host_actor>,
  // From the control group's state machine: (epoch, members); this node leads it.
  caf::reacts_to<cache_members_atom, uint64_t, std::vector<std::string>>,
  caf::reacts_to<cache_leader_atom, bool>,
  // From the peer links.
  caf::reacts_to<member_atom, member_status>,
  // Internal: the periodic tick; a deferred step (deferred.hpp).
  caf::reacts_to<cache_tick_atom>,
  caf::reacts_to<cache_later_atom, uint64_t>>;

struct cache_service_settings {
  std::string self;
  std::string protocol = "MESI";
  bool write_through = false;
  bool lfu = false;
  uint64_t capacity = 10000;
  std::string redis_address;  // for error messages
  // The failure detector of the peer links (PEER_PING_MS, PEER_DOWN_MS): how soon a silent
  // node may be declared dead, so how long a pause this node's cache survives.
  uint32_t peer_ping_ms = 200;
  uint32_t peer_down_ms = 3000;
};

// `mirror`: the copy of this node's readable lines that the service keeps up to date after
// every step of its controller, for read hits served without an actor (cache_mirror.hpp);
// the HTTP gateway reads it. Null: the service keeps one nobody reads.
cache_service_actor spawn_cache_service(caf::actor_system& sys, cache_service_settings settings,
                                        peer_links_actor links, redis_actor redis, metrics::registry& metrics,
                                        std::shared_ptr<cache_mirror> mirror = nullptr);

// The hooks through which the control machine on this node reports to `service`.
cache_observer observe_cache(cache_service_actor service);

}  // namespace dsync
