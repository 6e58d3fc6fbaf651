#include "protocols/queue/queue_shard.hpp"

#include <iterator>
#include <limits>
#include <stdexcept>

#include "protocols/codec.hpp"

namespace dsync::queue {

namespace {

constexpr uint8_t snapshot_version = 1;

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

uint64_t add_saturated(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max() : a + b;
}

std::string check_queue_name(const std::string& name) {
  if (name.empty()) return "queue name is empty";
  if (name.size() > max_queue_name_bytes)
    return "queue name is longer than " + std::to_string(max_queue_name_bytes) + " bytes";
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '.' || ch == '_' || ch == '-';
    if (!ok) return "queue name may only contain letters, digits, '.', '_' and '-'";
  }
  return {};
}

std::string check_range(const char* field, uint64_t value, uint64_t lo, uint64_t hi) {
  if (value >= lo && value <= hi) return {};
  return std::string(field) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
         " (got " + std::to_string(value) + ")";
}

std::string check_id(const std::string& id) {
  uint64_t shard = 0, index = 0;
  if (id.size() > max_id_bytes || !parse_id(id, shard, index))
    return "id is not a message id of the form <shard>-<index>";
  return {};
}

bool valid_op(uint8_t k) { return k >= static_cast<uint8_t>(op::enqueue) && k <= static_cast<uint8_t>(op::purge_dead); }

outcome refuse(code c, std::string why) {
  outcome o;
  o.result = c;
  o.message = std::move(why);
  return o;
}

}  // namespace

// --- ids ---------------------------------------------------------------------------------

std::string format_id(uint64_t shard, uint64_t index) { return std::to_string(shard) + "-" + std::to_string(index); }

bool parse_id(std::string_view id, uint64_t& shard, uint64_t& index) {
  const auto dash = id.find('-');
  if (dash == std::string_view::npos) return false;
  uint64_t s = 0, i = 0;
  if (!parse_u64(id.substr(0, dash), s) || !parse_u64(id.substr(dash + 1), i) || i == 0) return false;
  shard = s;
  index = i;
  return true;
}

// --- names -------------------------------------------------------------------------------

const char* to_string(op o) {
  switch (o) {
    case op::enqueue: return "enqueue";
    case op::dequeue: return "dequeue";
    case op::ack: return "ack";
    case op::nack: return "nack";
    case op::expire: return "expire";
    case op::redrive: return "redrive";
    case op::delete_queue: return "delete_queue";
    case op::configure: return "configure";
    case op::purge_dead: return "purge_dead";
  }
  return "unknown";
}

const char* to_string(code c) {
  switch (c) {
    case code::ok: return "ok";
    case code::not_found: return "not_found";
    case code::stale_receipt: return "stale_receipt";
    case code::bad_request: return "bad_request";
    case code::limit: return "limit";
  }
  return "unknown";
}

const char* to_string(state s) {
  switch (s) {
    case state::ready: return "ready";
    case state::in_flight: return "in_flight";
    case state::delayed: return "delayed";
    case state::dead: return "dead";
  }
  return "unknown";
}

const char* to_string(dead_reason r) {
  switch (r) {
    case dead_reason::none: return "none";
    case dead_reason::max_deliveries: return "max_deliveries";
  }
  return "unknown";
}

const char* to_string(failure f) {
  switch (f) {
    case failure::none: return "none";
    case failure::visibility_timeout: return "visibility_timeout";
    case failure::nack: return "nack";
  }
  return "unknown";
}

bool command::operator==(const command& o) const {
  return kind == o.kind && now_ms == o.now_ms && queue == o.queue && payload == o.payload && consumer == o.consumer &&
         max == o.max && visibility_ms == o.visibility_ms && id == o.id && receipt == o.receipt &&
         delay_ms == o.delay_ms && max_deliveries == o.max_deliveries;
}

bool delivery::operator==(const delivery& o) const {
  return id == o.id && receipt == o.receipt && payload == o.payload && deliveries == o.deliveries;
}

bool outcome::operator==(const outcome& o) const {
  return result == o.result && id == o.id && messages == o.messages && count == o.count &&
         dead_lettered == o.dead_lettered && message == o.message;
}

