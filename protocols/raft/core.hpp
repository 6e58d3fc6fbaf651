// The Raft consensus core of one node in one Raft group, in the shape of
// etcd-io/raft's RawNode: a deterministic state machine with no sockets,
// disks, clocks or threads.
//
// Driving it (single-threaded; the caller owns the loop):
//
//   inputs:  tick()                   one logical clock tick
//            step(msg)                a message from a peer
//            propose(data), propose_conf_change(cc), read_index(id),
//            transfer_leadership(target), compact(index, bytes), ...
//   effects: if (core.has_ready()) {
//              auto rd = core.ready();
//              send rd.messages                      (may go at once)
//              persist rd.snapshot / rd.entries / rd.hard_state /
//                      rd.compaction                 (order: storage.hpp)
//              fsync if rd.must_sync
//              send rd.messages_after_append         (only now: they promise
//                                                     what was just persisted)
//              restore the state machine from rd.snapshot if present, then
//              apply rd.committed_entries in order
//              serve rd.read_states once applied index >= read_state.index
//              core.advance(rd);
//            }
//
// Contract:
//   * Several ready batches may be outstanding (pipelining: the next batch is
//     written and sent while the previous one syncs). Each batch carries only
//     what is new since the previous one; persist, sync and advance() them in
//     the order ready() returned them (rd.seq). Inputs (tick, step, propose,
//     ...) may be given at any time; their effects go into the next batch.
//     A batch with a snapshot or compaction is a barrier: it is handed out
//     only when no batch is outstanding, and none follows until it is
//     advanced (has_ready() is false meanwhile).
//   * A crash loses outstanding batches from some point on; the durable log
//     is the storage's content after a prefix of them.
//   * advance(rd) means: everything rd asked to persist is durable (and so is
//     everything of earlier batches), and everything it asked to apply has
//     been applied. Only then does the leader count those entries of its own
//     log toward commitment, and a candidate its own vote (both must be
//     durable first).
//   * committed_entries also carry the leader no-ops (skip them) and
//     conf_change entries: the core already switched configuration when the
//     entry was appended (§4.1); the caller may use them to connect to new
//     peers or drop removed ones.
//   * A crash may happen anywhere; the node restarts by constructing a new
//     core over the same storage (only the durable part survives).
//   * Broken preconditions (advance without ready, ready twice, a storage
//     that lost durable entries, a leader overwriting committed entries)
//     throw std::logic_error: the node must stop. An invalid configuration
//     throws std::invalid_argument from the constructor.
//     Refusals that a client can cause (not leader, limits) are returned as
//     `result` codes, never thrown.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocols/raft/config.hpp"
#include "protocols/raft/log.hpp"
#include "protocols/raft/progress.hpp"
#include "protocols/raft/rng.hpp"
#include "protocols/raft/storage.hpp"
#include "protocols/raft/types.hpp"

namespace dsync::raft {

// Volatile state worth reporting (metrics, forwarding).
struct soft_state {
  node_id leader;
  role state = role::follower;
};

inline bool operator==(const soft_state& a, const soft_state& b) {
  return a.leader == b.leader && a.state == b.state;
}

// One batch of effects. See the header comment for the order of handling.
struct ready {
  uint64_t seq = 0; // 1, 2, ...: the order in which batches must be advanced

  // ---- to persist ----
  // A snapshot received from the leader: it replaces the whole log; the
  // state machine must be restored from snapshot.data before applying
  // committed_entries of later batches.
  bool has_snapshot = false;
  raft::snapshot snapshot;
  // Entries to append; they overwrite stored entries from entries.front().index on.
  std::vector<entry> entries;
  bool has_hard_state = false;
  hard_state hard;
  // A snapshot taken locally by compact(): store it and drop the entries up
  // to its index. The state machine already holds this state.
  bool has_compaction = false;
  raft::snapshot compaction;
  // True if entries, snapshot, compaction, term or vote changed: fsync before
  // sending messages_after_append. A commit-only change need not be synced.
  bool must_sync = false;

  // ---- to send ----
  std::vector<message> messages;              // may leave immediately
  std::vector<message> messages_after_append; // may leave only once the above is durable

  // ---- to apply / answer ----
  std::vector<entry> committed_entries; // in index order, after persisting
  std::vector<read_state> read_states;
  bool soft_state_changed = false;
  soft_state soft;

