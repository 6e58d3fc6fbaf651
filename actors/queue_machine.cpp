#include "actors/queue_machine.hpp"

#include "protocols/codec.hpp"

namespace dsync {

namespace shard_query {

namespace {
constexpr uint8_t stats_tag = 'S';
constexpr uint8_t dead_tag = 'D';
constexpr uint8_t list_tag = 'L';
constexpr uint8_t all_stats_tag = 'A';

void put_stats(std::string& out, const queue::queue_stats& s) {
  codec::put_u8(out, s.exists ? 1 : 0);
  for (auto x : {s.ready, s.in_flight, s.delayed, s.dead, s.max_deliveries, s.payload_bytes}) codec::put_u64(out, x);
}

bool get_stats(codec::reader& r, queue::queue_stats& s) {
  uint8_t exists = 0;
  if (!r.get_u8(exists) || !r.get_u64(s.ready) || !r.get_u64(s.in_flight) || !r.get_u64(s.delayed)
      || !r.get_u64(s.dead) || !r.get_u64(s.max_deliveries) || !r.get_u64(s.payload_bytes))
    return false;
  s.exists = exists != 0;
  return true;
}
}  // namespace

std::string stats(const std::string& queue) {
  std::string out;
  codec::put_u8(out, stats_tag);
  codec::put_string(out, queue);
  return out;
}

std::string dead(const std::string& queue, uint64_t cursor, uint64_t limit) {
  std::string out;
  codec::put_u8(out, dead_tag);
  codec::put_string(out, queue);
  codec::put_u64(out, cursor);
  codec::put_u64(out, limit);
  return out;
}

std::string list(const std::string& after, uint64_t limit) {
  std::string out;
  codec::put_u8(out, list_tag);
  codec::put_string(out, after);
  codec::put_u64(out, limit);
  return out;
}

bool decode_stats(const std::string& bytes, queue::queue_stats& s) {
  codec::reader r{bytes};
  return get_stats(r, s) && r.at_end();
}

std::string all_stats(uint64_t limit) {
  std::string out;
  codec::put_u8(out, all_stats_tag);
  codec::put_string(out, "");
  codec::put_u64(out, limit);
  return out;
}

bool decode_all_stats(const std::string& bytes, std::vector<std::pair<std::string, queue::queue_stats>>& out) {
  codec::reader r{bytes};
  uint64_t n = 0;
  out.clear();
  if (!r.get_u64(n) || n > bytes.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::pair<std::string, queue::queue_stats> q;
    if (!r.get_string(q.first) || !get_stats(r, q.second)) return false;
    out.push_back(std::move(q));
  }
  return r.at_end();
}

bool decode_dead(const std::string& bytes, queue::dead_page& page) {
  codec::reader r{bytes};
  uint64_t n = 0;
  page = {};
  if (!r.get_u64(n) || n > bytes.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    queue::message_info m;
    uint8_t reason = 0;
    uint8_t failure = 0;
    if (!r.get_string(m.id) || !r.get_string(m.payload) || !r.get_u64(m.deliveries) || !r.get_u8(reason)
        || !r.get_u8(failure) || !r.get_u64(m.dead_since_ms) || reason > 1 || failure > 2)
      return false;
    m.where = queue::state::dead;
    m.reason = static_cast<queue::dead_reason>(reason);
    m.last_failure = static_cast<queue::failure>(failure);
    page.messages.push_back(std::move(m));
  }
  return r.get_u64(page.next_cursor) && r.at_end();
}

bool decode_list(const std::string& bytes, std::vector<std::string>& out) {
  codec::reader r{bytes};
  uint64_t n = 0;
  out.clear();
  if (!r.get_u64(n) || n > bytes.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    if (!r.get_string(name)) return false;
    out.push_back(std::move(name));
  }
  return r.at_end();
}

}  // namespace shard_query

std::string queue_machine::apply(uint64_t index, const std::string& command) {
  queue::command c;
  if (!queue::decode(command, c)) {
    queue::outcome o;
    o.result = queue::code::bad_request;
    o.message = "malformed queue command";
    return queue::encode(o);
  }
  std::vector<queue::event> events;
  auto answer = queue::encode(shard_.apply(index, c, events));
  report(std::move(events));
  return answer;
}

std::string queue_machine::query(const std::string& request) const {
  codec::reader r{request};
  uint8_t tag = 0;
  std::string name;
  std::string out;
  if (!r.get_u8(tag) || !r.get_string(name)) return out;
  if (tag == shard_query::stats_tag) {
    shard_query::put_stats(out, shard_.stats(name));
  } else if (tag == shard_query::all_stats_tag) {
    uint64_t limit = 0;
    if (!r.get_u64(limit)) return out;
    auto names = shard_.list_queues("", limit);
    codec::put_u64(out, names.size());
    for (auto& n : names) {
      codec::put_string(out, n);
      shard_query::put_stats(out, shard_.stats(n));
    }
  } else if (tag == shard_query::dead_tag) {
    uint64_t cursor = 0;
    uint64_t limit = 0;
    if (!r.get_u64(cursor) || !r.get_u64(limit)) return out;
    auto page = shard_.list_dead(name, cursor, limit);
    codec::put_u64(out, page.messages.size());
    for (auto& m : page.messages) {
      codec::put_string(out, m.id);
      codec::put_string(out, m.payload);
      codec::put_u64(out, m.deliveries);
      codec::put_u8(out, static_cast<uint8_t>(m.reason));
      codec::put_u8(out, static_cast<uint8_t>(m.last_failure));
      codec::put_u64(out, m.dead_since_ms);
    }
    codec::put_u64(out, page.next_cursor);
  } else if (tag == shard_query::list_tag) {
    uint64_t limit = 0;
    if (!r.get_u64(limit)) return out;
    auto names = shard_.list_queues(name, limit);
    codec::put_u64(out, names.size());
    for (auto& n : names) codec::put_string(out, n);
  }
  return out;
}

bool queue_machine::restore(const std::string& data) {
  if (!shard_.restore(data)) return false;
  report({});
  return true;
}

void queue_machine::on_leadership(bool leading) {
  if (observer_.leadership) observer_.leadership(group_, leading);
}

void queue_machine::report(std::vector<queue::event> events) {
  if (observer_.applied) observer_.applied(queue_apply_report{group_, std::move(events), shard_.next_deadline()});
}

}  // namespace dsync
