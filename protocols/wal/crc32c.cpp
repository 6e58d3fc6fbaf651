#include "protocols/wal/crc32c.hpp"

#include <array>

namespace dsync::wal {

namespace {

constexpr uint32_t reflected_polynomial = 0x82F63B78u;

// tables[0] is the classic byte-at-a-time table; tables[k][b] is the CRC of
// byte b followed by k zero bytes, which lets the loop below fold 8 input
// bytes per step (slicing-by-8, Kounavis & Berry 2008).
using crc_tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr crc_tables make_tables() {
  crc_tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc >> 1) ^ ((crc & 1u) ? reflected_polynomial : 0u);
    t[0][b] = crc;
  }
  for (uint32_t b = 0; b < 256; ++b)
    for (size_t k = 1; k < 8; ++k)
      t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xffu];
  return t;
}

constexpr crc_tables tables = make_tables();

} // namespace

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  auto p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (n >= 8) {
    // Bytes are combined explicitly (not loaded as a word), so the result is
    // the same on any endianness.
    uint32_t lo = crc ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16
                         | uint32_t{p[3]} << 24);
    crc = tables[7][lo & 0xffu] ^ tables[6][(lo >> 8) & 0xffu] ^ tables[5][(lo >> 16) & 0xffu]
          ^ tables[4][lo >> 24] ^ tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]]
          ^ tables[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n-- > 0)
    crc = (crc >> 8) ^ tables[0][(crc ^ *p++) & 0xffu];
  return ~crc;
}

uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

} // namespace dsync::wal
