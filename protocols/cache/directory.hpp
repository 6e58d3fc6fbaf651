// The home directory of one node: for every key whose home (membership::home) is this
// node, the line's state (I, S, E, O, M as the directory sees it), its owner and its
// sharers; and the memory (Redis) behind the caches. The transition tables are in
// protocols/cache/README.md.
//
// Inputs (each returns the effects it caused, see messages.hpp):
//   start()                     once, after construction: announces the first epoch
//   on_message(from, msg)       a message for this directory (for_directory(kind) true)
//   on_memory_done(id, value)   a memory_op finished (value: what a read found)
//   on_membership(m)            a new directory epoch
//   on_node_down(node)          `node` died: after every message it sent was delivered here
//   on_node_up(node)            `node` is back (a new incarnation with an empty cache)
// Effects: messages to controllers and memory operations.
//
// Serialisation: one transaction per line at a time. A GetS/GetM ends with the
// requester's Unblock, a Del/Inval with the last Recall-Ack and its memory operation; a
// dirty Put ends when memory acknowledged the write (only then the Put-Ack: the evicting
// cache keeps the data until memory has it). Requests for a busy line wait in its queue,
// in arrival order. At most one memory operation per key is in flight, so a write can
// never overtake an older one.
//
// Epochs: a directory serves an epoch only after every live member's controller and
// directory sent Flushed for it (or a newer one): the controllers hold no line of an
// older epoch, the directories have closed their older epochs. Closing an epoch (when a
// newer one arrives): requests of it are refused (Nack: the requester retries in the new
// epoch), transactions in progress finish, Puts are served, then every line still held
// somewhere is recalled, dirty data written, and once memory acknowledged every write,
// Flushed goes to all members. Messages of the closing epoch keep being served with that
// epoch's membership; older requests are refused, older Puts acknowledged, other older
// messages dropped; newer ones wait for their epoch.
//
// Deaths (on_node_down): the dead node leaves every sharer list; a line it owned reverts
// to memory (copies of its data are recalled); a transaction waiting on it is finished
// by the directory (data from memory, Inv-Acks on its behalf, recalls). A node that
// comes back must come back empty (and, being a restart, under a new epoch).
//
// Single-threaded, deterministic. Memory use: O(lines with copies or queued requests).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "protocols/cache/messages.hpp"
#include "protocols/cache/types.hpp"

namespace dsync::cache {

// Stable states of a line at its directory. A line is "busy" while a transaction or a
// memory operation is in progress; its printed name then gets the waits as a suffix
// (README): ^A recall acknowledgements, ^D the old owner's data (MESI), ^M memory,
// ^U the requester's Unblock, e.g. "S^DU", "M^MU", "I^A".
enum class dir_state : uint8_t { I, S, E, O, M };
std::string_view to_string(dir_state s);

// Rows of the directory's table: the five stable states when the line is idle, `busy`
// otherwise; `closing` for requests of a closing (or closed) epoch.
enum class dir_row : uint8_t { I, S, E, O, M, busy, closing };
constexpr size_t dir_row_count = 7;
std::string_view to_string(dir_row r);

enum class dir_event : uint8_t {
  get_s, get_m, get_m_owner, put_s, put_s_last, put_owner, put_non_owner, del, inval,
  write_through, owner_data, unblock, recall_ack, last_recall_ack, mem_read, mem_write,
  down_sharer, down_owner, down_requester, down_forwarded, down_invalidated, down_recalled, close,
};
constexpr size_t dir_event_count = 23;
std::string_view to_string(dir_event e);

// How a directory answers a message of an epoch it no longer serves: Nack for a request
// (the requester retries in a newer epoch), Put-Ack for a Put (nothing to write), nothing
// for anything else. The answer carries `m`'s epoch. Also what a node whose incarnation
// ended answers for it (lease.hpp).
std::optional<message> refusal(const message& m);

class directory {
 public:
  struct config {
    std::string self;
    protocol proto = protocol::mesi;
    size_t max_future_messages = 100000;  // buffered from a newer epoch
    std::string validate() const;
  };

  struct counters {
    uint64_t mem_reads = 0, mem_writes = 0, mem_erases = 0;
    uint64_t forwards = 0;           // Fwd-GetS / Fwd-GetM sent
    uint64_t invalidations = 0;      // Inv and Recall sent
    uint64_t queued_requests = 0;    // requests that found their line busy
    uint64_t recoveries = 0;         // transactions finished for a dead node
    uint64_t nacks = 0;              // requests refused by a closing or closed epoch
    uint64_t stale_messages = 0;     // older epoch, dropped
    uint64_t duplicate_messages = 0; // an answer already counted, dropped
    uint64_t unexpected_messages = 0;  // impossible under the ordering contract; dropped
    uint64_t epoch_changes = 0;
  };

  struct line_view {
    std::string state;               // e.g. "M", "S^DU"; "I" for an unknown key
    std::string owner;
    std::vector<std::string> sharers;  // sorted
    size_t queued = 0;
  };

  // Throws std::invalid_argument if the config or membership is invalid.
  directory(config cfg, membership m);

