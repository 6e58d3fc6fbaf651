// The replicated state machine of one queue shard (one Raft group; it holds many queues).
// Pure: commands arrive through Raft in log order together with their log index, each
// carrying the leader's wall-clock time in milliseconds (`now_ms`), stamped when the
// leader proposed it. Replicas never read a clock, so every replica computes the same
// deliveries, expiries and answers. See ../../../shared/DESIGN.md, "Queues", and
// README.md beside this file for the limits and the reasoning behind the choices below.
//
// Time inside the shard never runs backwards: a command whose now_ms is older than the
// newest seen so far is applied at the newest time (a new leader's clock may lag).
//
// Semantics:
// - Queues are created by the first `enqueue` or `configure` that names them; `dequeue`,
//   `ack`, `nack`, `redrive`, `purge_dead` never create one. `delete_queue` drops a queue
//   with all its messages (ready, in flight, delayed and dead) and its settings.
// - Message ids are "<shard>-<index>": the shard id given at construction and the log
//   index of the enqueue command, both in decimal without leading zeros (e.g. "7-1042").
//   Log indexes never repeat within a Raft group, so ids are unique cluster-wide as long
//   as shard ids are unique. One command per log entry (the actor must not batch).
// - A message is in exactly one state: ready, in_flight, delayed (nacked with a delay) or
//   dead (in the queue's dead-letter queue, DLQ). Acked messages are gone for good.
// - Ready order: by message id, i.e. enqueue order. A message that becomes ready again
//   (visibility timeout, nack, delay over, redrive) goes back to its original position,
//   ahead of younger messages (oldest ready message first, as SQS roughly does). First
//   deliveries are therefore FIFO per queue (enqueue has no delay, so a never-delivered
//   message is always ready).
// - dequeue(queue, consumer, max, visibility_ms) hands out up to `max` ready messages,
//   oldest first, stopping early once their payloads reach max_dequeue_bytes (at least
//   one message is always handed out if any is ready). Each delivery increments the
//   message's delivery count and gets a receipt: the log index of that dequeue command,
//   unique per delivery of a message. The message is in flight until now + visibility_ms.
//   An empty reply is ok (the actor runs long polls; `ready` events wake it up).
// - ack(id, receipt) deletes an in-flight message; nack(id, receipt, delay_ms) makes it
//   ready again at once, or delayed until now + delay_ms. receipt == 0 means "the current
//   delivery, whatever it is". Refusals: unknown queue / id / other shard's id / acked
//   or deleted message -> not_found; a receipt that is not the current delivery's, or a
//   message that is not in flight (ready, delayed or dead: its delivery timed out or was
//   nacked) -> stale_receipt. So an ack from a consumer whose delivery timed out never
//   deletes the message another consumer now holds.
// - Expiry happens only through `expire` commands, which the leader proposes once
//   next_deadline() <= its clock: in-flight messages whose visibility deadline passed
//   become ready, delayed messages whose delay passed become ready. At most
//   max_expire_per_command messages move per command; next_deadline() stays in the past
//   while more are due. Until an expire is applied, an ack of the lapsed delivery still
//   succeeds (nobody else holds the message).
// - Dead letters: when a delivery fails (visibility timeout or nack) and the message's
//   delivery count is >= the queue's max_deliveries, it moves to the DLQ at that moment
//   (nack delay ignored), keeping payload and delivery count, with reason max_deliveries
//   and the failure that sent it there. `configure` changes max_deliveries for future
//   failures only: a ready message over a lowered limit is delivered once more and dies
//   when that delivery fails (no queue scan). The DLQ lists in id order;
//   `redrive` moves up to `max` dead messages (oldest id first) back to ready with their
//   delivery count reset to 0; `purge_dead` drops up to `max` of them.
// - Costs: enqueue, ack, nack, configure O(log n); dequeue, redrive, purge_dead
//   O(max log n); expire O(k log n), k <= max_expire_per_command; delete_queue is linear
//   in the size of that queue (bounded by the per-queue depth limit).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace dsync::queue {

