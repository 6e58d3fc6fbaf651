#include "protocols/cache/types.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "protocols/ring/hash_ring.hpp"

namespace dsync::cache {

namespace {

// Lower case, '_' read as '-'.
std::string normalize(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

constexpr std::string_view state_names[cache_state_count] = {
    "I", "S", "E", "O", "M", "IS^D", "IM^AD", "IM^A", "SM^AD", "SM^A", "OM^AC", "OM^A",
    "MI^A", "EI^A", "OI^A", "SI^A", "II^A", "MW^A",
};

}  // namespace

std::string_view to_string(protocol p) {
  switch (p) {
    case protocol::mesi: return "MESI";
    case protocol::mosi: return "MOSI";
    case protocol::moesi: return "MOESI";
  }
  return "?";
}

std::string_view to_string(write_policy p) {
  return p == write_policy::write_back ? "write-back" : "write-through";
}

std::string_view to_string(replacement_kind r) { return r == replacement_kind::lru ? "lru" : "lfu"; }

bool parse(std::string_view text, protocol& out) {
  auto t = normalize(text);
  if (t == "mesi") out = protocol::mesi;
  else if (t == "mosi") out = protocol::mosi;
  else if (t == "moesi") out = protocol::moesi;
  else return false;
  return true;
}

bool parse(std::string_view text, write_policy& out) {
  auto t = normalize(text);
  if (t == "write-back") out = write_policy::write_back;
  else if (t == "write-through") out = write_policy::write_through;
  else return false;
  return true;
}

bool parse(std::string_view text, replacement_kind& out) {
  auto t = normalize(text);
  if (t == "lru") out = replacement_kind::lru;
  else if (t == "lfu") out = replacement_kind::lfu;
  else return false;
  return true;
}

std::string_view to_string(cache_state s) {
  auto i = static_cast<size_t>(s);
  return i < cache_state_count ? state_names[i] : "?";
}

bool parse(std::string_view text, cache_state& out) {
  for (size_t i = 0; i < cache_state_count; ++i) {
    if (state_names[i] == text) {
      out = static_cast<cache_state>(i);
      return true;
    }
  }
  return false;
}

membership membership::from_ring(uint64_t epoch, std::shared_ptr<const ring::hash_ring> r) {
  membership m;
  m.epoch = epoch;
  m.members = r->members();
  m.home = [r](std::string_view key) { return r->owner(key); };
  return m;
}

std::string membership::validate() const {
  if (members.empty()) return "membership has no members";
  if (members.size() > max_members) return "membership has more than " + std::to_string(max_members) + " members";
  if (!home) return "membership has no home function";
  std::set<std::string> seen;
  for (const auto& m : members) {
    if (m.empty() || m.size() > max_node_id_bytes) return "membership has an empty or oversized node id";
    if (!seen.insert(m).second) return "membership lists " + m + " twice";
  }
  return {};
}

std::string_view to_string(op_kind k) {
  switch (k) {
    case op_kind::get: return "get";
    case op_kind::put: return "put";
    case op_kind::del: return "del";
    case op_kind::invalidate: return "invalidate";
  }
  return "?";
}

std::string_view to_string(status s) {
  switch (s) {
    case status::ok: return "ok";
    case status::not_found: return "not_found";
    case status::error: return "error";
  }
  return "?";
}

std::string_view to_string(memory_kind k) {
  switch (k) {
    case memory_kind::read: return "read";
    case memory_kind::write: return "write";
    case memory_kind::erase: return "erase";
  }
  return "?";
}

}  // namespace dsync::cache
