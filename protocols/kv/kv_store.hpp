// A replicated key-value map, the control group's small store for cluster-wide data
// (like etcd's or Consul's KV). Pure: commands arrive through Raft in log order, and
// every replica that applies the same commands holds the same map.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace dsync::kv {

constexpr size_t max_key_bytes = 512;
constexpr size_t max_value_bytes = 512 * 1024;

struct value_record {
  std::string value;
  uint64_t revision = 0;  // log index of the write that set it
};

enum class op : uint8_t { put = 1, erase = 2 };

struct command {
  op kind = op::put;
  std::string key;
  std::string value;
};

std::string encode(const command& c);
// False on malformed bytes or a key/value over the limits.
bool decode(const std::string& bytes, command& out);

// The answer to one applied command, as the proposer sees it.
struct outcome {
  bool existed = false;       // the key had a value before
  uint64_t revision = 0;      // index of this write
};
std::string encode(const outcome& o);
bool decode(const std::string& bytes, outcome& out);

class store {
 public:
  // Applies the command committed at log index `index`.
  outcome apply(uint64_t index, const command& c);

  std::optional<value_record> get(const std::string& key) const;
  size_t size() const { return data_.size(); }

  std::string snapshot() const;
  // False (and the store unchanged) on malformed bytes.
  bool restore(const std::string& bytes);

 private:
  std::map<std::string, value_record> data_;
};

}  // namespace dsync::kv
