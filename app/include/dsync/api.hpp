// The public CAF interface of a dsync node: the message types and the typed actor that
// every node publishes on NODE_PORT. Peers and C++ clients (dsync::client) talk to a node
// only through `node_api`. Every process that exchanges these messages must call
// dsync::register_types() on its actor_system_config before creating the actor system.
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "protocols/raft/types.hpp"

namespace dsync {

// Bumped when the wire format of any message changes; nodes of another major refuse
// each other at the handshake.
constexpr uint32_t protocol_version = 1;
extern const char* const software_version;

// Atoms: at most 10 characters, unique across the system (n_ = node, p_ = peer links).
using health_atom = caf::atom_constant<caf::atom("n_health")>;
using cluster_atom = caf::atom_constant<caf::atom("n_cluster")>;
using hello_atom = caf::atom_constant<caf::atom("p_hello")>;
using ping_atom = caf::atom_constant<caf::atom("p_ping")>;
using members_atom = caf::atom_constant<caf::atom("p_members")>;
using subscribe_atom = caf::atom_constant<caf::atom("p_subscr")>;
using member_atom = caf::atom_constant<caf::atom("p_member")>;
using retry_atom = caf::atom_constant<caf::atom("p_retry")>;
using tick_atom = caf::atom_constant<caf::atom("p_tick")>;
using raft_atom = caf::atom_constant<caf::atom("r_msg")>;
using propose_atom = caf::atom_constant<caf::atom("r_propose")>;
using query_atom = caf::atom_constant<caf::atom("r_query")>;
using status_atom = caf::atom_constant<caf::atom("r_status")>;
using synced_atom = caf::atom_constant<caf::atom("r_synced")>;
using raft_tick_atom = caf::atom_constant<caf::atom("r_tick")>;
using lookup_atom = caf::atom_constant<caf::atom("p_lookup")>;
using step_down_atom = caf::atom_constant<caf::atom("r_stepdown")>;
using member_change_atom = caf::atom_constant<caf::atom("r_member")>;
using member_add_atom = caf::atom_constant<caf::atom("m_add")>;
using member_remove_atom = caf::atom_constant<caf::atom("m_remove")>;
using kv_put_atom = caf::atom_constant<caf::atom("kv_put")>;
using kv_get_atom = caf::atom_constant<caf::atom("kv_get")>;
using kv_del_atom = caf::atom_constant<caf::atom("kv_del")>;

// Errors a node answers with; they cross the network intact (code, category, context).
enum class errc : uint8_t {
  handshake_refused = 1,  // a peer whose cluster settings disagree
  unavailable,            // no quorum / the serving actor could not be reached in time
  bad_request,            // malformed or out-of-range input
  not_leader,             // context: the leader's node id ("" if unknown)
  not_found,              // no such key / lock / message
  internal,               // a bug or a failed disk: the node logs it
};
inline caf::error make_error(errc x) {
  return caf::error{static_cast<uint8_t>(x), caf::atom("dsync")};
}
inline caf::error make_error(errc x, std::string reason) {
  return caf::error{static_cast<uint8_t>(x), caf::atom("dsync"), caf::make_message(std::move(reason))};
}
std::string to_string(errc x);
// The reason attached to a dsync error (its context string), or CAF's rendering of any other.
std::string error_reason(const caf::error& err);

// Sent by a node when it links to a peer, and answered with the peer's own.
struct node_info {
  std::string node_id;
  std::string cluster_id;
  uint32_t protocol = protocol_version;
  std::string software;
  std::string coherence_protocol;  // MESI, MOSI or MOESI
  std::string host;
  uint16_t port = 0;
  uint16_t http_port = 0;
  uint64_t started_at_ms = 0;  // wall clock; tells a restarted process from the old one
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.node_id, x.cluster_id, x.protocol, x.software,
           x.coherence_protocol, x.host, x.port, x.http_port, x.started_at_ms);
}

// One member as this node sees it.
struct member_status {
  std::string address;  // host:port as configured
  std::string node_id;  // "" until the first handshake
  std::string state;    // self, connecting, alive, suspected, down, refused
  std::string reason;   // why it is down or refused ("" when alive)
  uint64_t since_ms = 0;         // wall clock (ms since the epoch) of the last state change
  uint64_t last_contact_ms = 0;  // wall clock of the last answer from it; 0 = never
  uint16_t http_port = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_status& x) {
  return f(caf::meta::type_name("member_status"), x.address, x.node_id, x.state, x.reason,
           x.since_ms, x.last_contact_ms, x.http_port);
}

// One Raft group as this node sees it.
struct group_status {
  uint64_t group = 0;
  std::string leader;  // "" while no leader is known
  uint64_t term = 0;
  std::string role;    // follower, pre_candidate, candidate, leader, or "starting"
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  std::vector<std::string> voters;
  std::vector<std::string> learners;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_status& x) {
  return f(caf::meta::type_name("group_status"), x.group, x.leader, x.term, x.role, x.commit_index,
           x.applied_index, x.last_index, x.snapshot_index, x.voters, x.learners);
}

struct cluster_status {
  std::string node_id;
  std::string cluster_id;
  std::string leader;  // leader of the control group; "" while no leader is known
  uint64_t term = 0;   // term of the control group
  std::vector<member_status> members;  // this node first
  std::vector<group_status> groups;    // the control group (0) first
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_status& x) {
  return f(caf::meta::type_name("cluster_status"), x.node_id, x.cluster_id, x.leader, x.term,
           x.members, x.groups);
}

// A value of the replicated key-value store (control group).
struct kv_entry {
  std::string key;
  std::string value;
  uint64_t revision = 0;  // log index of the write that set it
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_entry& x) {
  return f(caf::meta::type_name("kv_entry"), x.key, x.value, x.revision);
}

struct health_status {
  std::string node_id;
  std::string status;  // "ok"
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_status& x) {
  return f(caf::meta::type_name("health_status"), x.node_id, x.status);
}

// The front actor of a node, published on NODE_PORT.
using node_api = caf::typed_actor<
  caf::replies_to<health_atom>::with<health_status>,
  caf::replies_to<cluster_atom>::with<cluster_status>,
  // Peer handshake: refused with errc::handshake_refused when cluster settings disagree.
  caf::replies_to<hello_atom, node_info>::with<node_info>,
  // Liveness probe between peers: (sender node id, sequence) -> sequence.
  caf::replies_to<ping_atom, std::string, uint64_t>::with<uint64_t>,
  // Raft traffic between nodes, dispatched to the local actor of message.group.
  caf::reacts_to<raft_atom, raft::message>,
  // Replicated key-value store. put/del answer the revision (log index) of the write;
  // get(key, linearizable) answers the entry or errc::not_found. Any node serves any
  // request; the forwarded flag (set by nodes, not clients) stops a second forward.
  caf::replies_to<kv_put_atom, std::string, std::string, bool>::with<uint64_t>,
  caf::replies_to<kv_del_atom, std::string, bool>::with<uint64_t>,
  caf::replies_to<kv_get_atom, std::string, bool, bool>::with<kv_entry>,
  // Membership of the control group (node id, forwarded). add: the node joins as a
  // learner, catches up, then becomes a voter; the answer is the configuration after it.
  // The node must be running and linked (started with CLUSTER_STATE=existing).
  caf::replies_to<member_add_atom, std::string, bool>::with<group_status>,
  caf::replies_to<member_remove_atom, std::string, bool>::with<group_status>>;

// Receives membership changes (one member_status per change).
using membership_listener = caf::typed_actor<caf::reacts_to<member_atom, member_status>>;

void register_types(caf::actor_system_config& cfg);

}  // namespace dsync

