// The cache controller of one node: its lines (capacity CACHE_SIZE, LRU or LFU
// replacement), the client operations on them, and its side of the coherence protocol
// (MESI, MOSI or MOESI; write-back or write-through). The transition tables, with the
// Primer's state names, are in protocols/cache/README.md.
//
// Inputs (each returns the effects it caused, see messages.hpp):
//   start()                   once, after construction: announces the first epoch
//   submit(op)                a client get / put / del / invalidate
//   expire(request)           the caller gave up waiting for a request
//   on_message(from, msg)     a message for this controller (for_directory(kind) false)
//   on_memory_done(id, v)     a memory write this controller issued has landed
//   on_membership(m)          a new directory epoch (membership change)
//   on_node_down(node)        `node` died, after every message it sent was delivered here
//   on_node_up(node)          `node` is back (a new incarnation, under a newer epoch)
// Effects: messages (to home directories and other controllers), completions, and —
// only for dirty lines whose home died — memory writes.
//
// Guarantees (with a directory per node driven as in directory.hpp, and the ordering
// contract of messages.hpp): at most one node holds a line in M or E, and then no other
// node holds a readable copy; a put completes only when every other copy is gone (M
// reached after all Inv-Acks); every readable copy of a key holds the value of the
// last completed write. Per key, this node's client operations run one at a time in
// submission order (a later get on the same key waits for an earlier put). Operations on
// different keys run concurrently.
//
// Epochs: a line belongs to the epoch whose home granted it and keeps answering that
// home (which recalls it when it closes the epoch). A new transaction on a key starts in
// the current epoch only once no older line of the key is left; until then the older
// line still serves hits. Flushed(e) goes to every member once no line older than e is
// left. A line whose home died is dropped (its dirty data, if it is surely the newest,
// written to memory first); requests for keys whose home is down wait for a new epoch.
//
// Single-threaded: call from one thread (the actor). Deterministic: the same inputs give
// the same effects. Memory use: O(lines + pending operations + stalled messages).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "protocols/cache/messages.hpp"
#include "protocols/cache/replacement.hpp"
#include "protocols/cache/types.hpp"

namespace dsync::cache {

// Events of the controller's table (README). Load/Store/Replacement in a transient state
// are not events: the client operation waits in the per-key queue (the Primer's "stall").
enum class cache_event : uint8_t {
  load, store, replacement,
  fwd_get_s, fwd_get_m, inv, recall,
  data, excl_data, data_ack0, data_acks, revert_data,
  ack_count0, ack_counts, inv_ack, last_inv_ack,
  put_ack, wt_ack, nack,
};
constexpr size_t cache_event_count = 19;
std::string_view to_string(cache_event e);  // "Fwd-GetS", "Data(ack>0)", ...

class controller {
 public:
  struct config {
    std::string self;                                   // this node's id
    protocol proto = protocol::mesi;
    write_policy policy = write_policy::write_back;
    size_t capacity = 1024;                             // lines (CACHE_SIZE), >= 1
    replacement_kind replacement = replacement_kind::lru;
    size_t max_pending_ops = 10000;                     // client operations queued or running
    size_t max_future_messages = 100000;                // buffered from a newer epoch
    // Record the keys of lines that change, for take_changed() (off: nothing recorded).
    bool track_changes = false;
    // Empty if usable, else what is wrong.
    std::string validate() const;
  };

  struct counters {
    uint64_t hits = 0, misses = 0;
    uint64_t evictions = 0;
    uint64_t write_backs = 0;        // dirty data sent home or to memory
    uint64_t write_throughs = 0;
    uint64_t invalidations = 0;      // copies dropped on Inv, Recall or Fwd-GetM
    uint64_t nacks = 0;              // requests refused by a closing epoch
    uint64_t stale_messages = 0;     // about a line of an epoch we no longer hold, dropped
    uint64_t duplicate_messages = 0; // answers to a transaction already answered, dropped
    uint64_t unexpected_messages = 0;  // impossible under the ordering contract; dropped
    uint64_t epoch_changes = 0;
    uint64_t lines_lost_with_home = 0;  // dropped because their home died
  };

  // Throws std::invalid_argument if the config or membership is invalid.
  controller(config cfg, membership m);

  effects start();
  // Refused at once (error completion) if the key is empty or over max_key_bytes, a put
  // value over max_value_bytes, the request id already pending, or max_pending_ops reached.
  effects submit(client_op op);
  // Completes `request` now with errc::expired. A request already talking to its home
  // runs on in the background (maybe_applied: a put or delete may still take effect,
  // though a put that had not written yet will not write); one still queued is dropped
  // (maybe_applied false). Unknown requests are ignored.
  effects expire(uint64_t request);
  effects on_message(const std::string& from, const message& m);
  effects on_memory_done(uint64_t id);
  // Ignored unless m.epoch is newer. Throws std::invalid_argument if m is invalid.
  effects on_membership(membership m);
  effects on_node_down(const std::string& node);
  effects on_node_up(const std::string& node);
  // Loads of `key` served outside the controller from a copy of its readable line (the
  // node's read fast path, actors/cache_mirror.hpp): `times` uses for the replacement
  // order (LRU: now the most recent; LFU: counted). Ignored unless the line is readable.
  // No effects; stats().hits does not include them (the caller counts its own).
  void note_hits(const std::string& key, uint64_t times);

  // With config::track_changes: the keys whose line may have changed state or value since
  // the last call (created, changed, removed), in order, possibly repeated; empty without.
  // A caller that keeps a copy of the readable lines reads state() and data() of these
  // keys after every input, before it acts on that input's effects.
  std::vector<std::string> take_changed() { return std::exchange(changed_, {}); }

