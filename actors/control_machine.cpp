#include "actors/control_machine.hpp"

#include "protocols/codec.hpp"

namespace dsync {

namespace {
constexpr char kv_tag = 'K';
constexpr char lock_tag = 'L';
constexpr char cache_tag = 'C';
constexpr char address_tag = 'A';

void put_address(std::string& out, const std::string& node_id, const std::string& host, uint16_t port) {
  codec::put_string(out, node_id);
  codec::put_string(out, host);
  codec::put_u64(out, port);
}

bool get_address(codec::reader& r, std::string& node_id, std::string& host, uint16_t& port) {
  uint64_t p = 0;
  if (!r.get_string(node_id) || !r.get_string(host) || !r.get_u64(p)) return false;
  if (node_id.empty() || node_id.size() > 64 || host.size() > 255 || p > 65535 || (p != 0 && host.empty()))
    return false;
  port = static_cast<uint16_t>(p);
  return true;
}

std::string encode_members(uint64_t epoch, const std::vector<std::string>& members) {
  std::string out;
  codec::put_u64(out, epoch);
  codec::put_u64(out, members.size());
  for (auto& m : members) codec::put_string(out, m);
  return out;
}

bool decode_members(codec::reader& r, uint64_t& epoch, std::vector<std::string>& members) {
  uint64_t n = 0;
  members.clear();
  if (!r.get_u64(epoch) || !r.get_u64(n) || n > 1024) return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::string m;
    if (!r.get_string(m) || m.empty()) return false;
    members.push_back(std::move(m));
  }
  return true;
}
// Answers to malformed commands: a replica must not crash on them, and all replicas
// answer alike because the bytes are the same everywhere.
const std::string malformed = "malformed";
}  // namespace

namespace control {

std::string kv_command(const kv::command& c) { return kv_tag + kv::encode(c); }

std::string kv_query(const std::string& key) { return kv_tag + key; }

bool decode_kv_answer(const std::string& bytes, std::optional<kv::value_record>& out) {
  codec::reader r{bytes};
  uint8_t found = 0;
  if (!r.get_u8(found)) return false;
  if (!found) {
    out.reset();
    return r.at_end();
  }
  kv::value_record v;
  if (!r.get_string(v.value) || !r.get_u64(v.revision) || !r.at_end()) return false;
  out = std::move(v);
  return true;
}

std::string lock_command(const locks::command& c) { return lock_tag + locks::encode(c); }

std::string lock_query(const std::string& lock) { return lock_tag + lock; }

std::string member_address_command(const std::string& node_id, const std::string& host, uint16_t port) {
  std::string out(1, address_tag);
  put_address(out, node_id, host, port);
  return out;
}

std::string cache_members_command(const std::vector<std::string>& members) {
  return cache_tag + encode_members(0, members);
}

namespace {

std::string encode_status(const locks::lock_status& s) {
  std::string out;
  codec::put_string(out, s.lock);
  codec::put_u64(out, s.holders.size());
  for (auto& h : s.holders) {
    codec::put_string(out, h.client);
    codec::put_u8(out, static_cast<uint8_t>(h.held));
    codec::put_u64(out, h.token);
    codec::put_u64(out, h.ttl_ms);
    codec::put_u64(out, h.expires_at_ms);
  }
  codec::put_u64(out, s.waiters.size());
  for (auto& w : s.waiters) {
    codec::put_string(out, w.client);
    codec::put_u8(out, static_cast<uint8_t>(w.wanted));
    codec::put_u8(out, w.upgrade ? 1 : 0);
    codec::put_u64(out, w.deadline_ms);
  }
  return out;
}

bool get_mode(codec::reader& r, locks::mode& m) {
  uint8_t x = 0;
  if (!r.get_u8(x) || (x != static_cast<uint8_t>(locks::mode::shared) && x != static_cast<uint8_t>(locks::mode::exclusive)))
    return false;
  m = static_cast<locks::mode>(x);
  return true;
}

}  // namespace

bool decode_lock_answer(const std::string& bytes, locks::lock_status& out) {
  codec::reader r{bytes};
  uint64_t n = 0;
  out = {};
  if (!r.get_string(out.lock) || !r.get_u64(n) || n > bytes.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    locks::holder_status h;
    if (!r.get_string(h.client) || !get_mode(r, h.held) || !r.get_u64(h.token) || !r.get_u64(h.ttl_ms)
        || !r.get_u64(h.expires_at_ms))
      return false;
    out.holders.push_back(std::move(h));
  }
  if (!r.get_u64(n) || n > bytes.size()) return false;
  for (uint64_t i = 0; i < n; ++i) {
    locks::waiter_status w;
    uint8_t upgrade = 0;
    if (!r.get_string(w.client) || !get_mode(r, w.wanted) || !r.get_u8(upgrade) || !r.get_u64(w.deadline_ms))
      return false;
    w.upgrade = upgrade != 0;
    out.waiters.push_back(std::move(w));
  }
  return r.at_end();
}

}  // namespace control

