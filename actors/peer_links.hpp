// Peer links: keeps one link to every other member of the cluster and a membership view
// (connecting / alive / suspected / down / refused, with wall-clock timestamps) that other
// actors subscribe to.
//
// Connecting never blocks: it goes through the middleman actor, with exponential backoff.
// Of two peers only one connects, the one with the lower address; the other links over
// that connection when the handshake reaches it, and connects itself only if none came
// for a while (a peer that does not know it). A node joining a running cluster connects to
// every member: they do not know it yet. Two nodes connecting to each other at once
// can leave CAF 0.17 with a route whose messages lose their sender (peer_links.cpp).
// A link is alive once the peer answered our handshake (node_info) with compatible
// settings. A closed connection (kill -9, restart) is noticed at once through a monitor's
// down_msg; a frozen peer (SIGSTOP, partition) is noticed by missed pings: silent for
// peer_suspect_ms -> suspected, for peer_down_ms -> down and reconnected from scratch.
// A restarted peer on the same address is picked up by the reconnect loop (or at once
// when its own handshake reaches us). A compatible node that was not configured here but
// sends us its handshake (a member added to a running cluster) is linked to as well.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "actors/control_machine.hpp"
#include "actors/metrics.hpp"
#include "app/settings.hpp"
#include "dsync/api.hpp"

namespace dsync {

using peer_links_actor = caf::typed_actor<
  caf::replies_to<members_atom>::with<std::vector<member_status>>,
  caf::reacts_to<subscribe_atom, membership_listener>,
  // This node's API, sent along in our handshakes: links are made from then on.
  caf::reacts_to<start_atom, node_api>,
  // A peer's handshake reached our node actor (with the peer's API): learn its id, and
  // if we have no link to it, link over the connection it made.
  caf::reacts_to<hello_atom, node_info, node_api>,
  // A peer's ping (its node id, sequence): answers whether it is linked here. One side may
  // have dropped a link the other still holds (it found the other silent, e.g. while that
  // one was paused); the pinger then handshakes again, over the same connection.
  caf::replies_to<ping_atom, std::string, uint64_t>::with<bool>,
  // Raft transport: sends the message to the node actor of message.to; dropped (and
  // counted) while that peer is not linked, which Raft tolerates like a lost packet.
  // The messages for one peer already in the mailbox go out together (raft_flush_atom,
  // internal): after a tick, every group's heartbeat to a peer is one message.
  caf::reacts_to<raft_atom, raft::message>, caf::reacts_to<raft_flush_atom>,
  // A member's address from the control group (node id, host, port): linked to if unknown.
  caf::reacts_to<address_atom, std::string, std::string, uint16_t>,
  // The node API of a linked peer, by node id; errc::unavailable if it is not linked.
  caf::replies_to<lookup_atom, std::string>::with<node_api>,
  // Internal timers; stale ones are recognised by their generation number.
  caf::reacts_to<tick_atom>, caf::reacts_to<retry_atom, uint64_t, uint64_t>>;

struct peer_timing {
  caf::timespan ping_interval;
  caf::timespan suspect_after;
  caf::timespan down_after;
  caf::timespan handshake_timeout;
  caf::timespan backoff_min;
  caf::timespan backoff_max;
  caf::timespan fallback_after;  // the wait (plus up to half of it) before connecting to a peer that should connect to us
};
peer_timing timing_from(const node_settings& s);

// Why a peer's settings make it unfit to join us, or nothing when it fits.
std::optional<std::string> check_compatible(const node_info& mine, const node_info& theirs);

// Whether this node makes the connection to `peer` (the lower address does).
bool connects_first(const node_info& self, const peer_address& peer);

// joining: this node joins a running cluster (CLUSTER_STATE=existing).
peer_links_actor spawn_peer_links(caf::actor_system& sys, node_info self,
                                  std::vector<peer_address> peers, bool joining, peer_timing timing,
                                  metrics::registry& metrics);

uint64_t wall_clock_ms();

// Tells `links` the member addresses the control group records (control_machine.hpp).
member_observer observe_members(peer_links_actor links);

}  // namespace dsync
