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
constexpr uint32_t protocol_version = 4;
extern const char* const software_version;

// Atoms: at most 10 characters, unique across the system (n_ = node, p_ = peer links).
using health_atom = caf::atom_constant<caf::atom("n_health")>;
using cluster_atom = caf::atom_constant<caf::atom("n_cluster")>;
using hello_atom = caf::atom_constant<caf::atom("p_hello")>;
using ping_atom = caf::atom_constant<caf::atom("p_ping")>;
using members_atom = caf::atom_constant<caf::atom("p_members")>;
using subscribe_atom = caf::atom_constant<caf::atom("p_subscr")>;
using start_atom = caf::atom_constant<caf::atom("p_start")>;
using member_atom = caf::atom_constant<caf::atom("p_member")>;
using retry_atom = caf::atom_constant<caf::atom("p_retry")>;
using tick_atom = caf::atom_constant<caf::atom("p_tick")>;
using raft_atom = caf::atom_constant<caf::atom("r_msg")>;
using propose_atom = caf::atom_constant<caf::atom("r_propose")>;
using query_atom = caf::atom_constant<caf::atom("r_query")>;
using status_atom = caf::atom_constant<caf::atom("r_status")>;
using synced_atom = caf::atom_constant<caf::atom("r_synced")>;
using raft_tick_atom = caf::atom_constant<caf::atom("r_tick")>;
using raft_drive_atom = caf::atom_constant<caf::atom("r_drive")>;
using raft_flush_atom = caf::atom_constant<caf::atom("r_flush")>;
using lookup_atom = caf::atom_constant<caf::atom("p_lookup")>;
using address_atom = caf::atom_constant<caf::atom("p_address")>;
using step_down_atom = caf::atom_constant<caf::atom("r_stepdown")>;
using member_change_atom = caf::atom_constant<caf::atom("r_member")>;
using transfer_atom = caf::atom_constant<caf::atom("r_transfer")>;
using member_add_atom = caf::atom_constant<caf::atom("m_add")>;
using member_remove_atom = caf::atom_constant<caf::atom("m_remove")>;
using kv_put_atom = caf::atom_constant<caf::atom("kv_put")>;
using kv_get_atom = caf::atom_constant<caf::atom("kv_get")>;
using kv_del_atom = caf::atom_constant<caf::atom("kv_del")>;
using lock_acquire_atom = caf::atom_constant<caf::atom("l_acquire")>;
using lock_release_atom = caf::atom_constant<caf::atom("l_release")>;
using lock_refresh_atom = caf::atom_constant<caf::atom("l_refresh")>;
using lock_status_atom = caf::atom_constant<caf::atom("l_status")>;
using queue_enqueue_atom = caf::atom_constant<caf::atom("q_enqueue")>;
using queue_dequeue_atom = caf::atom_constant<caf::atom("q_dequeue")>;
using queue_ack_atom = caf::atom_constant<caf::atom("q_ack")>;
using queue_nack_atom = caf::atom_constant<caf::atom("q_nack")>;
using queue_stats_atom = caf::atom_constant<caf::atom("q_stats")>;
using queue_dlq_atom = caf::atom_constant<caf::atom("q_dlq")>;
using queue_redrive_atom = caf::atom_constant<caf::atom("q_redrive")>;
using queue_delete_atom = caf::atom_constant<caf::atom("q_delete")>;
using queue_config_atom = caf::atom_constant<caf::atom("q_config")>;
using queue_list_atom = caf::atom_constant<caf::atom("q_list")>;
using cache_get_atom = caf::atom_constant<caf::atom("c_get")>;
using cache_put_atom = caf::atom_constant<caf::atom("c_put")>;
using cache_del_atom = caf::atom_constant<caf::atom("c_del")>;
using cache_inval_atom = caf::atom_constant<caf::atom("c_inval")>;
using cache_stats_atom = caf::atom_constant<caf::atom("c_stats")>;
using cache_msg_atom = caf::atom_constant<caf::atom("c_msg")>;
// Internal: the timer of the node actor's calls to other nodes (actors/forwarder.hpp).
using forward_sweep_atom = caf::atom_constant<caf::atom("fwd_sweep")>;