  // --- inspection (tests, simulation, metrics) ---
  cache_state state(const std::string& key) const;
  // The data the line holds, or nullptr if it holds none.
  const value* data(const std::string& key) const;
  bool dirty(const std::string& key) const;
  uint64_t line_epoch(const std::string& key) const;  // 0 if no line
  std::vector<std::string> keys() const;   // keys with a line in any state but I
  size_t resident_lines() const { return resident_; }  // lines counted against capacity
  size_t lines_in(cache_state s) const { return state_counts_[static_cast<size_t>(s)]; }
  size_t pending_ops() const { return requests_.size(); }
  size_t stalled_messages() const;
  // No pending operation, no line in a transient state or of an older epoch, nothing
  // stalled, buffered or being written.
  bool idle() const;
  uint64_t epoch() const { return epoch_; }
  const config& settings() const { return cfg_; }
  const counters& stats() const { return stats_; }
  const replacer& replacement() const { return replacer_; }
  // How often the table entry (state, event) was taken since construction.
  uint64_t transitions(cache_state s, cache_event e) const {
    return transitions_[static_cast<size_t>(s)][static_cast<size_t>(e)];
  }

 private:
  struct pending {
    client_op op;
    bool started = false;     // talking to the home directory
    bool detached = false;    // expired: complete silently
    bool wrote = false;       // put: the line holds the new value (write-through in flight)
    uint64_t txn = 0;
    uint64_t refused_in = 0;  // nacked in this epoch: wait for a newer one
    std::string home;         // del / invalidate: where it was sent
  };
  struct line {
    cache_state st = cache_state::I;
    uint64_t epoch = 0;      // the epoch whose home granted the line
    std::string home;        // that home
    bool has_data = false;
    value val;
    bool dirty = false;
    uint64_t txn = 0;        // the transaction this line is in (or last was in)
    uint64_t fill_txn = 0;   // the GetS whose data filled it (Revert-Data matches this)
    bool got_data = false;   // the data of `txn` arrived (later copies are duplicates)
    bool acks_known = false;
    std::vector<std::string> acks_expected;
    std::set<std::string> acks_got;
    std::deque<std::pair<std::string, message>> stalled;
  };

  void dispatch(const std::string& from, const message& m);
  bool handle_request(const std::string& from, const message& m);  // false: stall
  bool handle_fwd_get_s(line& l, const message& m);
  bool handle_fwd_get_m(line& l, const message& m);
  bool handle_inv(line* l, const message& m);
  bool handle_recall(const std::string& from, line* l, const message& m);
  void handle_data(line& l, const message& m);
  void handle_inv_ack(line& l, const message& m);
  void handle_ack_count(line& l, const message& m);
  void handle_put_ack(line& l, const message& m);
  void handle_wt_ack(line& l, const message& m);
  void handle_nack(const message& m);
  void handle_done(const message& m);

  void drain();
  void pump(const std::string& key);
  void retry_stalled(const std::string& key);
  bool allocate(const std::string& key);
  void evict(const std::string& key, line& l);
  void reach_m(const std::string& key, line& l);
  bool write(const std::string& key, line& l, pending& p);  // true: the put completed
  void lose_home(const std::string& key);
  void finish_head(const std::string& key, status st, const value& v, cache_state s);
  void complete(const pending& p, status st, const value& v, cache_state s, std::string_view error = {},
                bool maybe_applied = false);
  void maybe_send_flushed();

  line* find(const std::string& key);
  // The line of `key` that belongs to epoch `e`, if any.
  line* find(const std::string& key, uint64_t e);
  line& create(const std::string& key, cache_state st);
  void set_state(const std::string& key, line& l, cache_state st);
  void changed(const std::string& key) {
    if (cfg_.track_changes) changed_.push_back(key);
  }
  void remove(const std::string& key);
  bool all_acked(const line& l) const;
  void record(cache_state s, cache_event e) {
    ++transitions_[static_cast<size_t>(s)][static_cast<size_t>(e)];
  }

  void send(const std::string& to, uint64_t epoch, message m);
  void send_home(const line& l, message m) { send(l.home, l.epoch, std::move(m)); }
  message reply_data(const std::string& key, const line& l, uint64_t txn) const;

  config cfg_;
  membership members_;
  uint64_t epoch_ = 0;
  uint64_t next_txn_ = 0;
  uint64_t next_mem_id_ = 0;
  bool flushed_due_ = true;        // Flushed for epoch_ not sent yet
  size_t old_lines_ = 0;           // lines of an epoch older than epoch_
  std::set<std::string> dead_;
  std::set<uint64_t> writes_;      // memory writes in flight (lines whose home died)

  std::map<std::string, line> lines_;
  replacer replacer_;
  size_t resident_ = 0;
  size_t state_counts_[cache_state_count] = {};

  std::map<std::string, std::deque<pending>> ops_;  // per key, in submission order
  std::map<uint64_t, std::string> requests_;        // pending request -> key
  std::set<std::string> ready_;                     // keys whose head operation may progress
  std::set<std::string> retry_;                     // lines with stalled messages to retry
  std::set<std::string> waiting_slot_;              // keys waiting for a free line

  std::vector<std::pair<std::string, message>> future_;  // from a newer epoch

  std::vector<std::string> changed_;  // for take_changed()

  counters stats_;
  uint64_t transitions_[cache_state_count][cache_event_count] = {};
  effects fx_;
};

}  // namespace dsync::cache