bool event::operator==(const event& o) const {
  return what == o.what && queue == o.queue && id == o.id && count == o.count;
}

bool message_info::operator==(const message_info& o) const {
  return id == o.id && where == o.where && payload == o.payload && deliveries == o.deliveries &&
         enqueued_ms == o.enqueued_ms && receipt == o.receipt && consumer == o.consumer &&
         deadline_ms == o.deadline_ms && reason == o.reason && last_failure == o.last_failure &&
         dead_since_ms == o.dead_since_ms;
}

// --- validation --------------------------------------------------------------------------

std::string validate(const command& c) {
  if (!valid_op(static_cast<uint8_t>(c.kind)))
    return "unknown operation " + std::to_string(static_cast<unsigned>(c.kind));
  if (c.kind == op::expire) return {};
  if (auto why = check_queue_name(c.queue); !why.empty()) return why;
  switch (c.kind) {
    case op::enqueue:
      if (c.payload.size() > max_payload_bytes)
        return "payload is larger than " + std::to_string(max_payload_bytes) + " bytes (got " +
               std::to_string(c.payload.size()) + ")";
      return {};
    case op::dequeue:
      if (c.consumer.size() > max_consumer_bytes)
        return "consumer is longer than " + std::to_string(max_consumer_bytes) + " bytes";
      if (auto why = check_range("max", c.max, 1, max_dequeue); !why.empty()) return why;
      return check_range("visibility_ms", c.visibility_ms, min_visibility_ms, max_visibility_ms);
    case op::ack: return check_id(c.id);
    case op::nack:
      if (auto why = check_id(c.id); !why.empty()) return why;
      return check_range("delay_ms", c.delay_ms, 0, max_delay_ms);
    case op::redrive:
    case op::purge_dead: return check_range("max", c.max, 1, max_dequeue);
    case op::configure:
      return check_range("max_deliveries", c.max_deliveries, min_max_deliveries, max_max_deliveries);
    case op::delete_queue:
    case op::expire: return {};
  }
  return "unknown operation";
}

std::string validate_wait_ms(uint64_t wait_ms) { return check_range("wait_ms", wait_ms, 0, max_wait_ms); }

// --- command encoding --------------------------------------------------------------------

std::string encode(const command& c) {
  std::string out;
  codec::put_u8(out, static_cast<uint8_t>(c.kind));
  codec::put_u64(out, c.now_ms);
  switch (c.kind) {
    case op::enqueue:
      codec::put_string(out, c.queue);
      codec::put_string(out, c.payload);
      break;
    case op::dequeue:
      codec::put_string(out, c.queue);
      codec::put_string(out, c.consumer);
      codec::put_u64(out, c.max);
      codec::put_u64(out, c.visibility_ms);
      break;
    case op::ack:
    case op::nack:
      codec::put_string(out, c.queue);
      codec::put_string(out, c.id);
      codec::put_u64(out, c.receipt);
      if (c.kind == op::nack) codec::put_u64(out, c.delay_ms);
      break;
    case op::expire: break;
    case op::redrive:
    case op::purge_dead:
      codec::put_string(out, c.queue);
      codec::put_u64(out, c.max);
      break;
    case op::delete_queue: codec::put_string(out, c.queue); break;
    case op::configure:
      codec::put_string(out, c.queue);
      codec::put_u64(out, c.max_deliveries);
      break;
  }
  return out;
}

bool decode(std::string_view bytes, command& out) {
  codec::reader r{bytes};
  command c;
  uint8_t kind = 0;
  if (!r.get_u8(kind) || !valid_op(kind) || !r.get_u64(c.now_ms)) return false;
  c.kind = static_cast<op>(kind);
  bool ok = true;
  switch (c.kind) {
    case op::enqueue: ok = r.get_string(c.queue) && r.get_string(c.payload); break;
    case op::dequeue:
      ok = r.get_string(c.queue) && r.get_string(c.consumer) && r.get_u64(c.max) && r.get_u64(c.visibility_ms);
      break;
    case op::ack: ok = r.get_string(c.queue) && r.get_string(c.id) && r.get_u64(c.receipt); break;
    case op::nack:
      ok = r.get_string(c.queue) && r.get_string(c.id) && r.get_u64(c.receipt) && r.get_u64(c.delay_ms);
      break;
    case op::expire: break;
    case op::redrive:
    case op::purge_dead: ok = r.get_string(c.queue) && r.get_u64(c.max); break;
    case op::delete_queue: ok = r.get_string(c.queue); break;
    case op::configure: ok = r.get_string(c.queue) && r.get_u64(c.max_deliveries); break;
  }
  if (!ok || !r.at_end()) return false;
  out = std::move(c);
  return true;
}