// --- limits (README.md beside this file; enforced by validate()) ----------------------
// Queue names: 1..256 bytes of [A-Za-z0-9._-].
constexpr size_t max_queue_name_bytes = 256;
constexpr size_t max_consumer_bytes = 128;          // dequeue's consumer (may be empty)
constexpr size_t max_payload_bytes = 256 * 1024;    // opaque bytes (the JSON text)
constexpr uint64_t max_dequeue = 1000;              // dequeue/redrive/purge_dead: max in 1..1000
constexpr size_t max_dequeue_bytes = 8 * 1024 * 1024;  // payload bytes per dequeue reply
constexpr uint64_t min_visibility_ms = 1;
constexpr uint64_t max_visibility_ms = 12ull * 3600 * 1000;  // 12 h
constexpr uint64_t max_delay_ms = 12ull * 3600 * 1000;       // nack delay 0..12 h
constexpr uint64_t max_wait_ms = 60'000;  // long-poll wait (the actor's; see validate_wait_ms)
constexpr uint64_t default_max_deliveries = 5;
constexpr uint64_t min_max_deliveries = 1;
constexpr uint64_t max_max_deliveries = 1000;
constexpr size_t max_expire_per_command = 4096;
constexpr size_t max_list_page = 1000;              // list_queues / list_dead page size
constexpr size_t max_id_bytes = 41;                 // "<u64>-<u64>"

// Capacity of one shard: replicas must agree, so every replica of a shard must be built
// with the same values. Over these, enqueue/configure answer `limit`.
struct shard_limits {
  size_t max_queues = 10'000;
  size_t max_messages_per_queue = 100'000;           // ready + in flight + delayed + dead
  size_t max_messages = 1'000'000;                   // whole shard
  uint64_t max_payload_bytes_total = 512ull << 20;   // whole shard (keeps snapshots < 1 GiB)
};

// --- ids -----------------------------------------------------------------------------
std::string format_id(uint64_t shard, uint64_t index);
// Strict: "<digits>-<digits>", no leading zeros, no overflow, index >= 1.
bool parse_id(std::string_view id, uint64_t& shard, uint64_t& index);

// --- commands ------------------------------------------------------------------------
enum class op : uint8_t {
  enqueue = 1,       // queue, payload
  dequeue = 2,       // queue, consumer, max, visibility_ms
  ack = 3,           // queue, id, receipt (0 = current delivery)
  nack = 4,          // queue, id, receipt (0 = current delivery), delay_ms
  expire = 5,        // (nothing: proposed by the leader when next_deadline() passed)
  redrive = 6,       // queue, max
  delete_queue = 7,  // queue
  configure = 8,     // queue, max_deliveries
  purge_dead = 9,    // queue, max
};
const char* to_string(op o);

struct command {
  op kind = op::enqueue;
  uint64_t now_ms = 0;  // the leader's clock when it proposed the command
  std::string queue;
  std::string payload;            // enqueue
  std::string consumer;           // dequeue
  uint64_t max = 0;               // dequeue, redrive, purge_dead
  uint64_t visibility_ms = 0;     // dequeue
  std::string id;                 // ack, nack
  uint64_t receipt = 0;           // ack, nack
  uint64_t delay_ms = 0;          // nack
  uint64_t max_deliveries = 0;    // configure

  bool operator==(const command& o) const;
};

// Empty if `c` is acceptable, else one sentence naming what is wrong. Only the fields
// of c.kind are checked. apply() refuses invalid commands with bad_request and this text.
std::string validate(const command& c);
// For the actor's long poll (wait_ms never enters the log): empty if 0..max_wait_ms.
std::string validate_wait_ms(uint64_t wait_ms);

