// The on-disk format of the write-ahead log (WAL) and of snapshot files, as
// pure functions over byte buffers: encode, decode, and the recovery scan of
// one segment. No files here; actors/storage/wal_storage.hpp does the I/O.
//
// All integers are little-endian and fixed-width. A string is a u32 byte
// count followed by the bytes. A configuration is a u32 count of voters, the
// voter strings, a u32 count of learners, the learner strings.
//
// ---- segment file:  wal-<seq:20 digits>-<first_index:20 digits>.log ----------
//
//   offset size  field
//        0    8  magic "DSYNCWAL"
//        8    4  format version (format_version)
//       12    4  flags, 0
//       16    8  seq: 1 for the first segment, +1 for each later one
//       24    8  first_index: last_index() + 1 of the log when the segment was
//                created (entries below it are in older segments or the snapshot)
//       32    4  CRC-32C of bytes [0, 32)
//       36    4  zero
//       40       records, back to back, until the end of the file
//
// Names sort by seq (zero-padded decimal), i.e. in creation order. They do
// not sort by first_index in general: a follower whose suffix is overwritten
// may write entries below the current segment's first_index, and a later
// segment may then start at a lower index than an earlier one.
//
// ---- record frame (frame_header_bytes + payload) -----------------------------
//
//   offset size  field
//        0    4  payload length in bytes (<= max_record_payload_bytes)
//        4    1  record type (record_type; 0 is never valid, so zeros are not a record)
//        5    3  zero
//        8    4  CRC-32C over bytes [0, 8) of the frame followed by the payload
//       12    n  payload
//
// The checksum covers length and type as well as the payload, so a flipped
// bit in any of them is detected.
//
// ---- payloads ----------------------------------------------------------------
//
//   checkpoint (1): hard state (term u64, commit u64, vote string), then the
//       current snapshot's index u64, term u64, configuration. The first record
//       of every segment: a segment is self-describing once older segments
//       are deleted.
//   hard_state (2): term u64, commit u64, vote string.
//   entries (3):   first index u64, count u32, then per entry: term u64,
//       type u8, data string. Indices are implied (first, first+1, ...).
//       Replaying it drops any entry at `first` or above before appending, so
//       an overwrite of a follower's suffix and the new entries are one
//       atomic record (Raft's rule, Figure 2 "Receiver implementation" 3-4).
//   snapshot (4):  index u64, term u64, kind u8 (1 installed: a snapshot
//       received from the leader replaced the whole log; 2 compacted: a local
//       snapshot dropped the entries up to index and kept the rest). Written
//       after the snapshot file is durable.
//
// ---- snapshot file:  snap-<index:20 digits>.snap -----------------------------
//
//   offset size  field
//        0    8  magic "DSYNCSNP"
//        8    4  format version
//       12    4  flags, 0
//       16    8  index
//       24    8  term
//       32       configuration, then data length u64, then data
//      end-4   4  CRC-32C of every byte before it
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/raft/types.hpp"

