// A node's lease on its part in the cache, and how it rejoins once it lost it.
//
// The cache's guarantees rest on every node being right when it declares another dead.
// A process that stops (SIGSTOP, a stalled VM) for longer than its peers wait breaks that:
// meanwhile they acted for it (reverted the lines it owned, acknowledged invalidations in
// its name, moved its keys to new homes in a new epoch), so when it resumes, its lines,
// its directory and whatever it was about to send or write are stale — and its own failure
// detector now thinks every peer dead. It cannot tell until it runs again, so the caller
// asks on every input, before acting on it:
//
//   - Lease: the node keeps it while it runs without a gap of freeze_limit_ms between two
//     inputs. The caller sets the limit below the peers' timeout minus one ping interval
//     (the silence they measure starts at the last ping answered before the pause), reads
//     no copy once on_input() reported a gap, and bounds its read fast path the same way.
//   - Fence: after a gap the caller drops its controller and directory without acting on
//     them (no message, write or answer from them) and calls fence(e), e the epoch it was
//     in. That incarnation is over.
//   - Rejoin: the node sends Rejoin(e, incarnation) to every peer (encode_rejoin()). A
//     peer forgets the old incarnation — node_down then node_up on its controller and
//     directory, unless it declared the node dead already — and answers Rejoin-Ack with the
//     newest epoch it knows. Both travel with the coherence messages, so the peer handles
//     Rejoin after everything the old incarnation sent it, and the node reads the Ack after
//     everything the peer sent before forgetting: screen() drops those (they were for the
//     old incarnation), except a Flushed of a newer epoch, which stays true and is held for
//     the new components. Requests of the old epochs sent after the Ack (by a peer that
//     knows no newer epoch yet) are refused as a directory that closed them would
//     (refusal(): Nack), so the peer waits for a newer epoch instead of an answer.
//   - The new components start in an epoch newer than e, never in e or older: in those the
//     peers may have declared the node dead, and its own view of them is wrong (the
//     membership leader commits a new epoch when a node rejoins). Nor in one older than an
//     epoch a peer acknowledged from: the others may have moved on without the node (an
//     epoch that left it out while it was stopped), and a directory of an older epoch would
//     be a second home for its keys. may_rejoin() says when: such an epoch is known, every
//     member of it and every linked peer acknowledged, no member is down, and settle_ms
//     passed since the fence (the node's failure detector has judged its peers again).
//   - Another pause before that is a new incarnation: new Rejoins, new Acks, and what was
//     held for the next components goes (peers may have forgotten the node again).
//
// Time comes in as an argument (milliseconds of a monotonic clock). Single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/cache/messages.hpp"

namespace dsync::cache {

// Rejoin and Rejoin-Ack between the cache services of two nodes, beside the coherence
// messages (whose first byte, their format, is 1): 'R' or 'A', then three u64 (LE).
struct rejoin_message {
  bool ack = false;
  uint64_t epoch = 0;        // the last epoch of the incarnation that ended
  uint64_t incarnation = 0;  // which end of an incarnation (grows with every fence)
  uint64_t current = 0;      // Ack: the newest epoch the acknowledging node knows
};
std::string encode_rejoin(const rejoin_message& m);
// False for anything else (a coherence message included).
bool decode_rejoin(std::string_view bytes, rejoin_message& out);

class membership_lease {
 public:
  struct config {
    std::string self;
    uint64_t freeze_limit_ms = 2800;  // a gap this long ends the lease
    uint64_t settle_ms = 400;         // the least time between a fence and the rejoin
    // Fences are numbered from here on. Must grow across restarts of the node (its peers
    // remember the last one they handled), e.g. the wall clock in ms at start.
    uint64_t first_incarnation = 1;
    // Empty if usable, else what is wrong.
    std::string validate() const;
  };
  enum class verdict : uint8_t { deliver, hold, refuse, drop };

  // Throws std::invalid_argument if the config is invalid. The lease starts held at now_ms.
  explicit membership_lease(config cfg, uint64_t now_ms = 0);

  // Every input of the node, before it acts on it. True if the node was silent for
  // freeze_limit_ms or longer since the previous one: it may have been declared dead, so
  // whatever it holds must go (fence()). Time never runs backwards here.
  bool on_input(uint64_t now_ms);
  uint64_t last_input_ms() const { return last_input_ms_; }

  // The incarnation that lived in epochs <= `epoch` is over (its components are gone).
  // Again while fenced: a new incarnation ends (nothing ran since, so the first epoch
  // stands), whose Rejoin the peers must acknowledge again.
  void fence(uint64_t epoch, uint64_t now_ms);
  bool fenced() const { return fenced_; }
  uint64_t fenced_epoch() const { return fenced_epoch_; }
  // The Rejoin to send to every peer while fenced.
  rejoin_message rejoin() const { return {false, fenced_epoch_, incarnation_, 0}; }
  // A Rejoin-Ack; counted if it answers the current fence.
  void on_ack(const std::string& peer, const rejoin_message& ack);
  bool acked(const std::string& peer) const { return acks_.count(peer) > 0; }
  // The newest epoch a peer acknowledged from (0 if none).
  uint64_t acked_epoch() const;
  // What to do with a coherence message from `from`: deliver it (not fenced), hold it for
  // the next components, answer it with refusal(m) (directory.hpp), or drop it.
  verdict screen(const std::string& from, const message& m) const;
  // The peers the rejoin still waits for, given the newest known epoch's members, the
  // peers linked to this node now, and those it thinks down: members and linked peers
  // that did not acknowledge, and members that are down. Empty when not fenced.
  std::vector<std::string> waiting_for(const std::vector<std::string>& members, const std::vector<std::string>& linked,
                                       const std::set<std::string>& down) const;
  // True once new components may start in `epoch` (see above).
  bool may_rejoin(uint64_t epoch, const std::vector<std::string>& members, const std::vector<std::string>& linked,
                  const std::set<std::string>& down, uint64_t now_ms) const;
  // The new components started: the lease is held again.
  void rejoined();