// Errors a node answers with; they cross the network intact (code, category, context).
enum class errc : uint8_t {
  handshake_refused = 1,  // a peer whose cluster settings disagree
  unavailable,            // no quorum / the serving actor could not be reached in time
  bad_request,            // malformed or out-of-range input
  not_leader,             // context: the leader's node id ("" if unknown)
  not_found,              // no such key / lock / message
  internal,               // a bug or a failed disk: the node logs it
  timeout,                // a lock was not granted within wait_ms
  deadlock,               // waiting would close a cycle; context: reason, then the cycle
  not_held,               // release/refresh of a lock the client does not hold
  limit_exceeded,         // a documented limit (waiters per lock, locks per client, ...)
  stale_receipt,          // ack/nack of a delivery that timed out (the message may be elsewhere)
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
  uint32_t queue_shards = 0;       // fixed per cluster
  uint32_t queue_replicas = 0;
  std::string host;
  uint16_t port = 0;
  uint16_t http_port = 0;
  uint64_t started_at_ms = 0;  // wall clock; tells a restarted process from the old one
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.node_id, x.cluster_id, x.protocol, x.software,
           x.coherence_protocol, x.queue_shards, x.queue_replicas, x.host, x.port, x.http_port, x.started_at_ms);
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

// A lock request (see the lock table's contract in protocols/locks/lock_table.hpp).
struct lock_request {
  std::string lock;
  std::string client;
  std::string mode = "exclusive";  // exclusive | shared
  uint64_t wait_ms = 0;            // 0: try once
  uint64_t ttl_ms = 10000;         // lease; refresh before it lapses
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lock_request& x) {
  return f(caf::meta::type_name("lock_request"), x.lock, x.client, x.mode, x.wait_ms, x.ttl_ms);
}

// A held lock. The token (fencing token) grows with every grant of any lock, so a guarded
// resource can refuse a holder whose token is older than one it has already seen.
struct lock_grant {
  std::string lock;
  std::string client;
  std::string mode;
  uint64_t token = 0;
  uint64_t ttl_ms = 0;
  uint64_t expires_in_ms = 0;  // as the answering leader's clock sees it
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lock_grant& x) {
  return f(caf::meta::type_name("lock_grant"), x.lock, x.client, x.mode, x.token, x.ttl_ms, x.expires_in_ms);
}

struct lock_waiter {
  std::string client;
  std::string mode;
  bool upgrade = false;      // a shared holder waiting to become the exclusive one
  uint64_t gives_up_in_ms = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lock_waiter& x) {
  return f(caf::meta::type_name("lock_waiter"), x.client, x.mode, x.upgrade, x.gives_up_in_ms);
}

struct lock_info {
  std::string lock;
  std::string mode;  // exclusive, shared, or "free"
  std::vector<lock_grant> holders;   // in grant order
  std::vector<lock_waiter> waiters;  // in queue order
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lock_info& x) {
  return f(caf::meta::type_name("lock_info"), x.lock, x.mode, x.holders, x.waiters);
}

// A dequeue: up to `max` messages for `consumer`, invisible to others for visibility_ms;
// waits up to wait_ms for a first message when the queue is empty (long poll).
struct queue_pull {
  std::string queue;
  std::string consumer;
  uint64_t max = 1;
  uint64_t visibility_ms = 30000;
  uint64_t wait_ms = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_pull& x) {
  return f(caf::meta::type_name("queue_pull"), x.queue, x.consumer, x.max, x.visibility_ms, x.wait_ms);
}

