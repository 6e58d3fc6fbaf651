// Plain data of the Raft core: log entries, messages, persistent state,
// configurations and snapshots.
//
// Every struct here is a value type with only integers, enums, bool,
// std::string and std::vector members, so that it can cross the network as a
// CAF 0.17 message: each has a free `inspect` overload (found by ADL) and no
// CAF header is needed to compile this file. Do not add std::optional or
// std::variant members, CAF 0.17 cannot serialize them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsync::raft {

// Node ids are opaque, non-empty strings ("node-1"). The empty string means
// "none" (no leader known, no vote cast).
using node_id = std::string;

// ---- log entries -------------------------------------------------------------

enum class entry_type : uint8_t {
  normal = 0,      // data is an opaque command for the state machine
  conf_change = 1, // data is an encoded conf_change_record (see below)
  noop = 2,        // appended by every new leader (dissertation §6.4); data empty
};
const char* to_string(entry_type x);

// One log entry. Index and term are >= 1 for real entries; (0, 0) is the
// position before the first entry.
struct entry {
  uint64_t term = 0;
  uint64_t index = 0;
  entry_type type = entry_type::normal;
  std::string data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entry& x) {
  return f(x.term, x.index, x.type, x.data);
}

bool operator==(const entry& a, const entry& b);
inline bool operator!=(const entry& a, const entry& b) { return !(a == b); }

// Bytes an entry costs against the size limits (payload plus a fixed header
// estimate, so that empty entries are not free).
uint64_t entry_size_bytes(const entry& e);

// ---- membership --------------------------------------------------------------

// A cluster configuration: voters decide elections and commitment, learners
// only receive the log. The two lists are disjoint and kept sorted.
struct configuration {
  std::vector<node_id> voters;
  std::vector<node_id> learners;

  bool is_voter(const node_id& id) const;
  bool is_learner(const node_id& id) const;
  bool contains(const node_id& id) const { return is_voter(id) || is_learner(id); }
  bool empty() const { return voters.empty() && learners.empty(); }
  // Votes needed for a majority of the voters (0 if there are no voters).
  size_t quorum() const { return voters.empty() ? 0 : voters.size() / 2 + 1; }
  // Voters then learners, each sorted.
  std::vector<node_id> members() const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, configuration& x) {
  return f(x.voters, x.learners);
}

bool operator==(const configuration& a, const configuration& b);
inline bool operator!=(const configuration& a, const configuration& b) { return !(a == b); }
std::string to_string(const configuration& c);

// A single-server membership change (dissertation §4.1): at most one voter is
// added or removed per change, so any two successive configurations share a
// majority.
enum class conf_change_type : uint8_t {
  add_learner = 0,     // add a new non-voting member
  promote_learner = 1, // turn a caught-up learner into a voter
  remove_node = 2,     // remove a voter or a learner
};
const char* to_string(conf_change_type x);

struct conf_change {
  conf_change_type type = conf_change_type::add_learner;
  node_id node;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, conf_change& x) {
  return f(x.type, x.node);
}

// What a conf_change entry carries: the change and the complete resulting
// configuration. Carrying the whole configuration lets a node that joins
// from an empty log learn the membership from the entry alone.
struct conf_change_record {
  conf_change change;
  configuration config;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, conf_change_record& x) {
  return f(x.change, x.config);
}

// Compact binary encoding of a conf_change_record (the entry's data).
// decode returns false on malformed input and leaves `out` unspecified.
std::string encode_conf_change(const conf_change_record& x);
bool decode_conf_change(const std::string& bytes, conf_change_record& out);

// ---- persistent state --------------------------------------------------------

// The state that must be on stable storage before the node answers any
// message that depends on it (Figure 2 of the Raft paper, plus commit).
struct hard_state {
  uint64_t term = 0;
  node_id vote;        // candidate voted for in `term`, empty if none
  uint64_t commit = 0; // not needed for safety; saves re-deriving it
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hard_state& x) {
  return f(x.term, x.vote, x.commit);
}

bool operator==(const hard_state& a, const hard_state& b);
inline bool operator!=(const hard_state& a, const hard_state& b) { return !(a == b); }

// Describes the state a snapshot stands for: everything up to and including
// `index` (whose entry had `term`), and the configuration in force there.
struct snapshot_metadata {
  uint64_t index = 0;
  uint64_t term = 0;
  configuration config;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot_metadata& x) {
  return f(x.index, x.term, x.config);
}

// A state machine snapshot: metadata plus the state machine's opaque bytes.
struct snapshot {
  snapshot_metadata metadata;
  std::string data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot& x) {
  return f(x.metadata, x.data);
}

// ---- messages ----------------------------------------------------------------