namespace dsync::wal {

inline constexpr uint32_t format_version = 1;
inline constexpr size_t segment_header_bytes = 40;
inline constexpr size_t frame_header_bytes = 12;
// Bounds a length field read from disk; an entries record larger than this
// cannot be written (wal_storage splits batches into far smaller records).
inline constexpr uint32_t max_record_payload_bytes = 1u << 30;
inline constexpr std::string_view segment_magic{"DSYNCWAL", 8};
inline constexpr std::string_view snapshot_magic{"DSYNCSNP", 8};

// ---- segment header ----------------------------------------------------------

struct segment_header {
  uint64_t seq = 0;
  uint64_t first_index = 0;
};

std::string encode_segment_header(const segment_header& h);

// Decodes the first segment_header_bytes of `bytes`. On failure returns false
// and says why in `error` (short file, bad magic, unsupported version, bad
// checksum).
bool decode_segment_header(std::string_view bytes, segment_header& out, std::string& error);

// ---- records -----------------------------------------------------------------

enum class record_type : uint8_t {
  checkpoint = 1,
  hard_state = 2,
  entries = 3,
  snapshot = 4,
};
const char* to_string(record_type x);

enum class snapshot_kind : uint8_t {
  installed = 1, // received from the leader: the whole log was replaced
  compacted = 2, // taken locally: entries up to the index were dropped
};
const char* to_string(snapshot_kind x);

// One decoded record. Which fields are meaningful depends on `type`:
//   checkpoint: hard, snapshot (index, term, config)
//   hard_state: hard
//   entries:    entries (non-empty, contiguous indices, first index >= 1)
//   snapshot:   snapshot.index, snapshot.term, kind
struct record {
  record_type type = record_type::hard_state;
  raft::hard_state hard;
  raft::snapshot_metadata snapshot;
  snapshot_kind kind = snapshot_kind::compacted;
  std::vector<raft::entry> entries;
};

bool operator==(const record& a, const record& b);
inline bool operator!=(const record& a, const record& b) { return !(a == b); }

// Appends one framed record to `out`. The append_* helpers build the payload
// directly (no intermediate `record`). Preconditions, checked with
// std::invalid_argument: entries non-empty, contiguous, first index >= 1,
// payload <= max_record_payload_bytes.
void append_record(std::string& out, const record& r);
void append_checkpoint_record(std::string& out, const raft::hard_state& hard,
                              const raft::snapshot_metadata& snapshot);
void append_hard_state_record(std::string& out, const raft::hard_state& hard);
void append_snapshot_record(std::string& out, uint64_t index, uint64_t term, snapshot_kind kind);
// Entries [first, last) of a contiguous range.
void append_entries_record(std::string& out, const raft::entry* first, const raft::entry* last);

// Bytes an entry adds to an entries record's payload.
inline uint64_t entry_record_bytes(const raft::entry& e) { return 8 + 1 + 4 + e.data.size(); }
// Bytes of an entries record (frame included) before its entries.
inline constexpr uint64_t entries_record_overhead_bytes = frame_header_bytes + 8 + 4;

// Outcome of reading the frame at one offset.
enum class frame_status : uint8_t {
  ok = 0,
  incomplete = 1,   // fewer bytes left than the frame header or the stated length
  bad_length = 2,   // length above max_record_payload_bytes
  bad_checksum = 3, // CRC mismatch
  bad_type = 4,     // checksum fine, but unknown type or non-zero reserved bytes
  bad_payload = 5,  // checksum fine, but the payload does not decode
};
const char* to_string(frame_status x);

// Reads the record whose frame starts at `offset`. On ok, `out` holds it and
// `size` the frame's total size. Otherwise `detail` describes the problem.
frame_status read_record(std::string_view bytes, size_t offset, record& out, size_t& size,
                         std::string& detail);

// True if a frame with a valid checksum and a known type starts at `offset`.
// Cheap rejections first; does not decode the payload.
bool is_valid_frame_at(std::string_view bytes, size_t offset);

// ---- recovery scan -----------------------------------------------------------

enum class scan_end : uint8_t {
  clean = 0,      // every byte after the header belongs to a valid record
  torn_tail = 1,  // the last record is partial or fails its checksum, and no
                  // valid record follows it: cut the file at valid_bytes
  corrupt = 2,    // a bad record with a valid record after it, or a record
                  // whose checksum is right but whose content is not: refuse
  bad_header = 3, // the segment header is missing or invalid: refuse
};
const char* to_string(scan_end x);

struct located_record {
  uint64_t offset = 0; // where the record's frame starts in the segment
  record rec;
};

struct scan_result {
  segment_header header;
  scan_end end = scan_end::clean;
  std::vector<located_record> records; // the valid records before the problem, in order
  uint64_t valid_bytes = 0;   // header + valid records: where a torn tail is cut
  uint64_t bad_offset = 0;    // torn_tail/corrupt/bad_header: where the problem starts
  uint64_t resume_offset = 0; // corrupt (bad frame): where a valid frame was found after it
  std::string problem;        // what is wrong, for error messages; empty if clean
};

// Scans one segment's bytes. Classification of the first bad frame at offset o:
//   * its checksum is valid but its type or payload is not -> corrupt (the
//     bytes were written that way: a bug or a newer format, never a torn write);
//   * otherwise (partial, bad length, checksum mismatch) a valid frame is
//     searched at every later offset: found -> corrupt (data after the bad
//     record would be lost); not found -> torn_tail (a write interrupted by a
//     crash, possibly followed by zeros or garbage).
// A payload that itself contains a valid frame (e.g. an entry whose data is a
// WAL record) can make a torn tail look corrupt: the scan then refuses, it
// never drops data. The search costs O(bytes after o) cheap checks.
scan_result scan_segment(std::string_view bytes);

// ---- snapshot files ----------------------------------------------------------

// A snapshot file is head + data + trailer; kept apart so that a large
// snapshot's data is written without being copied.
struct snapshot_file_parts {
  std::string head;    // magic .. data length
  std::string trailer; // CRC-32C of head + data
};
snapshot_file_parts encode_snapshot_file_parts(const raft::snapshot& s);
std::string encode_snapshot_file(const raft::snapshot& s);

// Decodes and verifies a whole snapshot file. On failure returns false and
// says what is wrong (and at which offset) in `error`.
bool decode_snapshot_file(std::string_view bytes, raft::snapshot& out, std::string& error);

// ---- file names ----------------------------------------------------------------

std::string segment_file_name(uint64_t seq, uint64_t first_index);
bool parse_segment_file_name(std::string_view name, uint64_t& seq, uint64_t& first_index);
std::string snapshot_file_name(uint64_t index);
bool parse_snapshot_file_name(std::string_view name, uint64_t& index);
// Suffix of files being written (segments being created, snapshots being
// saved); a file with it is never part of the durable state.
inline constexpr std::string_view temp_suffix{".tmp", 4};

} // namespace dsync::wal