// One delivery of a message: ack or nack it quoting id and receipt.
struct queue_message {
  std::string id;
  uint64_t receipt = 0;
  std::string payload;
  uint64_t deliveries = 0;  // 1 on the first delivery
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_message& x) {
  return f(caf::meta::type_name("queue_message"), x.id, x.receipt, x.payload, x.deliveries);
}

struct queue_info {
  std::string queue;
  bool exists = false;
  uint32_t shard = 0;
  uint64_t ready = 0;
  uint64_t in_flight = 0;
  uint64_t delayed = 0;  // nacked with a delay
  uint64_t dead = 0;     // in the dead-letter queue
  uint64_t max_deliveries = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_info& x) {
  return f(caf::meta::type_name("queue_info"), x.queue, x.exists, x.shard, x.ready, x.in_flight, x.delayed, x.dead,
           x.max_deliveries);
}

struct dead_letter {
  std::string id;
  std::string payload;
  uint64_t deliveries = 0;
  std::string reason;        // max_deliveries
  std::string last_failure;  // visibility_timeout | nack
  uint64_t dead_since_ms = 0;  // leader time
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
  return f(caf::meta::type_name("dead_letter"), x.id, x.payload, x.deliveries, x.reason, x.last_failure,
           x.dead_since_ms);
}

struct dead_letters {
  std::vector<dead_letter> messages;
  uint64_t next_cursor = 0;  // 0: no more
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letters& x) {
  return f(caf::meta::type_name("dead_letters"), x.messages, x.next_cursor);
}

// A cache read: the value and the state of the line on the node that served it.
struct cache_entry {
  std::string key;
  std::string value;
  std::string state;  // M, O, E or S
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_entry& x) {
  return f(caf::meta::type_name("cache_entry"), x.key, x.value, x.state);
}

// One node's cache: its settings, lines by state and counters since it started.
struct cache_stats {
  std::string node_id;
  std::string protocol;      // MESI, MOSI, MOESI
  std::string write_policy;  // write-back, write-through
  std::string eviction;      // lru, lfu
  uint64_t capacity = 0;
  uint64_t epoch = 0;        // directory epoch (0: the cache is not serving yet)
  std::vector<std::string> members;  // home directories of this epoch
  uint64_t lines_m = 0, lines_o = 0, lines_e = 0, lines_s = 0;
  uint64_t hits = 0, misses = 0, evictions = 0, write_backs = 0, invalidations = 0;
  uint64_t memory_reads = 0, memory_writes = 0, messages_sent = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats& x) {
  return f(caf::meta::type_name("cache_stats"), x.node_id, x.protocol, x.write_policy, x.eviction, x.capacity,
           x.epoch, x.members, x.lines_m, x.lines_o, x.lines_e, x.lines_s, x.hits, x.misses, x.evictions,
           x.write_backs, x.invalidations, x.memory_reads, x.memory_writes, x.messages_sent);
}

// queue_list_atom's shard argument for "every shard".
constexpr uint32_t all_shards = 0xffffffff;

