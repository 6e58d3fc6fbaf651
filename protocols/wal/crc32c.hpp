// CRC-32C (Castagnoli), the checksum of every WAL record, segment header and
// snapshot file. Pure, table-driven (slicing-by-8), no CPU-specific code.
//
// Parameters (the "CRC-32C" / "CRC-32/ISCSI" of the CRC catalogue):
//   polynomial 0x1EDC6F41 (normal form), 0x82F63B78 (reflected form, used
//   below); initial value 0xFFFFFFFF; input and output reflected; final XOR
//   0xFFFFFFFF. The same function as iSCSI (RFC 3720 §B.4), ext4, LevelDB and
//   the SSE4.2 `crc32` instruction, so any of those can check our files.
// Check values (pinned in tests/unit/wal/crc32c_test.cpp):
//   ""          -> 0x00000000
//   "123456789" -> 0xE3069283
//   32 x 0x00   -> 0x8A9136AA   (RFC 3720 §B.4)
//   32 x 0xFF   -> 0x62A8AB43   (RFC 3720 §B.4)
//   0x00..0x1F  -> 0x46DD794E   (RFC 3720 §B.4)
//   0x1F..0x00  -> 0x113FDB5C   (RFC 3720 §B.4)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dsync::wal {

// CRC-32C of `n` bytes at `data`.
uint32_t crc32c(const void* data, size_t n);
inline uint32_t crc32c(std::string_view bytes) { return crc32c(bytes.data(), bytes.size()); }

// Continues a checksum: crc32c_extend(crc32c(a), b) == crc32c(a + b).
// crc32c_extend(0, b) == crc32c(b).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c_extend(uint32_t crc, std::string_view bytes) {
  return crc32c_extend(crc, bytes.data(), bytes.size());
}

} // namespace dsync::wal