// --- outcome encoding --------------------------------------------------------------------

std::string encode(const outcome& o) {
  std::string out;
  codec::put_u8(out, static_cast<uint8_t>(o.result));
  codec::put_string(out, o.id);
  codec::put_u64(out, o.count);
  codec::put_u8(out, o.dead_lettered ? 1 : 0);
  codec::put_string(out, o.message);
  codec::put_u64(out, o.messages.size());
  for (const auto& d : o.messages) {
    codec::put_string(out, d.id);
    codec::put_u64(out, d.receipt);
    codec::put_string(out, d.payload);
    codec::put_u64(out, d.deliveries);
  }
  return out;
}

bool decode(std::string_view bytes, outcome& out) {
  codec::reader r{bytes};
  outcome o;
  uint8_t result = 0, dead = 0;
  uint64_t n = 0;
  if (!r.get_u8(result) || result < static_cast<uint8_t>(code::ok) || result > static_cast<uint8_t>(code::limit) ||
      !r.get_string(o.id) || !r.get_u64(o.count) || !r.get_u8(dead) || dead > 1 || !r.get_string(o.message) ||
      !r.get_u64(n))
    return false;
  o.result = static_cast<code>(result);
  o.dead_lettered = dead == 1;
  for (uint64_t i = 0; i < n; ++i) {  // no reserve(n): n is untrusted
    delivery d;
    if (!r.get_string(d.id) || !r.get_u64(d.receipt) || !r.get_string(d.payload) || !r.get_u64(d.deliveries))
      return false;
    o.messages.push_back(std::move(d));
  }
  if (!r.at_end()) return false;
  out = std::move(o);
  return true;
}

// --- the shard ---------------------------------------------------------------------------

shard::shard(uint64_t shard_id, shard_limits limits) : shard_id_(shard_id), limits_(limits) {}

outcome shard::apply(uint64_t index, const command& c, std::vector<event>& events) {
  if (index == 0 || index <= last_index_)
    throw std::logic_error("queue shard: command index " + std::to_string(index) + " after " +
                           std::to_string(last_index_) + " (log order violated)");
  last_index_ = index;
  if (c.now_ms > now_ms_) now_ms_ = c.now_ms;
  if (auto why = validate(c); !why.empty()) return refuse(code::bad_request, std::move(why));
  switch (c.kind) {
    case op::enqueue: return apply_enqueue(index, c, events);
    case op::dequeue: return apply_dequeue(index, c);
    case op::ack:
    case op::nack: return apply_ack_or_nack(c, events);
    case op::expire: return apply_expire(events);
    case op::redrive: return apply_redrive(c, events);
    case op::delete_queue: return apply_delete(c, events);
    case op::configure: return apply_configure(c);
    case op::purge_dead: return apply_purge_dead(c);
  }
  return refuse(code::bad_request, "unknown operation");  // unreachable: validate() checked
}

