#include "protocols/cache/messages.hpp"

#include "protocols/codec.hpp"

namespace dsync::cache {

namespace {

constexpr uint8_t format_version = 1;

enum flag : uint8_t {
  f_dirty = 1,
  f_exclusive = 2,
  f_revert = 4,
  f_has_data = 8,
  f_has_value = 16,
  f_from_directory = 32,
};
constexpr uint8_t known_flags = 63;

bool known_kind(uint8_t k) { return (k >= 1 && k <= 12) || k == 14 || (k >= 32 && k <= 42); }

// Which optional fields a kind may carry.
bool needs_node(msg_kind k) {
  return k == msg_kind::fwd_get_s || k == msg_kind::fwd_get_m || k == msg_kind::inv || k == msg_kind::inv_ack;
}
bool needs_data(msg_kind k) {
  return k == msg_kind::put_m || k == msg_kind::put_o || k == msg_kind::owner_data || k == msg_kind::write_through ||
         k == msg_kind::data;
}
bool may_have_data(msg_kind k) { return needs_data(k) || k == msg_kind::recall_ack; }
bool may_have_acks(msg_kind k) {
  return k == msg_kind::data || k == msg_kind::fwd_get_m || k == msg_kind::ack_count;
}

}  // namespace

std::string_view to_string(msg_kind k) {
  switch (k) {
    case msg_kind::get_s: return "get_s";
    case msg_kind::get_m: return "get_m";
    case msg_kind::put_s: return "put_s";
    case msg_kind::put_e: return "put_e";
    case msg_kind::put_m: return "put_m";
    case msg_kind::put_o: return "put_o";
    case msg_kind::owner_data: return "owner_data";
    case msg_kind::unblock: return "unblock";
    case msg_kind::write_through: return "write_through";
    case msg_kind::recall_ack: return "recall_ack";
    case msg_kind::del: return "del";
    case msg_kind::inval: return "inval";
    case msg_kind::flushed: return "flushed";
    case msg_kind::data: return "data";
    case msg_kind::fwd_get_s: return "fwd_get_s";
    case msg_kind::fwd_get_m: return "fwd_get_m";
    case msg_kind::inv: return "inv";
    case msg_kind::inv_ack: return "inv_ack";
    case msg_kind::ack_count: return "ack_count";
    case msg_kind::put_ack: return "put_ack";
    case msg_kind::wt_ack: return "wt_ack";
    case msg_kind::recall: return "recall";
    case msg_kind::done: return "done";
    case msg_kind::nack: return "nack";
  }
  return "?";
}

bool for_directory(msg_kind k) { return static_cast<uint8_t>(k) < 32; }

bool operator==(const message& a, const message& b) {
  return a.kind == b.kind && a.epoch == b.epoch && a.key == b.key && a.txn == b.txn && a.node == b.node &&
         a.has_data == b.has_data && a.val == b.val && a.dirty == b.dirty && a.exclusive == b.exclusive &&
         a.revert == b.revert && a.from_directory == b.from_directory && a.acks == b.acks;
}

std::string describe(const message& m) {
  std::string out{to_string(m.kind)};
  if (!m.key.empty()) out += " " + m.key;
  if (m.txn != 0) out += " txn=" + std::to_string(m.txn);
  if (!m.node.empty()) out += " node=" + m.node;
  if (m.has_data) out += " val=" + (m.val ? *m.val : std::string("<absent>"));
  if (!m.acks.empty() || may_have_acks(m.kind)) {
    out += " acks=";
    if (m.acks.empty()) out += "-";
    for (size_t i = 0; i < m.acks.size(); ++i) out += (i ? "," : "") + m.acks[i];
  }
  if (m.dirty) out += " dirty";
  if (m.exclusive) out += " exclusive";
  if (m.revert) out += " revert";
  if (m.kind == msg_kind::flushed) out += m.from_directory ? " from=directory" : " from=cache";
  out += " e" + std::to_string(m.epoch);
  return out;
}

std::string encode(const message& m) {
  std::string out;
  codec::put_u8(out, format_version);
  codec::put_u8(out, static_cast<uint8_t>(m.kind));
  codec::put_u64(out, m.epoch);
  codec::put_string(out, m.key);
  codec::put_u64(out, m.txn);
  codec::put_string(out, m.node);
  uint8_t flags = 0;
  if (m.dirty) flags |= f_dirty;
  if (m.exclusive) flags |= f_exclusive;
  if (m.revert) flags |= f_revert;
  if (m.has_data) flags |= f_has_data;
  if (m.val) flags |= f_has_value;
  if (m.from_directory) flags |= f_from_directory;
  codec::put_u8(out, flags);
  if (m.val) codec::put_string(out, *m.val);
  codec::put_u64(out, m.acks.size());
  for (const auto& a : m.acks) codec::put_string(out, a);
  return out;
}

bool decode(std::string_view bytes, message& out) {
  codec::reader r{bytes};
  uint8_t version = 0, kind = 0, flags = 0;
  if (!r.get_u8(version) || version != format_version) return false;
  if (!r.get_u8(kind) || !known_kind(kind)) return false;
  out = message{};
  out.kind = static_cast<msg_kind>(kind);
  if (!r.get_u64(out.epoch) || !r.get_string(out.key) || !r.get_u64(out.txn) || !r.get_string(out.node) ||
      !r.get_u8(flags))
    return false;
  if ((flags & ~known_flags) != 0) return false;
  if (out.kind == msg_kind::flushed ? !out.key.empty() : (out.key.empty() || out.key.size() > max_key_bytes))
    return false;
  if (needs_node(out.kind) ? (out.node.empty() || out.node.size() > max_node_id_bytes) : !out.node.empty())
    return false;
  out.dirty = flags & f_dirty;
  out.exclusive = flags & f_exclusive;
  out.revert = flags & f_revert;
  out.has_data = flags & f_has_data;
  out.from_directory = flags & f_from_directory;
  const bool has_value = flags & f_has_value;
  if (out.has_data ? !may_have_data(out.kind) : (needs_data(out.kind) || has_value || out.dirty)) return false;
  if ((out.exclusive || out.revert) && out.kind != msg_kind::data) return false;
  if (out.from_directory && out.kind != msg_kind::flushed) return false;
  if (has_value) {
    std::string v;
    if (!r.get_string(v) || v.size() > max_value_bytes) return false;
    out.val = std::move(v);
  }
  uint64_t n = 0;
  if (!r.get_u64(n) || n > max_members || (n > 0 && !may_have_acks(out.kind))) return false;
  out.acks.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string a;
    if (!r.get_string(a) || a.empty() || a.size() > max_node_id_bytes) return false;
    out.acks.push_back(std::move(a));
  }
  return r.at_end();
}

void effects::append(effects&& other) {
  for (auto& m : other.messages) messages.push_back(std::move(m));
  for (auto& m : other.memory) memory.push_back(std::move(m));
  for (auto& c : other.completions) completions.push_back(std::move(c));
}

}  // namespace dsync::cache
