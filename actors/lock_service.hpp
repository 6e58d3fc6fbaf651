// The lock service of one node: the actor behind the lock calls of dsync::node_api, over
// the lock table that the control Raft group replicates (protocols/locks/lock_table.hpp).
//
// On the leader it stamps each command with its wall clock (lease time is the leader's,
// written into the log), proposes it, and answers from the applied outcome. An acquire
// that has to wait is held here until the table grants it, times it out or cancels it;
// expiries are proposed by the leader when the table's next deadline passes; a new leader
// renews every lease once (as etcd does on promotion) so that holders do not lose their
// locks to the time without a leader.
//
// On the node that received a client's request it runs the request on the leader: the
// local replica if it leads, else the leader's node API (marked forwarded). When the
// leader changes or dies mid-request, the request is retried against the new one until
// its deadline (acquire is idempotent per lock and client, so a retried acquire finds its
// place in the queue, or its grant, in the replicated table).
#pragma once

#include "actors/control_machine.hpp"
#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/raft_host.hpp"
#include "dsync/api.hpp"

// Reports travel only between actors of one process, never over the network.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsync::lock_apply_report)

namespace dsync {

using lock_report_atom = caf::atom_constant<caf::atom("l_report")>;
using lock_leader_atom = caf::atom_constant<caf::atom("l_leader")>;
using lock_tick_atom = caf::atom_constant<caf::atom("l_tick")>;
using lock_retry_atom = caf::atom_constant<caf::atom("l_retry")>;
using attach_atom = caf::atom_constant<caf::atom("l_attach")>;

using lock_service_actor = caf::typed_actor<
  // The node API's lock calls (same meaning, same arguments).
  caf::replies_to<lock_acquire_atom, lock_request, bool>::with<lock_grant>,
  caf::replies_to<lock_release_atom, std::string, std::string, bool>::with<bool>,
  caf::replies_to<lock_refresh_atom, std::string, std::string, bool>::with<lock_grant>,
  caf::replies_to<lock_status_atom, std::string, bool, bool>::with<lock_info>,
  // The Raft host that runs the control group (sent once, right after both are spawned).
  caf::reacts_to<attach_atom, raft_host_actor>,
  // From the control group's state machine on this node.
  caf::reacts_to<lock_report_atom, lock_apply_report>,
  caf::reacts_to<lock_leader_atom, bool>,
  // Internal timers: the table's next deadline; a delayed retry; calls to other nodes.
  caf::reacts_to<lock_tick_atom>,
  caf::reacts_to<lock_retry_atom, uint64_t>,
  caf::reacts_to<forward_sweep_atom>>;

lock_service_actor spawn_lock_service(caf::actor_system& sys, std::string self_id, peer_links_actor links,
                                      metrics::registry& metrics);

// The hooks through which the control machine on this node reports to `service`.
lock_observer observe_locks(lock_service_actor service);

}  // namespace dsync
