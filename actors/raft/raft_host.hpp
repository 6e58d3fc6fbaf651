// The Raft groups of one node: starts them, routes peer messages to them by group id and
// runs proposals and queries on the local replica.
//
// Bootstrap of the control group (group 0, every member a voter): a node whose storage
// already holds the group starts it at once from there. A node with empty storage needs
// the node ids of all configured members, which it learns from the peer handshakes, so
// the very first start of a cluster waits until every member has been reached once (as
// etcd's initial cluster does); all members then derive the same configuration, and the
// same placement of the queue shards' groups.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "actors/metrics.hpp"
#include "actors/peer_links.hpp"
#include "actors/raft/raft_group.hpp"

namespace dsync {

using raft_host_actor = caf::typed_actor<
  // Messages from peers, each to the actor of its group.
  caf::reacts_to<raft_atom, std::vector<raft::message>>,
  // (group, command) on the local replica: errc::not_leader(leader id) on a follower.
  caf::replies_to<propose_atom, uint64_t, std::string>::with<std::string>,
  // (group, query, linearizable) on the local replica.
  caf::replies_to<query_atom, uint64_t, std::string, bool>::with<std::string>,
  caf::replies_to<status_atom>::with<std::vector<group_status>>,
  // Graceful shutdown: every group this node leads hands its leadership over; answers
  // the number of groups that did so (failures are logged, shutdown goes on).
  caf::replies_to<step_down_atom>::with<uint64_t>,
  // (group, 0 = add / 1 = remove, node id) on the local replica: see raft_group.hpp.
  caf::replies_to<member_change_atom, uint64_t, uint8_t, std::string>::with<group_status>,
  // (group, target): see raft_group.hpp.
  caf::replies_to<transfer_atom, uint64_t, std::string>::with<bool>,
  caf::reacts_to<member_atom, member_status>,
  // Internal: the tick timer of all groups (one timer, not one per group: CAF's clock
  // thread wakes for each timer).
  caf::reacts_to<raft_tick_atom>>;

// Opens (or creates with `bootstrap` as its initial configuration) the log of a group.
struct log_opener {
  // True if the group's log already exists (the node restarts).
  std::function<bool(uint64_t group)> exists;
  std::function<std::unique_ptr<log_store>(uint64_t group, const raft::configuration& bootstrap)> open;
};

// Queue shard s is Raft group s + 1 (group 0 is the control group).
constexpr uint64_t shard_group(uint32_t shard) { return uint64_t{shard} + 1; }

struct raft_host_settings {
  std::string self;
  // Queue shards: on the cluster's first start every node starts the groups of the shards
  // it replicates (the hash ring over the control group's voters places them); later
  // starts reopen whatever groups have a log here.
  uint32_t queue_shards = 0;
  uint32_t queue_replicas = 3;
  size_t expected_peers = 0;  // members besides this node
  bool join_existing = false;  // start with no configuration and wait to be added
  raft_group_settings group_defaults;  // group and self are filled in per group
  // The state machine of a group (the control group's holds the KV store and lock table).
  std::function<std::unique_ptr<state_machine>(uint64_t group)> make_machine;
};

// Proposes `command` on this node's replica of `group` (`raft` may not be attached yet) and
// decodes the state machine's answer with `decode(answer, outcome)`; a failure, or an answer
// that does not decode (`what` names its source), goes to `failed(caf::error&)`.
// No CAF timeout (each wakes CAF's clock thread): the group answers within its request timeout.
template <class Outcome, class Self, class Decode, class OnOutcome, class OnError>
void propose_decoded(Self self, const raft_host_actor& raft, uint64_t group, std::string command, Decode decode,
                     const char* what, OnOutcome on_outcome, OnError failed) {
  if (!raft) {
    caf::error err = make_error(errc::unavailable, "the Raft host is not attached yet");
    return failed(err);
  }
  self->request(raft, caf::infinite, propose_atom::value, group, std::move(command))
    .then(
      [=](std::string& answer) mutable {
        Outcome o;
        if (!decode(answer, o)) {
          caf::error err = make_error(errc::internal, std::string{"malformed answer from the "} + what);
          return failed(err);
        }
        on_outcome(o);
      },
      [=](caf::error& err) mutable { failed(err); });
}

raft_host_actor spawn_raft_host(caf::actor_system& sys, raft_host_settings settings, log_opener logs,
                                peer_links_actor links, metrics::registry& metrics);

}  // namespace dsync