  // --- a peer's side ---
  // Rejoin `r` from `node`: true if it is news (forget that incarnation now), false if
  // this or a later one was handled already. Answer Rejoin-Ack either way (ack_for()).
  bool on_rejoin(const std::string& node, const rejoin_message& r);
  static rejoin_message ack_for(const rejoin_message& r, uint64_t current_epoch) {
    return {true, r.epoch, r.incarnation, current_epoch};
  }

  const config& settings() const { return cfg_; }

 private:
  config cfg_;
  uint64_t last_input_ms_ = 0;
  bool fenced_ = false;
  uint64_t fenced_epoch_ = 0;
  uint64_t fenced_at_ms_ = 0;
  uint64_t incarnation_ = 0;               // of the last fence
  std::map<std::string, uint64_t> acks_;   // peer -> the epoch it acknowledged from
  std::map<std::string, uint64_t> rejoined_;  // peer -> last incarnation handled
};

// --- Partitions: the read lease ----------------------------------------------------------
//
// A node that keeps running but is cut off from its peers (a partition, also a one-way one
// where it still receives but nothing it sends arrives) is declared dead by them as a
// stopped one is, while its own inputs never stop: membership_lease does not see it. So a
// node serves a cached copy only while it has had a ROUND TRIP with every peer that could
// declare it dead and act for it (the members of the current epoch and every peer it is
// linked to) recently enough that none of them can have done so yet:
//
//   - Probe(stamp, boot) to every such peer on every tick; the peer answers Echo with the
//     same stamp (the sender's monotonic clock when it sent it). An Echo proves the peer
//     received this node's message at or after `stamp`, and that its answer came back: a
//     round trip, made of answers to what THIS node sent, never of what it receives (a
//     one-way partition lets the peer's pings in while every answer is lost).
//   - A peer declares the node dead after down_ms without an answer to its own pings,
//     counted from the last answer, which may be one ping interval older than the last
//     round trip: not before stamp + down_ms - ping_ms. The node serves reads only until
//     stamp + read_limit_ms for the oldest of the latest stamps of those peers; the caller
//     sets read_limit_ms to half of down_ms - ping_ms (the other half is the margin for
//     delivery and scheduling). A peer without a round trip yet: no reads.
//   - A peer that declared the node dead answers its Probes (of the same boot) with
//     Echo(dead) until it handles a Rejoin from it: the node then fences as after a pause
//     (its lines were reverted, invalidations acknowledged in its name), whatever its own
//     failure detector thinks. Echo(dead) of a probe sent before the node's last fence is
//     about the incarnation that is already over, and is ignored. So is one from a peer the
//     node itself declared dead since their last round trip and that is no member of its
//     epoch: both forgot each other, and the node's side moved on without that peer (the
//     peer fences instead, on the node's Echo(dead), which clears its own marks).
struct probe_message {
  bool echo = false;
  bool dead = false;    // Echo: the answering peer declared the sender dead (same boot)
  uint64_t stamp = 0;   // the sender's monotonic ms when it sent the Probe
  uint64_t boot = 0;    // the sender's process (its first incarnation number)
};
std::string encode_probe(const probe_message& m);
// False for anything else (a coherence message or a rejoin message included).
bool decode_probe(std::string_view bytes, probe_message& out);

class read_lease {
 public:
  explicit read_lease(uint64_t read_limit_ms) : limit_(read_limit_ms) {}

  // --- this node's side ---
  // An Echo from `peer` (not dead): a round trip that began at m.stamp.
  void on_echo(const std::string& peer, uint64_t stamp);
  uint64_t last_round_trip(const std::string& peer) const;  // 0 if none
  // Until when (ms, exclusive) this node may serve cached copies, given the peers that
  // could declare it dead: 0 if one of them has no round trip. UINT64_MAX if there are none.
  uint64_t serving_until(const std::vector<std::string>& peers) const;
  bool may_serve(const std::vector<std::string>& peers, uint64_t now_ms) const {
    return now_ms < serving_until(peers);
  }
  // The node fenced: its round trips were about the incarnation that ended, and so were its
  // declarations of peers' deaths (its components that acted on them are gone).
  void forget_all() {
    last_.clear();
    dead_boot_.clear();
  }
  uint64_t read_limit_ms() const { return limit_; }

  // --- a peer's side ---
  // The Echo to answer `node`'s Probe with (dead if this node declared that boot dead).
  probe_message answer(const std::string& node, const probe_message& probe);
  // This node declared `node` dead (its failure detector, or its link closed): Probes of
  // the last boot seen from it, or older, are answered dead until it rejoins (every boot if
  // none was seen). Boots grow across restarts of a node.
  void declared_dead(const std::string& node);
  // A Rejoin of `node` was handled here: it forgot its old incarnation.
  void rejoined(const std::string& node) { dead_boot_.erase(node); }
  bool thinks_dead(const std::string& node, uint64_t boot) const;

 private:
  uint64_t limit_;
  std::map<std::string, uint64_t> last_;       // peer -> newest stamp echoed (alive)
  std::map<std::string, uint64_t> boot_;       // node -> the boot of its last Probe
  std::map<std::string, uint64_t> dead_boot_;  // node -> the boot declared dead
};

}  // namespace dsync::cache