  bool empty() const;
};

// Writes the persistence part of `rd` into `store` in the order storage.hpp
// prescribes (snapshot, entries, hard state, compaction). The reference for
// what a durable storage must do with a ready batch; used by tests and the
// simulation. Throws std::logic_error if the storage refuses a write.
void persist_ready(memory_storage& store, const ready& rd);

class core {
 public:
  // Loads term, vote, commit, snapshot and configuration from `store`, which
  // must outlive the core and is only read. Throws std::invalid_argument if
  // cfg.validate() fails or the stored state is inconsistent.
  core(config cfg, const storage& store);

  // ---- inputs ----

  // Advances logical time by one tick: election timeout for followers and
  // candidates; heartbeats, check-quorum and transfer timeout for leaders.
  void tick();

  // Feeds a message addressed to this node. Messages with a stale term are
  // answered or dropped per the Raft rules; returns wrong_group / not_addressed
  // for messages that are not ours (dropped), ok otherwise.
  errc step(const message& m);

  // Appends a normal entry (leader only). Returns its index/term; the caller
  // learns the outcome when an entry with that index is committed: same term
  // means this proposal, another term means it was lost (leader change).
  // Refusals: not_leader (+ leader_hint), leader_transfer_in_progress,
  // entry_too_large, too_many_uncommitted.
  result propose(std::string data);

  // Appends a single-server membership change (dissertation §4.1); it takes
  // effect on each node as soon as the entry is in its log. Refusals as for
  // propose, plus: conf_change_in_progress (one at a time), leader_not_ready
  // (no entry of this term committed yet, the §4.1 fix), invalid_conf_change,
  // learner_not_caught_up (promote: learner's match < commit index).
  result propose_conf_change(const conf_change& cc);

  // Starts a linearizable read (ReadIndex, dissertation §6.4). Leader only
  // (not_leader + leader_hint otherwise: the actor forwards it). The answer
  // arrives as a read_state in a later ready: the commit index at the time of
  // the request, released once a heartbeat round confirmed leadership and the
  // leader has committed an entry of its term. read_state.ok = false if the
  // leadership was lost meanwhile.
  result read_index(uint64_t request_id);

  // Hands leadership to `target` (dissertation §3.10): catch it up, then send
  // TimeoutNow. Proposals are refused while the transfer runs; it is aborted
  // after election_ticks. Refusals: not_leader, unknown_node (not a voter).
  result transfer_leadership(const node_id& target);

  // Starts an election now (as if the election timeout fired), with pre-vote
  // if enabled. Ignored on leaders and on nodes that are not voters.
  void campaign();

  // The transport could not reach `peer`: stop pipelining to it (probe).
  void report_unreachable(const node_id& peer);
  // The caller's view of a snapshot transfer to `peer` (optional: the core
  // runs chunked transfers itself). Failure restarts the transfer from probe.
  void report_snapshot(const node_id& peer, bool ok);

  // Takes a snapshot of the state machine at `index` (<= applied index,
  // above the current snapshot): the next ready carries it as `compaction`,
  // with the term and configuration at `index` filled in. Refusal:
  // invalid_compaction.
  result compact(uint64_t index, std::string data);

  // ---- effects ----

  bool has_ready() const;
  // Precondition: has_ready() (an empty batch is allowed).
  raft::ready ready();
  // Acknowledges the oldest outstanding batch, which must be `rd`.
  void advance(const raft::ready& rd);
  // Ready batches handed out and not yet advanced.
  uint64_t outstanding_readies() const { return handed_seq_ - advanced_seq_; }

  // ---- introspection ----

  const node_id& id() const { return cfg_.id; }
  uint64_t group() const { return cfg_.group; }
  role state() const { return state_; }
  uint64_t term() const { return term_; }
  const node_id& vote() const { return vote_; }
  const node_id& leader() const { return leader_; }
  uint64_t commit_index() const { return log_.committed(); }
  uint64_t applied_index() const { return log_.applied(); }
  const raft_log& log() const { return log_; }
  // Configuration in force: the latest one in the log (§4.1).
  const configuration& current_config() const { return conf_; }
  // Configuration in force at `index` (index >= the snapshot index).
  const configuration& config_at(uint64_t index) const;
  // Leader only: progress of another member, nullptr if none.
  const progress* progress_of(const node_id& peer) const;
  const node_id& transfer_target() const { return lead_transferee_; }
  uint64_t randomized_election_ticks() const { return randomized_election_ticks_; }
  uint64_t election_elapsed_ticks() const { return election_elapsed_; }
  hard_state current_hard_state() const { return hard_state{term_, vote_, log_.committed()}; }
  const config& settings() const { return cfg_; }
  // Leader only: bytes of entries appended in this term and not yet committed.
  uint64_t uncommitted_bytes() const { return uncommitted_bytes_; }