outcome shard::apply_enqueue(uint64_t index, const command& c, std::vector<event>& events) {
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end() && queues_.size() >= limits_.max_queues)
    return refuse(code::limit, "the shard already holds " + std::to_string(limits_.max_queues) + " queues");
  if (qit != queues_.end() && qit->second.messages.size() >= limits_.max_messages_per_queue)
    return refuse(code::limit, "queue " + c.queue + " already holds " +
                                   std::to_string(limits_.max_messages_per_queue) + " messages");
  if (message_count_ >= limits_.max_messages)
    return refuse(code::limit, "the shard already holds " + std::to_string(limits_.max_messages) + " messages");
  if (payload_bytes_ + c.payload.size() > limits_.max_payload_bytes_total)
    return refuse(code::limit, "the shard's payloads would exceed " +
                                   std::to_string(limits_.max_payload_bytes_total) + " bytes");
  if (qit == queues_.end()) qit = queues_.emplace(c.queue, queue_state{}).first;
  queue_state& q = qit->second;
  message m;
  m.payload = c.payload;
  m.enqueued_ms = now_ms_;
  q.messages.emplace(index, std::move(m));
  q.ready.insert(index);
  q.payload_bytes += c.payload.size();
  payload_bytes_ += c.payload.size();
  ++message_count_;
  events.push_back(event{event::kind::ready, c.queue, {}, q.ready.size()});
  outcome o;
  o.id = format_id(shard_id_, index);
  return o;
}

outcome shard::apply_dequeue(uint64_t index, const command& c) {
  outcome o;
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) return o;
  queue_state& q = qit->second;
  size_t bytes = 0;
  while (!q.ready.empty() && o.messages.size() < c.max) {
    const uint64_t idx = *q.ready.begin();
    message& m = q.messages.at(idx);
    if (!o.messages.empty() && m.payload.size() > max_dequeue_bytes - bytes) break;
    q.ready.erase(q.ready.begin());
    m.where = state::in_flight;
    ++m.deliveries;
    m.receipt = index;
    m.consumer = c.consumer;
    m.deadline_ms = add_saturated(now_ms_, c.visibility_ms);
    ++q.in_flight;
    deadlines_.emplace(m.deadline_ms, c.queue, idx);
    bytes += m.payload.size();
    o.messages.push_back(delivery{format_id(shard_id_, idx), index, m.payload, m.deliveries});
  }
  return o;
}

outcome shard::apply_ack_or_nack(const command& c, std::vector<event>& events) {
  uint64_t sh = 0, idx = 0;
  parse_id(c.id, sh, idx);  // validate() accepted it
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) return refuse(code::not_found, "no queue named " + c.queue);
  queue_state& q = qit->second;
  auto mit = sh == shard_id_ ? q.messages.find(idx) : q.messages.end();
  if (mit == q.messages.end())
    return refuse(code::not_found, "no message " + c.id + " in queue " + c.queue + " (acked, deleted or unknown)");
  message& m = mit->second;
  if (m.where != state::in_flight) {
    const char* why = m.where == state::dead ? "is in the dead-letter queue"
                                             : "is not in flight (its delivery timed out or was nacked)";
    return refuse(code::stale_receipt, "message " + c.id + " " + why);
  }
  if (c.receipt != 0 && c.receipt != m.receipt)
    return refuse(code::stale_receipt, "receipt " + std::to_string(c.receipt) + " is not the current delivery of " +
                                           c.id + " (it timed out and the message was delivered again)");
  outcome o;
  if (c.kind == op::ack) {
    erase_message(c.queue, q, mit);
    return o;
  }
  deadlines_.erase(deadline_key{m.deadline_ms, c.queue, idx});
  --q.in_flight;
  const bool ready = fail_delivery(c.queue, q, idx, m, failure::nack, c.delay_ms, events);
  o.dead_lettered = m.where == state::dead;
  if (ready) events.push_back(event{event::kind::ready, c.queue, {}, q.ready.size()});
  return o;
}

bool shard::fail_delivery(const std::string& name, queue_state& q, uint64_t index, message& m, failure why,
                          uint64_t delay_ms, std::vector<event>& events) {
  m.receipt = 0;
  m.consumer.clear();
  m.deadline_ms = 0;
  if (m.deliveries >= q.max_deliveries) {
    m.where = state::dead;
    m.reason = dead_reason::max_deliveries;
    m.last_failure = why;
    m.dead_since_ms = now_ms_;
    q.dead.insert(index);
    events.push_back(event{event::kind::dead_lettered, name, format_id(shard_id_, index), m.deliveries});
    return false;
  }
  if (delay_ms > 0) {
    m.where = state::delayed;
    m.deadline_ms = add_saturated(now_ms_, delay_ms);
    ++q.delayed;
    deadlines_.emplace(m.deadline_ms, name, index);
    return false;
  }
  m.where = state::ready;
  q.ready.insert(index);
  return true;
}

