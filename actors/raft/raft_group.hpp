// The actor of one Raft group on one node: drives the pure core (protocols/raft) with
// timer ticks, peer messages and proposals, persists each ready batch through a
// log_store, applies committed entries to a state_machine and answers proposers.
//
// Ordering, per ready batch (core.hpp): messages that may leave at once are sent, the
// batch is written (no fsync) on this actor's thread, then a storage thread fsyncs it
// (group commit: proposals that arrive meanwhile go into the next batch); only after the
// fsync are messages_after_append sent (votes, acknowledgements) and committed entries
// applied. A failed fsync stops the node: after it the state of the page cache is unknown.
//
// Proposals are answered with the state machine's answer once their entry is applied on
// this node; an entry that lost its slot to another leader's entry is answered with
// errc::unavailable ("retry"). A proposal on a follower is answered with errc::not_leader
// and the leader's id as context, so that the node actor can forward it.
#pragma once

#include <memory>
#include <string>

#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/log_store.hpp"
#include "actors/raft/state_machine.hpp"
#include "dsync/api.hpp"

namespace dsync {

using raft_group_actor = caf::typed_actor<
  caf::reacts_to<raft_atom, raft::message>,
  // A command for the state machine -> its answer once applied here.
  caf::replies_to<propose_atom, std::string>::with<std::string>,
  // A read-only query; linearizable (ReadIndex on the leader) or from local state.
  caf::replies_to<query_atom, std::string, bool>::with<std::string>,
  caf::replies_to<status_atom>::with<group_status>,
  // Graceful shutdown: a leader hands leadership to its most up-to-date follower
  // (dissertation §3.10) and answers true once another node leads, false if that did not
  // happen within the election timeout; a follower answers true at once.
  caf::replies_to<step_down_atom>::with<bool>,
  // Hands leadership to a caught-up voter (e.g. the preferred leader of a queue shard):
  // answers at once whether the transfer started; it completes, or is abandoned after an
  // election timeout, in the background.
  caf::replies_to<transfer_atom, std::string>::with<bool>,
  // Membership change on the leader (dissertation §4.1, one at a time): (0 = add, 1 =
  // remove, node id). add proposes the node as a learner, waits until it caught up and
  // promotes it; both answer the configuration once the last change is applied here.
  caf::replies_to<member_change_atom, uint8_t, std::string>::with<group_status>,
  // One logical tick, from the host's timer (one timer for all groups of a node).
  caf::reacts_to<raft_tick_atom>,
  // Internal: takes the ready batches of everything handled since it was sent.
  caf::reacts_to<raft_drive_atom>,
  // Peer links: a member that went down is unreachable for the core.
  caf::reacts_to<member_atom, member_status>>;

struct raft_group_settings {
  uint64_t group = 0;
  std::string self;                // this node's id
  caf::timespan tick_interval;     // one logical tick of the core
  uint64_t election_ticks = 10;
  uint64_t heartbeat_ticks = 2;
  uint64_t seed = 0;               // election timeout randomness
  uint64_t snapshot_every_entries = 10000;
  caf::timespan request_timeout;   // proposals/reads not answered by then get unavailable
};

raft_group_actor spawn_raft_group(caf::actor_system& sys, raft_group_settings settings,
                                  std::unique_ptr<log_store> store, std::unique_ptr<state_machine> sm,
                                  peer_links_actor transport, metrics::registry& metrics);

}  // namespace dsync