// Writes only the fields of c.kind; decode leaves the other fields at their defaults.
std::string encode(const command& c);
// False on malformed bytes, an unknown op or trailing bytes. Field values are not
// checked here (apply() answers bad_request with the reason).
bool decode(std::string_view bytes, command& out);

// --- outcomes ------------------------------------------------------------------------
enum class code : uint8_t {
  ok = 1,
  not_found = 2,      // unknown queue or message (message filled in)
  stale_receipt = 3,  // ack/nack of a delivery that is not the current one (message)
  bad_request = 4,    // validate() failed (message)
  limit = 5,          // a shard_limits bound was reached (message)
};
const char* to_string(code c);

struct delivery {
  std::string id;
  uint64_t receipt = 0;     // quote it in ack/nack
  std::string payload;
  uint64_t deliveries = 0;  // 1 on the first delivery
  bool operator==(const delivery& o) const;
};

struct outcome {
  code result = code::ok;
  std::string id;                   // enqueue: the new message's id
  std::vector<delivery> messages;   // dequeue, oldest first (may be empty)
  uint64_t count = 0;               // expire/redrive/purge_dead/delete_queue: messages moved or dropped
  bool dead_lettered = false;       // nack: the message went to the DLQ instead of ready
  std::string message;              // why, for every result but ok
  bool operator==(const outcome& o) const;
};
std::string encode(const outcome& o);
bool decode(std::string_view bytes, outcome& out);  // false on malformed bytes

// What an applied command did that others may wait for.
struct event {
  enum class kind : uint8_t {
    ready = 1,          // `queue` gained ready messages; count = its ready messages now.
                        // At most one per queue per command, after the others. Long polls
                        // waiting on `queue` should retry their dequeue.
    expired = 2,        // an in-flight delivery of `id` timed out (count = its deliveries)
    dead_lettered = 3,  // `id` moved to the DLQ (count = its deliveries)
    queue_deleted = 4,  // `queue` is gone (count = messages dropped); answer its long polls
  };
  kind what = kind::ready;
  std::string queue;
  std::string id;  // expired, dead_lettered
  uint64_t count = 0;
  bool operator==(const event& o) const;
};

// --- inspection ----------------------------------------------------------------------
enum class state : uint8_t { ready = 1, in_flight = 2, delayed = 3, dead = 4 };
const char* to_string(state s);
enum class dead_reason : uint8_t { none = 0, max_deliveries = 1 };
const char* to_string(dead_reason r);        // "none" | "max_deliveries"
enum class failure : uint8_t { none = 0, visibility_timeout = 1, nack = 2 };
const char* to_string(failure f);            // "none" | "visibility_timeout" | "nack"

struct message_info {
  std::string id;
  state where = state::ready;
  std::string payload;
  uint64_t deliveries = 0;
  uint64_t enqueued_ms = 0;
  uint64_t receipt = 0;       // in_flight: the current delivery's receipt
  std::string consumer;       // in_flight
  uint64_t deadline_ms = 0;   // in_flight: visible again at; delayed: ready at
  dead_reason reason = dead_reason::none;  // dead
  failure last_failure = failure::none;    // dead: the failure that sent it to the DLQ
  uint64_t dead_since_ms = 0;              // dead
  bool operator==(const message_info& o) const;
};

struct queue_stats {
  bool exists = false;
  uint64_t ready = 0;
  uint64_t in_flight = 0;
  uint64_t delayed = 0;   // nacked with a delay, not ready yet
  uint64_t dead = 0;
  uint64_t max_deliveries = default_max_deliveries;
  uint64_t payload_bytes = 0;
};

struct dead_page {
  std::vector<message_info> messages;  // in id order
  uint64_t next_cursor = 0;            // pass to list_dead for the next page; 0 = no more
};

class shard {
 public:
  explicit shard(uint64_t shard_id, shard_limits limits = {});