outcome shard::apply_expire(std::vector<event>& events) {
  outcome o;
  std::set<std::string> gained;  // queues that got ready messages (name order for the events)
  while (!deadlines_.empty() && o.count < max_expire_per_command) {
    auto first = deadlines_.begin();
    if (std::get<0>(*first) > now_ms_) break;
    const std::string name = std::get<1>(*first);
    const uint64_t idx = std::get<2>(*first);
    deadlines_.erase(first);
    queue_state& q = queues_.at(name);
    message& m = q.messages.at(idx);
    ++o.count;
    if (m.where == state::in_flight) {
      --q.in_flight;
      events.push_back(event{event::kind::expired, name, format_id(shard_id_, idx), m.deliveries});
      if (fail_delivery(name, q, idx, m, failure::visibility_timeout, 0, events)) gained.insert(name);
    } else {  // delayed
      --q.delayed;
      m.where = state::ready;
      m.deadline_ms = 0;
      q.ready.insert(idx);
      gained.insert(name);
    }
  }
  for (const auto& name : gained) events.push_back(event{event::kind::ready, name, {}, queues_.at(name).ready.size()});
  return o;
}

outcome shard::apply_redrive(const command& c, std::vector<event>& events) {
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) return refuse(code::not_found, "no queue named " + c.queue);
  queue_state& q = qit->second;
  outcome o;
  while (!q.dead.empty() && o.count < c.max) {
    const uint64_t idx = *q.dead.begin();
    q.dead.erase(q.dead.begin());
    message& m = q.messages.at(idx);
    m.where = state::ready;
    m.deliveries = 0;
    m.reason = dead_reason::none;
    m.last_failure = failure::none;
    m.dead_since_ms = 0;
    q.ready.insert(idx);
    ++o.count;
  }
  if (o.count > 0) events.push_back(event{event::kind::ready, c.queue, {}, q.ready.size()});
  return o;
}

outcome shard::apply_purge_dead(const command& c) {
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) return refuse(code::not_found, "no queue named " + c.queue);
  queue_state& q = qit->second;
  outcome o;
  while (!q.dead.empty() && o.count < c.max) {
    erase_message(c.queue, q, q.messages.find(*q.dead.begin()));
    ++o.count;
  }
  return o;
}

outcome shard::apply_delete(const command& c, std::vector<event>& events) {
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) return refuse(code::not_found, "no queue named " + c.queue);
  queue_state& q = qit->second;
  for (const auto& [idx, m] : q.messages)
    if (m.where == state::in_flight || m.where == state::delayed) deadlines_.erase(deadline_key{m.deadline_ms, c.queue, idx});
  outcome o;
  o.count = q.messages.size();
  message_count_ -= q.messages.size();
  payload_bytes_ -= q.payload_bytes;
  queues_.erase(qit);
  events.push_back(event{event::kind::queue_deleted, c.queue, {}, o.count});
  return o;
}

outcome shard::apply_configure(const command& c) {
  auto qit = queues_.find(c.queue);
  if (qit == queues_.end()) {
    if (queues_.size() >= limits_.max_queues)
      return refuse(code::limit, "the shard already holds " + std::to_string(limits_.max_queues) + " queues");
    qit = queues_.emplace(c.queue, queue_state{}).first;
  }
  qit->second.max_deliveries = c.max_deliveries;
  return outcome{};
}

void shard::erase_message(const std::string& name, queue_state& q, std::map<uint64_t, message>::iterator it) {
  const uint64_t idx = it->first;
  const message& m = it->second;
  switch (m.where) {
    case state::ready: q.ready.erase(idx); break;
    case state::dead: q.dead.erase(idx); break;
    case state::in_flight:
      --q.in_flight;
      deadlines_.erase(deadline_key{m.deadline_ms, name, idx});
      break;
    case state::delayed:
      --q.delayed;
      deadlines_.erase(deadline_key{m.deadline_ms, name, idx});
      break;
  }
  q.payload_bytes -= m.payload.size();
  payload_bytes_ -= m.payload.size();
  --message_count_;
  q.messages.erase(it);
}