std::string control_machine::apply(uint64_t index, const std::string& command) {
  if (command.empty()) return malformed;
  if (command[0] == kv_tag) {
    kv::command c;
    if (!kv::decode(command.substr(1), c)) return malformed;
    return kv::encode(kv_.apply(index, c));
  }
  if (command[0] == lock_tag) {
    locks::command c;
    if (!locks::decode(command.substr(1), c)) return malformed;
    std::vector<locks::event> events;
    auto answer = locks::encode(locks_.apply(index, c, events));
    report(std::move(events));
    return answer;
  }
  if (command[0] == cache_tag) {
    codec::reader r{std::string_view{command}.substr(1)};
    uint64_t unused = 0;
    std::vector<std::string> members;
    if (!decode_members(r, unused, members) || !r.at_end() || members.empty()) return malformed;
    cache_epoch_ = index;
    cache_members_ = std::move(members);
    report_cache_members();
    return "ok";
  }
  if (command[0] == address_tag) {
    codec::reader r{std::string_view{command}.substr(1)};
    std::string node_id, host;
    uint16_t port = 0;
    if (!get_address(r, node_id, host, port) || !r.at_end()) return malformed;
    if (port == 0) {
      addresses_.erase(node_id);
    } else {
      addresses_[node_id] = {host, port};
      if (member_observer_.address) member_observer_.address(node_id, host, port);
    }
    return "ok";
  }
  return malformed;
}

std::string control_machine::query(const std::string& request) const {
  std::string out;
  if (request.empty()) return out;
  if (request[0] == lock_tag) return control::encode_status(locks_.status(request.substr(1)));
  if (request[0] != kv_tag) return out;
  auto v = kv_.get(request.substr(1));
  codec::put_u8(out, v ? 1 : 0);
  if (v) {
    codec::put_string(out, v->value);
    codec::put_u64(out, v->revision);
  }
  return out;
}

std::string control_machine::snapshot() const {
  std::string out;
  codec::put_string(out, kv_.snapshot());
  codec::put_string(out, locks_.snapshot());
  codec::put_string(out, encode_members(cache_epoch_, cache_members_));
  std::string addresses;
  codec::put_u64(addresses, addresses_.size());
  for (auto& [id, a] : addresses_) put_address(addresses, id, a.first, a.second);
  codec::put_string(out, addresses);
  return out;
}

bool control_machine::restore(const std::string& data) {
  codec::reader r{data};
  std::string kv_bytes;
  std::string lock_bytes;
  if (!r.get_string(kv_bytes)) return false;
  // Snapshots written before the lock table (or the cache membership, or the members'
  // addresses) existed end early.
  bool has_locks = !r.at_end();
  if (has_locks && !r.get_string(lock_bytes)) return false;
  uint64_t epoch = 0;
  std::vector<std::string> members;
  if (!r.at_end()) {
    std::string cache_bytes;
    if (!r.get_string(cache_bytes)) return false;
    codec::reader c{cache_bytes};
    if (!decode_members(c, epoch, members) || !c.at_end()) return false;
  }
  std::map<std::string, std::pair<std::string, uint16_t>> addresses;
  if (!r.at_end()) {
    std::string address_bytes;
    uint64_t n = 0;
    if (!r.get_string(address_bytes)) return false;
    codec::reader a{address_bytes};
    if (!a.get_u64(n) || n > 4096) return false;
    for (uint64_t i = 0; i < n; ++i) {
      std::string node_id, host;
      uint16_t port = 0;
      if (!get_address(a, node_id, host, port) || port == 0) return false;
      addresses[node_id] = {host, port};
    }
    if (!a.at_end()) return false;
  }
  if (!r.at_end()) return false;
  kv::store kv;
  locks::table table;
  if (!kv.restore(kv_bytes) || (has_locks && !table.restore(lock_bytes))) return false;
  kv_ = std::move(kv);
  locks_ = std::move(table);
  cache_epoch_ = epoch;
  cache_members_ = std::move(members);
  addresses_ = std::move(addresses);
  report({});
  report_cache_members();
  report_addresses();
  return true;
}

void control_machine::on_leadership(bool leading) {
  if (observer_.leadership) observer_.leadership(leading);
  if (cache_observer_.leadership) cache_observer_.leadership(leading);
}

void control_machine::report_cache_members() {
  if (cache_observer_.members && cache_epoch_ > 0) cache_observer_.members(cache_epoch_, cache_members_);
}

void control_machine::report_addresses() {
  if (!member_observer_.address) return;
  for (auto& [id, a] : addresses_) member_observer_.address(id, a.first, a.second);
}

void control_machine::report(std::vector<locks::event> events) {
  if (!observer_.applied) return;
  observer_.applied(lock_apply_report{std::move(events), locks_.next_deadline(), locks_.holder_count(),
                                      locks_.waiter_count()});
}

}  // namespace dsync