enum class message_type : uint8_t {
  append_entries = 0,          // leader -> follower: entries after (index, log_term)
  append_entries_response = 1, // follower -> leader: match index or rejection + hint
  request_vote = 2,            // candidate -> all: vote for me in `term`
  request_vote_response = 3,
  request_pre_vote = 4,        // pre-candidate -> all: would you vote for me in `term`? (§9.6)
  request_pre_vote_response = 5,
  heartbeat = 6,               // leader -> all: I am alive; commit; read-index context
  heartbeat_response = 7,
  install_snapshot = 8,        // leader -> follower: one chunk of a snapshot (§5.3 of the paper)
  install_snapshot_response = 9, // follower -> leader: bytes received so far
  timeout_now = 10,            // leader -> transfer target: start an election now (§3.10)
};
const char* to_string(message_type x);

// One Raft message. A flat struct (like etcd's raftpb.Message): which fields
// are meaningful depends on `type`:
//
// append_entries:   index/log_term = position preceding `entries`; commit.
// append_entries_response: reject=false: index = last index now matching the
//                   leader. reject=true: index = rejected `index` of the
//                   request; hint_term/hint_index = conflict hint: the term of
//                   the follower's entry at `index` and the first index it
//                   holds of that term, or hint_term = 0 and hint_index =
//                   follower's last index + 1 if its log is shorter.
// request_vote, request_pre_vote: index/log_term = candidate's last entry;
//                   transfer = campaign caused by leader transfer (bypasses
//                   leader stickiness). Pre-vote: term = the term the
//                   candidate would campaign in.
// *_vote_response:  reject; term = request term when granted.
// heartbeat:        commit (never above the follower's match); context =
//                   newest read-index round (0 if none).
// heartbeat_response: context echoed.
// install_snapshot: snapshot (metadata), snapshot_offset, snapshot_chunk,
//                   snapshot_done (last chunk). The follower acknowledges a
//                   middle chunk with install_snapshot_response and the last
//                   one, once installed, with append_entries_response.
// install_snapshot_response: index = snapshot index; snapshot_offset = bytes
//                   the follower holds; reject = the follower wants the
//                   transfer to restart at snapshot_offset.
// timeout_now:      no payload.
struct message {
  message_type type = message_type::append_entries;
  uint64_t group = 0; // Raft group this message belongs to
  node_id from;
  node_id to;
  uint64_t term = 0;
  uint64_t log_term = 0;
  uint64_t index = 0;
  std::vector<entry> entries;
  uint64_t commit = 0;
  bool reject = false;
  uint64_t hint_term = 0;
  uint64_t hint_index = 0;
  uint64_t context = 0;
  bool transfer = false;
  snapshot_metadata snapshot;
  uint64_t snapshot_offset = 0;
  std::string snapshot_chunk;
  bool snapshot_done = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, message& x) {
  return f(x.type, x.group, x.from, x.to, x.term, x.log_term, x.index, x.entries, x.commit,
           x.reject, x.hint_term, x.hint_index, x.context, x.transfer, x.snapshot,
           x.snapshot_offset, x.snapshot_chunk, x.snapshot_done);
}

// One line describing a message, for traces.
std::string describe(const message& m);

// ---- results -----------------------------------------------------------------

// Why a request to the core was refused. Codes are stable (they may be sent
// to clients), 0 means success.
enum class errc : uint8_t {
  ok = 0,
  not_leader = 1,                  // ask `leader_hint` (may be empty: unknown)
  leader_transfer_in_progress = 2, // retry after the transfer ends
  too_many_uncommitted = 3,        // uncommitted entries/bytes bound reached; retry later
  entry_too_large = 4,             // data exceeds config::max_entry_bytes
  conf_change_in_progress = 5,     // one membership change at a time
  leader_not_ready = 6,            // no entry of the leader's term committed yet
  invalid_conf_change = 7,         // change does not fit the current configuration
  learner_not_caught_up = 8,       // promote refused: learner's log lags the commit index
  unknown_node = 9,                // not a voter of the current configuration
  too_many_pending_reads = 10,     // read-index queue full
  invalid_compaction = 11,         // index not applied yet or already compacted
  wrong_group = 12,                // message for another Raft group
  not_addressed = 13,              // message for another node
};
const char* to_string(errc x);

// The answer to propose / propose_conf_change / read_index / transfer.
// On success, `index` and `term` locate the new entry (proposals) or are 0.
struct result {
  errc code = errc::ok;
  node_id leader_hint; // known leader when code == not_leader (may be empty)
  uint64_t index = 0;
  uint64_t term = 0;
  bool ok() const { return code == errc::ok; }
};

// A linearizable read that can be served (dissertation §6.4): once the local
// state machine has applied `index`, answer request `request_id` from it.
// ok=false: the read was dropped (leadership lost); retry on the leader.
struct read_state {
  uint64_t request_id = 0;
  uint64_t index = 0;
  bool ok = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_state& x) {
  return f(x.request_id, x.index, x.ok);
}

enum class role : uint8_t { follower = 0, pre_candidate = 1, candidate = 2, leader = 3 };
const char* to_string(role x);

} // namespace dsync::raft
