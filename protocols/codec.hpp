// Little-endian binary encoding for commands and snapshots of the state machines.
// A reader never reads past its buffer: every get_* reports failure instead, so a
// malformed command is refused rather than crashing a replica.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsync::codec {

inline void put_u8(std::string& out, uint8_t x) { out.push_back(static_cast<char>(x)); }

inline void put_u64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}

inline void put_string(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s.data(), s.size());
}

class reader {
 public:
  explicit reader(std::string_view data) : data_(data) {}

  bool get_u8(uint8_t& x) {
    if (data_.size() - pos_ < 1) return false;
    x = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool get_u64(uint64_t& x) {
    if (data_.size() - pos_ < 8) return false;
    x = 0;
    for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool get_string(std::string& s) {
    uint64_t n = 0;
    if (!get_u64(n) || n > data_.size() - pos_) return false;
    s.assign(data_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool at_end() const { return pos_ == data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace dsync::codec
