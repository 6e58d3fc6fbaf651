#include "actors/control_machine.hpp"

#include "protocols/codec.hpp"

namespace dsync {

namespace {
constexpr char kv_tag = 'K';
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

}  // namespace control

std::string control_machine::apply(uint64_t index, const std::string& command) {
  if (command.empty() || command[0] != kv_tag) return malformed;
  kv::command c;
  if (!kv::decode(command.substr(1), c)) return malformed;
  return kv::encode(kv_.apply(index, c));
}

std::string control_machine::query(const std::string& request) const {
  std::string out;
  if (request.empty() || request[0] != kv_tag) return out;
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
  return out;
}

bool control_machine::restore(const std::string& data) {
  codec::reader r{data};
  std::string kv_bytes;
  if (!r.get_string(kv_bytes) || !r.at_end()) return false;
  return kv_.restore(kv_bytes);
}

}  // namespace dsync
