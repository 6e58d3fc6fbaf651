// The queue service of one node: the actor behind the queue calls of dsync::node_api.
//
// A queue lives in shard ring::shard_of(queue, QUEUE_SHARDS); each shard is a Raft group
// (raft_host.hpp: shard_group) of the replicas the hash ring over the control group's
// voters picks, running protocols/queue's shard as its state machine (queue_machine.hpp).
//
// On the node that received a client's request: the request goes to the shard's leader,
// which is this node's replica if it leads, else the leader another node named, else a
// replica of the shard in ring order; a not_leader answer names the next one to try.
// Lost leaders and elections are retried until the request's deadline.
//
// On the shard's leader: commands are stamped with the leader's wall clock (visibility
// timeouts are leader time, written into the log); an empty long-poll dequeue is parked
// until the shard reports the queue ready (then it dequeues again) or its wait ends;
// expiries are proposed when the shard's next deadline passes.
#pragma once

#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "actors/queue_machine.hpp"
#include "actors/raft/raft_host.hpp"
#include "dsync/api.hpp"

// Reports travel only between actors of one process, never over the network.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsync::queue_apply_report)

namespace dsync {

using queue_report_atom = caf::atom_constant<caf::atom("q_report")>;
using queue_leader_atom = caf::atom_constant<caf::atom("q_leader")>;
using queue_tick_atom = caf::atom_constant<caf::atom("q_tick")>;
using queue_retry_atom = caf::atom_constant<caf::atom("q_retry")>;
using queue_attach_atom = caf::atom_constant<caf::atom("q_attach")>;

using queue_service_actor = caf::typed_actor<
  // The node API's queue calls (same meaning, same arguments).
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
  caf::reacts_to<queue_attach_atom, raft_host_actor>,
  // From the shards' state machines on this node.
  caf::reacts_to<queue_report_atom, queue_apply_report>,
  caf::reacts_to<queue_leader_atom, uint64_t, bool>,
  // Internal timers: a shard's next deadline (group); a delayed step; calls to other nodes.
  caf::reacts_to<queue_tick_atom, uint64_t>,
  caf::reacts_to<queue_retry_atom, uint64_t>,
  caf::reacts_to<forward_sweep_atom>>;

struct queue_service_settings {
  std::string self;
  uint32_t shards = 16;
  uint32_t replicas = 3;
};

queue_service_actor spawn_queue_service(caf::actor_system& sys, queue_service_settings settings,
                                        peer_links_actor links, metrics::registry& metrics);

// The hooks through which the shard machines on this node report to `service`.
queue_observer observe_queues(queue_service_actor service);

}  // namespace dsync