// The front actor of a node, published on NODE_PORT.
using node_api = caf::typed_actor<
  caf::replies_to<health_atom>::with<health_status>,
  caf::replies_to<cluster_atom>::with<cluster_status>,
  // Peer handshake (the caller's info and its own node API, so that the called node can
  // link back over the same connection): refused with errc::handshake_refused when
  // cluster settings disagree.
  caf::replies_to<hello_atom, node_info, caf::strong_actor_ptr>::with<node_info>,
  // Liveness probe between peers: (sender node id, sequence) -> whether the sender is
  // linked here (false: this node dropped its link, and the sender should handshake again).
  caf::replies_to<ping_atom, std::string, uint64_t>::with<bool>,
  // Raft traffic between nodes, each message dispatched to the local actor of its group
  // (the messages of all groups for one node that were ready at once travel together).
  caf::reacts_to<raft_atom, std::vector<raft::message>>,
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
  // An add forwarded to the leader by the member linked to the new node, with the new
  // node's address (node id, host, port), which the control group records for all members.
  caf::replies_to<member_add_atom, std::string, std::string, uint16_t>::with<group_status>,
  caf::replies_to<member_remove_atom, std::string, bool>::with<group_status>,
  // Locks (the control group's lock table). acquire answers the grant once held, or
  // errc::timeout / deadlock / bad_request / limit_exceeded; a request in flight across a
  // leader change is retried against the new leader (acquire is idempotent per lock and
  // client). release (lock, client, forwarded) answers true if the client held it, false
  // if it was only waiting (the wait is cancelled); errc::not_held otherwise. refresh
  // renews the lease. status (lock, linearizable, forwarded).
  caf::replies_to<lock_acquire_atom, lock_request, bool>::with<lock_grant>,
  caf::replies_to<lock_release_atom, std::string, std::string, bool>::with<bool>,
  caf::replies_to<lock_refresh_atom, std::string, std::string, bool>::with<lock_grant>,
  caf::replies_to<lock_status_atom, std::string, bool, bool>::with<lock_info>,
  // Queues (each queue lives in one shard, a Raft group placed by the hash ring). Every
  // call ends with the forwarded flag. enqueue (queue, payload) answers the message id
  // once a majority of the shard's replicas stored it. dequeue answers the deliveries
  // (possibly none). ack (queue, id, receipt; 0 = the current delivery) answers true;
  // nack (queue, id, receipt, delay_ms) answers whether the message went to the
  // dead-letter queue; both errc::not_found / stale_receipt. redrive (queue, max) and
  // delete answer the number of messages moved or dropped; config sets max_deliveries;
  // list (shard or all_shards) answers queue names.
  caf::replies_to<queue_enqueue_atom, std::string, std::string, bool>::with<std::string>,
  caf::replies_to<queue_dequeue_atom, queue_pull, bool>::with<std::vector<queue_message>>,
  caf::replies_to<queue_ack_atom, std::string, std::string, uint64_t, bool>::with<bool>,
  caf::replies_to<queue_nack_atom, std::string, std::string, uint64_t, uint64_t, bool>::with<bool>,
  caf::replies_to<queue_stats_atom, std::string, bool>::with<queue_info>,
  caf::replies_to<queue_dlq_atom, std::string, uint64_t, uint64_t, bool>::with<dead_letters>,
  caf::replies_to<queue_redrive_atom, std::string, uint64_t, bool>::with<uint64_t>,
  caf::replies_to<queue_delete_atom, std::string, bool>::with<uint64_t>,
  caf::replies_to<queue_config_atom, std::string, uint64_t, bool>::with<queue_info>,
  caf::replies_to<queue_list_atom, uint32_t, bool>::with<std::vector<std::string>>,
  // The coherent cache (served by this node's cache, which talks to the keys' home
  // directories). get answers the value and this node's line state, or errc::not_found;
  // put, del (everywhere, Redis included) and invalidate (every cached copy dropped,
  // dirty data written back first) answer true once done. errc::unavailable when a
  // needed home directory or Redis cannot be reached in time.
  caf::replies_to<cache_get_atom, std::string>::with<cache_entry>,
  caf::replies_to<cache_put_atom, std::string, std::string>::with<bool>,
  caf::replies_to<cache_del_atom, std::string>::with<bool>,
  caf::replies_to<cache_inval_atom, std::string>::with<bool>,
  caf::replies_to<cache_stats_atom>::with<cache_stats>,
  // Coherence traffic between nodes: (sender node id, encoded protocols/cache message).
  caf::reacts_to<cache_msg_atom, std::string, std::string>,
  // Internal: the timer of this node's calls to other nodes; harmless from elsewhere.
  caf::reacts_to<forward_sweep_atom>>;

// Receives membership changes (one member_status per change).
using membership_listener = caf::typed_actor<caf::reacts_to<member_atom, member_status>>;

void register_types(caf::actor_system_config& cfg);

}  // namespace dsync