 private:
  struct config_point {
    uint64_t index; // the entry (or snapshot) that introduced the configuration
    configuration config;
  };
  struct pending_read {
    uint64_t request_id;
    uint64_t index;
    uint64_t seq;
  };
  struct snapshot_receiver {
    bool active = false;
    node_id from;
    uint64_t term = 0;
    snapshot_metadata metadata;
    std::string data;
  };

  // role changes
  void reset(uint64_t term);
  void become_follower(uint64_t term, const node_id& leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void start_campaign(bool pre_vote, bool transfer);
  void poll(const node_id& from, bool granted);
  bool promotable() const { return conf_.is_voter(cfg_.id); }
  void reset_randomized_election_timeout();

  // ticking
  void tick_election();
  void tick_heartbeat();
  bool quorum_active() const;

  // stepping
  void step_follower(const message& m);
  void step_candidate(const message& m);
  void step_leader(const message& m);
  void handle_vote_request(const message& m);
  void handle_append_entries(const message& m);
  void handle_heartbeat(const message& m);
  void handle_install_snapshot(const message& m);
  void handle_append_response(const message& m, progress& pr);
  void handle_heartbeat_response(const message& m, progress& pr);
  void handle_snapshot_ack(const message& m, progress& pr);

  // leader replication
  uint64_t next_from_hint(const message& m, const progress& pr) const;
  bool maybe_send_append(const node_id& to, bool send_if_empty);
  bool send_snapshot(const node_id& to, progress& pr);
  void send_snapshot_chunk(const node_id& to, progress& pr);
  void send_timeout_now(const node_id& to);
  void broadcast_append();
  void broadcast_heartbeat();
  bool maybe_commit();
  void on_commit_advanced();
  bool committed_in_current_term() const;
  bool within_uncommitted_bounds(const entry& e) const;
  uint64_t append_leader_entry(entry e);
  void abort_leader_transfer() { lead_transferee_.clear(); }

  // configuration
  void on_entries_appended(const std::vector<entry>& ents);
  void set_config(const configuration& c);
  void load_config_history();

  // reads
  void register_read(uint64_t request_id);
  void process_reads();
  void fail_reads();

  // output
  message make_message(message_type type, const node_id& to) const;
  void send(message m) { msgs_.push_back(std::move(m)); }
  void send_after_append(message m) { msgs_after_append_.push_back(std::move(m)); }
  void flush_broadcasts();

  config cfg_;
  const storage& store_;
  raft_log log_;
  rng rng_;

  role state_ = role::follower;
  uint64_t term_ = 0;
  node_id vote_;
  node_id leader_;

  configuration conf_;
  std::vector<config_point> conf_history_; // front() is at or before the snapshot

  std::map<node_id, progress> progress_; // leader: every member but self
  std::map<node_id, bool> votes_;        // candidate: responses so far

  uint64_t election_elapsed_ = 0;
  uint64_t heartbeat_elapsed_ = 0;
  uint64_t randomized_election_ticks_ = 0;

  node_id lead_transferee_;
  uint64_t pending_conf_index_ = 0;

  std::deque<std::pair<uint64_t, uint64_t>> uncommitted_; // (index, bytes)
  uint64_t uncommitted_bytes_ = 0;

  std::deque<pending_read> pending_reads_;
  std::deque<uint64_t> deferred_reads_; // waiting for a commit in this term
  std::map<node_id, uint64_t> read_acks_; // highest read round each voter confirmed
  uint64_t read_seq_ = 0;
  std::vector<read_state> read_states_;

  snapshot_receiver rx_;
  std::optional<raft::snapshot> pending_compaction_;

  std::vector<message> msgs_;
  std::vector<message> msgs_after_append_;
  bool broadcast_pending_ = false;
  bool heartbeat_pending_ = false;

  hard_state prev_hard_;   // durable (advanced)
  hard_state handed_hard_; // in the latest batch handed out
  soft_state handed_soft_;
  uint64_t handed_seq_ = 0;
  uint64_t advanced_seq_ = 0;
  bool barrier_outstanding_ = false; // an outstanding batch has a snapshot or compaction
};

} // namespace dsync::raft
