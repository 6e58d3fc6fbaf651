#include "protocols/kv/kv_store.hpp"

#include "protocols/codec.hpp"

namespace dsync::kv {

std::string encode(const command& c) {
  std::string out;
  codec::put_u8(out, static_cast<uint8_t>(c.kind));
  codec::put_string(out, c.key);
  if (c.kind == op::put) codec::put_string(out, c.value);
  return out;
}

bool decode(const std::string& bytes, command& out) {
  codec::reader r{bytes};
  uint8_t kind = 0;
  if (!r.get_u8(kind) || !r.get_string(out.key) || out.key.empty() || out.key.size() > max_key_bytes)
    return false;
  out.value.clear();
  if (kind == static_cast<uint8_t>(op::put)) {
    if (!r.get_string(out.value) || out.value.size() > max_value_bytes) return false;
  } else if (kind != static_cast<uint8_t>(op::erase)) {
    return false;
  }
  out.kind = static_cast<op>(kind);
  return r.at_end();
}

std::string encode(const outcome& o) {
  std::string out;
  codec::put_u8(out, o.existed ? 1 : 0);
  codec::put_u64(out, o.revision);
  return out;
}

bool decode(const std::string& bytes, outcome& out) {
  codec::reader r{bytes};
  uint8_t existed = 0;
  if (!r.get_u8(existed) || !r.get_u64(out.revision)) return false;
  out.existed = existed != 0;
  return r.at_end();
}

outcome store::apply(uint64_t index, const command& c) {
  auto i = data_.find(c.key);
  outcome o{i != data_.end(), index};
  if (c.kind == op::put) {
    if (i == data_.end()) data_.emplace(c.key, value_record{c.value, index});
    else i->second = value_record{c.value, index};
  } else if (i != data_.end()) {
    data_.erase(i);
  }
  return o;
}

std::optional<value_record> store::get(const std::string& key) const {
  auto i = data_.find(key);
  if (i == data_.end()) return std::nullopt;
  return i->second;
}

std::string store::snapshot() const {
  std::string out;
  codec::put_u64(out, data_.size());
  for (auto& [k, v] : data_) {
    codec::put_string(out, k);
    codec::put_string(out, v.value);
    codec::put_u64(out, v.revision);
  }
  return out;
}

bool store::restore(const std::string& bytes) {
  codec::reader r{bytes};
  uint64_t n = 0;
  if (!r.get_u64(n)) return false;
  std::map<std::string, value_record> data;
  for (uint64_t i = 0; i < n; ++i) {
    std::string k;
    value_record v;
    if (!r.get_string(k) || !r.get_string(v.value) || !r.get_u64(v.revision)) return false;
    data.emplace(std::move(k), std::move(v));
  }
  if (!r.at_end()) return false;
  data_ = std::move(data);
  return true;
}

}  // namespace dsync::kv