  // Applies the command committed at log index `index`; appends what it did that others
  // may wait for to `events`. Precondition: index > last_index() (log order; a caller bug
  // otherwise: throws std::logic_error). Client-caused refusals are outcome codes.
  outcome apply(uint64_t index, const command& c, std::vector<event>& events);

  // The earliest visibility deadline or delay end (leader time), if any: when the leader
  // should propose `expire`.
  std::optional<uint64_t> next_deadline() const;

  queue_stats stats(const std::string& queue) const;  // exists = false for unknown queues
  // Queue names after `after` (exclusive; "" = from the start), at most
  // min(limit, max_list_page), in name order.
  std::vector<std::string> list_queues(const std::string& after = "", size_t limit = max_list_page) const;
  // Dead messages of `queue` after `cursor` (0 = from the start), at most
  // min(limit, max_list_page).
  dead_page list_dead(const std::string& queue, uint64_t cursor = 0, size_t limit = max_list_page) const;
  // One message of `queue` (nullopt if unknown, acked or deleted).
  std::optional<message_info> find(const std::string& queue, const std::string& id) const;

  uint64_t shard_id() const { return shard_id_; }
  const shard_limits& limits() const { return limits_; }
  uint64_t last_index() const { return last_index_; }  // last applied log index
  uint64_t now_ms() const { return now_ms_; }          // newest time seen
  size_t queue_count() const { return queues_.size(); }
  size_t message_count() const { return message_count_; }    // all states
  uint64_t payload_bytes() const { return payload_bytes_; }   // all states

  // Deterministic: equal states give equal bytes.
  std::string snapshot() const;
  // False (and the shard unchanged) on malformed bytes, or a snapshot of another shard.
  bool restore(std::string_view bytes);

 private:
  struct message {
    std::string payload;
    state where = state::ready;
    uint64_t deliveries = 0;
    uint64_t enqueued_ms = 0;
    uint64_t receipt = 0;
    std::string consumer;
    uint64_t deadline_ms = 0;
    dead_reason reason = dead_reason::none;
    failure last_failure = failure::none;
    uint64_t dead_since_ms = 0;
  };
  struct queue_state {
    uint64_t max_deliveries = default_max_deliveries;
    std::map<uint64_t, message> messages;  // by log index of the enqueue
    std::set<uint64_t> ready;              // delivery order
    std::set<uint64_t> dead;               // DLQ order
    uint64_t in_flight = 0;
    uint64_t delayed = 0;
    uint64_t payload_bytes = 0;
  };
  // (deadline_ms, queue, index) of every in-flight and delayed message.
  using deadline_key = std::tuple<uint64_t, std::string, uint64_t>;

  outcome apply_enqueue(uint64_t index, const command& c, std::vector<event>& events);
  outcome apply_dequeue(uint64_t index, const command& c);
  outcome apply_ack_or_nack(const command& c, std::vector<event>& events);
  outcome apply_expire(std::vector<event>& events);
  outcome apply_redrive(const command& c, std::vector<event>& events);
  outcome apply_purge_dead(const command& c);
  outcome apply_delete(const command& c, std::vector<event>& events);
  outcome apply_configure(const command& c);

  // Moves an in-flight message whose delivery failed to ready, delayed or dead.
  // Returns true if it became ready.
  bool fail_delivery(const std::string& name, queue_state& q, uint64_t index, message& m,
                     failure why, uint64_t delay_ms, std::vector<event>& events);
  // Drops a message in any state, with its index entries and counters.
  void erase_message(const std::string& name, queue_state& q, std::map<uint64_t, message>::iterator it);
  message_info info(uint64_t index, const message& m) const;

  uint64_t shard_id_;
  shard_limits limits_;
  std::map<std::string, queue_state> queues_;
  std::set<deadline_key> deadlines_;
  uint64_t last_index_ = 0;
  uint64_t now_ms_ = 0;
  size_t message_count_ = 0;
  uint64_t payload_bytes_ = 0;
};

}  // namespace dsync::queue