// --- inspection --------------------------------------------------------------------------

std::optional<uint64_t> shard::next_deadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return std::get<0>(*deadlines_.begin());
}

queue_stats shard::stats(const std::string& queue) const {
  queue_stats s;
  auto qit = queues_.find(queue);
  if (qit == queues_.end()) return s;
  const queue_state& q = qit->second;
  s.exists = true;
  s.ready = q.ready.size();
  s.in_flight = q.in_flight;
  s.delayed = q.delayed;
  s.dead = q.dead.size();
  s.max_deliveries = q.max_deliveries;
  s.payload_bytes = q.payload_bytes;
  return s;
}

std::vector<std::string> shard::list_queues(const std::string& after, size_t limit) const {
  std::vector<std::string> out;
  if (limit > max_list_page) limit = max_list_page;
  for (auto it = queues_.upper_bound(after); it != queues_.end() && out.size() < limit; ++it)
    out.push_back(it->first);
  return out;
}

dead_page shard::list_dead(const std::string& queue, uint64_t cursor, size_t limit) const {
  dead_page page;
  auto qit = queues_.find(queue);
  if (qit == queues_.end()) return page;
  const queue_state& q = qit->second;
  if (limit > max_list_page) limit = max_list_page;
  auto it = q.dead.upper_bound(cursor);
  for (; it != q.dead.end() && page.messages.size() < limit; ++it)
    page.messages.push_back(info(*it, q.messages.at(*it)));
  if (it != q.dead.end() && !page.messages.empty()) page.next_cursor = *std::prev(it);
  return page;
}

std::optional<message_info> shard::find(const std::string& queue, const std::string& id) const {
  uint64_t sh = 0, idx = 0;
  if (!parse_id(id, sh, idx) || sh != shard_id_) return std::nullopt;
  auto qit = queues_.find(queue);
  if (qit == queues_.end()) return std::nullopt;
  auto mit = qit->second.messages.find(idx);
  if (mit == qit->second.messages.end()) return std::nullopt;
  return info(idx, mit->second);
}

message_info shard::info(uint64_t index, const message& m) const {
  message_info i;
  i.id = format_id(shard_id_, index);
  i.where = m.where;
  i.payload = m.payload;
  i.deliveries = m.deliveries;
  i.enqueued_ms = m.enqueued_ms;
  i.receipt = m.receipt;
  i.consumer = m.consumer;
  i.deadline_ms = m.deadline_ms;
  i.reason = m.reason;
  i.last_failure = m.last_failure;
  i.dead_since_ms = m.dead_since_ms;
  return i;
}

// --- snapshots ---------------------------------------------------------------------------
// u8 version, u64 shard id, u64 last index, u64 now_ms, u64 queue count, then per queue
// (name order): name, u64 max_deliveries, u64 message count, then per message (index
// order): u64 index, u8 state, payload, u64 deliveries, u64 enqueued_ms, and by state:
// in_flight: u64 receipt, u64 deadline_ms, consumer; delayed: u64 deadline_ms;
// dead: u8 reason, u8 last_failure, u64 dead_since_ms. Ready sets, the DLQ, the deadline
// index and the counters are rebuilt. The encoding is canonical: restore() accepts only
// strictly ascending names and indexes, so restore(b) succeeding implies snapshot() == b.

std::string shard::snapshot() const {
  std::string out;
  codec::put_u8(out, snapshot_version);
  codec::put_u64(out, shard_id_);
  codec::put_u64(out, last_index_);
  codec::put_u64(out, now_ms_);
  codec::put_u64(out, queues_.size());
  for (const auto& [name, q] : queues_) {
    codec::put_string(out, name);
    codec::put_u64(out, q.max_deliveries);
    codec::put_u64(out, q.messages.size());
    for (const auto& [idx, m] : q.messages) {
      codec::put_u64(out, idx);
      codec::put_u8(out, static_cast<uint8_t>(m.where));
      codec::put_string(out, m.payload);
      codec::put_u64(out, m.deliveries);
      codec::put_u64(out, m.enqueued_ms);
      switch (m.where) {
        case state::ready: break;
        case state::in_flight:
          codec::put_u64(out, m.receipt);
          codec::put_u64(out, m.deadline_ms);
          codec::put_string(out, m.consumer);
          break;
        case state::delayed: codec::put_u64(out, m.deadline_ms); break;
        case state::dead:
          codec::put_u8(out, static_cast<uint8_t>(m.reason));
          codec::put_u8(out, static_cast<uint8_t>(m.last_failure));
          codec::put_u64(out, m.dead_since_ms);
          break;
      }
    }
  }
  return out;
}