  effects start();
  effects on_message(const std::string& from, const message& m);
  effects on_memory_done(uint64_t id, value v);
  // Ignored unless m.epoch is newer. Throws std::invalid_argument if m is invalid.
  effects on_membership(membership m);
  effects on_node_down(const std::string& node);
  effects on_node_up(const std::string& node);

  // --- inspection ---
  line_view view(const std::string& key) const;
  std::vector<std::string> keys() const;  // lines of the current epoch that are not idle in I
  bool serving() const { return serving_; }  // the epoch's barrier has passed
  bool closing() const { return !closing_.empty(); }  // an older epoch is being closed
  // Members (", ctl" / ", dir") whose Flushed this epoch still waits for.
  std::vector<std::string> barrier_waiting() const;
  size_t memory_in_flight() const { return issued_.size(); }
  bool idle() const;  // serving, nothing closing, busy, queued or buffered
  uint64_t epoch() const { return epoch_; }
  const counters& stats() const { return stats_; }
  uint64_t transitions(dir_row r, dir_event e) const {
    return transitions_[static_cast<size_t>(r)][static_cast<size_t>(e)];
  }

 private:
  enum class then : uint8_t { nothing, data, revert, put_ack, wt_ack, done };
  struct mem_job {
    uint64_t id = 0;  // 0 until issued
    memory_kind kind = memory_kind::read;
    value val;
    then action = then::nothing;
    std::string to;
    uint64_t txn = 0;
    bool exclusive = false;
    std::vector<std::string> acks;
  };
  enum class tx_kind : uint8_t { get_s, get_m, upgrade, del, inval, recover, close };
  struct transaction {
    tx_kind kind = tx_kind::get_s;
    std::string requester;
    uint64_t txn = 0;
    bool wait_unblock = false;
    bool wait_data = false;                 // MESI S^D: the old owner's OwnerData
    std::string forwarded_to;               // the owner asked to answer the requester
    std::vector<std::string> inv_targets;   // their Inv-Acks go to the requester
    std::set<std::string> recall;           // Recall-Acks still missing
    uint64_t recall_id = 0;
    bool recalled_dirty = false;            // an owner answered the recall with dirty data
    value recalled_val;
    bool revert_after_recall = false;       // then send the requester memory's value
  };
  struct line {
    uint64_t epoch = 0;
    dir_state st = dir_state::I;
    std::string owner;
    std::set<std::string> sharers;
    std::optional<transaction> tx;
    std::deque<mem_job> mem;
    std::deque<std::pair<std::string, message>> queue;
  };

  using table = std::map<std::string, line>;

  void deliver(const std::string& from, const message& m);
  void handle_in(table& t, const std::string& from, const message& m);
  void refuse(const std::string& from, const message& m);  // Nack, or Put-Ack for an old Put
  void process_request(const std::string& key, line& l, const std::string& from, const message& m);
  void on_get_s(const std::string& key, line& l, const std::string& from, const message& m);
  void on_get_m(const std::string& key, line& l, const std::string& from, const message& m);
  void on_put(const std::string& key, line& l, const std::string& from, const message& m);
  void on_del_or_inval(const std::string& key, line& l, const std::string& from, const message& m);
  void on_response(const std::string& key, line& l, const std::string& from, const message& m);
  void recall_done(const std::string& key, line& l);
  void start_recall(const std::string& key, line& l, transaction& t, const std::set<std::string>& targets);
  void node_down_line(const std::string& key, line& l, const std::string& node);
  void advance(table& t, const std::string& key);
  void start_closing();
  void add_job(const std::string& key, line& l, mem_job job);
  void issue(const std::string& key, line& l);
  void check_barrier();
  void maybe_send_flushed();
  bool busy(const line& l) const { return l.tx.has_value() || !l.mem.empty(); }
  std::string state_name(const line& l) const;
  dir_row row(const line& l) const;
  void record(dir_row r, dir_event e) { ++transitions_[static_cast<size_t>(r)][static_cast<size_t>(e)]; }
  void send(const std::string& to, uint64_t epoch, message m);
  const membership& members_of(uint64_t epoch) const { return epoch == epoch_ ? members_ : closing_members_; }

  config cfg_;
  membership members_;
  uint64_t epoch_ = 0;
  uint64_t next_mem_id_ = 0;
  uint64_t next_recall_id_ = 0;

  table lines_;                              // the current epoch (served after the barrier)
  table closing_;                            // the epoch being closed
  uint64_t closing_epoch_ = 0;
  membership closing_members_;
  std::map<uint64_t, std::pair<std::string, uint64_t>> issued_;  // memory op id -> (key, epoch)
  bool serving_ = false;
  bool flushed_due_ = true;                  // our Flushed for epoch_ not sent yet
  std::map<std::pair<std::string, bool>, uint64_t> flushed_;  // (member, from directory) -> newest epoch
  std::deque<std::pair<std::string, message>> waiting_;   // this epoch's messages before the barrier
  std::vector<std::pair<std::string, message>> future_;   // from a newer epoch
  std::set<std::string> dead_;

  counters stats_;
  uint64_t transitions_[dir_row_count][dir_event_count] = {};
  effects fx_;
};

}  // namespace dsync::cache
