#include "protocols/wal/crc32c.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

using dsync::wal::crc32c;
using dsync::wal::crc32c_extend;

namespace {

// The definition, one bit at a time: reflected polynomial 0x82F63B78.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int i = 0; i < 8; ++i)
      crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
  }
  return ~crc;
}

std::string bytes_from(int first, int last, int step) {
  std::string s;
  for (int b = first; b != last + step; b += step)
    s.push_back(static_cast<char>(b));
  return s;
}

} // namespace

TEST_CASE("crc32c: check values of the catalogue and RFC 3720 B.4") {
  CHECK(crc32c("") == 0x00000000u);
  CHECK(crc32c("a") == 0xC1D04330u);
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  CHECK(crc32c(bytes_from(0, 31, 1)) == 0x46DD794Eu);
  CHECK(crc32c(bytes_from(31, 0, -1)) == 0x113FDB5Cu);
  CHECK(crc32c("The quick brown fox jumps over the lazy dog") == 0x22620404u);
}

TEST_CASE("crc32c: the table matches the bitwise definition at every length and alignment") {
  std::mt19937_64 rng{7};
  std::string buf(300, '\0');
  for (auto& c : buf)
    c = static_cast<char>(rng());
  for (size_t start = 0; start < 9; ++start)
    for (size_t len = 0; start + len <= buf.size(); len += 1 + len / 7) {
      auto s = buf.substr(start, len);
      REQUIRE(crc32c(s) == crc32c_bitwise(s));
    }
}

TEST_CASE("crc32c: extend continues a checksum") {
  std::string a = "write-ahead ";
  std::string b = "log";
  CHECK(crc32c_extend(crc32c(a), b) == crc32c(a + b));
  CHECK(crc32c_extend(0, b) == crc32c(b));
  CHECK(crc32c_extend(crc32c(a), "") == crc32c(a));
}