bool shard::restore(std::string_view bytes) {
  codec::reader r{bytes};
  uint8_t version = 0;
  uint64_t sid = 0, nqueues = 0;
  shard s(shard_id_, limits_);
  if (!r.get_u8(version) || version != snapshot_version || !r.get_u64(sid) || sid != shard_id_ ||
      !r.get_u64(s.last_index_) || !r.get_u64(s.now_ms_) || !r.get_u64(nqueues))
    return false;
  std::set<uint64_t> all_ids;  // ids are unique across queues
  for (uint64_t qi = 0; qi < nqueues; ++qi) {
    std::string name;
    queue_state q;
    uint64_t nmessages = 0;
    if (!r.get_string(name) || !check_queue_name(name).empty() ||
        (!s.queues_.empty() && name <= s.queues_.rbegin()->first) || !r.get_u64(q.max_deliveries) ||
        q.max_deliveries < min_max_deliveries || q.max_deliveries > max_max_deliveries || !r.get_u64(nmessages))
      return false;
    for (uint64_t mi = 0; mi < nmessages; ++mi) {
      uint64_t idx = 0;
      uint8_t where = 0;
      message m;
      if (!r.get_u64(idx) || idx == 0 || idx > s.last_index_ || (!q.messages.empty() && idx <= q.messages.rbegin()->first) ||
          !all_ids.insert(idx).second || !r.get_u8(where) || !r.get_string(m.payload) ||
          m.payload.size() > max_payload_bytes || !r.get_u64(m.deliveries) || !r.get_u64(m.enqueued_ms) ||
          m.enqueued_ms > s.now_ms_)
        return false;
      switch (where) {
        case static_cast<uint8_t>(state::ready):
          q.ready.insert(idx);
          break;
        case static_cast<uint8_t>(state::in_flight):
          if (!r.get_u64(m.receipt) || !r.get_u64(m.deadline_ms) || !r.get_string(m.consumer) ||
              m.consumer.size() > max_consumer_bytes || m.deliveries == 0 || m.receipt <= idx ||
              m.receipt > s.last_index_)
            return false;
          ++q.in_flight;
          s.deadlines_.emplace(m.deadline_ms, name, idx);
          break;
        case static_cast<uint8_t>(state::delayed):
          if (!r.get_u64(m.deadline_ms) || m.deliveries == 0) return false;
          ++q.delayed;
          s.deadlines_.emplace(m.deadline_ms, name, idx);
          break;
        case static_cast<uint8_t>(state::dead): {
          uint8_t reason = 0, why = 0;
          if (!r.get_u8(reason) || reason != static_cast<uint8_t>(dead_reason::max_deliveries) || !r.get_u8(why) ||
              why < static_cast<uint8_t>(failure::visibility_timeout) || why > static_cast<uint8_t>(failure::nack) ||
              !r.get_u64(m.dead_since_ms) || m.dead_since_ms > s.now_ms_ || m.deliveries == 0)
            return false;
          m.reason = static_cast<dead_reason>(reason);
          m.last_failure = static_cast<failure>(why);
          q.dead.insert(idx);
          break;
        }
        default: return false;
      }
      m.where = static_cast<state>(where);
      q.payload_bytes += m.payload.size();
      q.messages.emplace_hint(q.messages.end(), idx, std::move(m));
    }
    s.message_count_ += q.messages.size();
    s.payload_bytes_ += q.payload_bytes;
    s.queues_.emplace_hint(s.queues_.end(), std::move(name), std::move(q));
  }
  if (!r.at_end()) return false;
  *this = std::move(s);
  return true;
}

}  // namespace dsync::queue
