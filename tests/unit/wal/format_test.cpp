#include "protocols/wal/format.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocols/wal/crc32c.hpp"

using namespace dsync;
using namespace dsync::wal;

namespace {

std::string to_hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

raft::entry make_entry(uint64_t index, uint64_t term, std::string data,
                       raft::entry_type type = raft::entry_type::normal) {
  raft::entry e;
  e.index = index;
  e.term = term;
  e.type = type;
  e.data = std::move(data);
  return e;
}

raft::configuration config_abc() {
  raft::configuration c;
  c.voters = {"node-a", "node-b", "node-c"};
  c.learners = {"node-d"};
  return c;
}

record hard_state_rec(uint64_t term, std::string vote, uint64_t commit) {
  record r;
  r.type = record_type::hard_state;
  r.hard.term = term;
  r.hard.vote = std::move(vote);
  r.hard.commit = commit;
  return r;
}

record entries_rec(uint64_t first, size_t count, uint64_t term, size_t data_bytes = 5) {
  record r;
  r.type = record_type::entries;
  for (size_t i = 0; i < count; ++i)
    r.entries.push_back(make_entry(first + i, term, std::string(data_bytes, char('a' + i % 26))));
  return r;
}

record snapshot_rec(uint64_t index, uint64_t term, snapshot_kind kind) {
  record r;
  r.type = record_type::snapshot;
  r.snapshot.index = index;
  r.snapshot.term = term;
  r.kind = kind;
  return r;
}

record checkpoint_rec(uint64_t term, uint64_t snap_index, uint64_t snap_term) {
  record r;
  r.type = record_type::checkpoint;
  r.hard.term = term;
  r.hard.vote = "node-b";
  r.hard.commit = snap_index;
  r.snapshot.index = snap_index;
  r.snapshot.term = snap_term;
  r.snapshot.config = config_abc();
  return r;
}

std::string encode(const record& r) {
  std::string out;
  append_record(out, r);
  return out;
}

record decode_one(const std::string& bytes) {
  record r;
  size_t size = 0;
  std::string detail;
  auto st = read_record(bytes, 0, r, size, detail);
  REQUIRE_MESSAGE(st == frame_status::ok, detail);
  REQUIRE(size == bytes.size());
  return r;
}

// A segment: header, checkpoint, then `recs`; `offsets` receives where each
// of `recs` starts.
std::string make_segment(const std::vector<record>& recs, std::vector<size_t>* offsets = nullptr) {
  std::string s = encode_segment_header(segment_header{1, 1});
  append_record(s, checkpoint_rec(1, 0, 0));
  for (const auto& r : recs) {
    if (offsets)
      offsets->push_back(s.size());
    append_record(s, r);
  }
  return s;
}

std::vector<record> sample_records() {
  return {hard_state_rec(1, "node-a", 0), entries_rec(1, 3, 1), hard_state_rec(1, "node-a", 3),
          entries_rec(4, 2, 1, 100), snapshot_rec(3, 1, snapshot_kind::compacted),
          entries_rec(6, 1, 2)};
}

} // namespace

// ---- golden bytes (computed independently, with Python's struct and a bitwise CRC) ----

TEST_CASE("wal format: segment header bytes are pinned") {
  auto h = encode_segment_header(segment_header{3, 1001});
  CHECK(h.size() == segment_header_bytes);
  CHECK(to_hex(h)
        == "4453594e4357414c01000000000000000300000000000000e903000000000000bf4e773f00000000");
}

TEST_CASE("wal format: hard state and entries records are pinned") {
  CHECK(to_hex(encode(hard_state_rec(2, "n1", 5)))
        == "16000000020000008e220c4402000000000000000500000000000000020000006e31");
  record r;
  r.type = record_type::entries;
  r.entries = {make_entry(7, 3, "x"), make_entry(8, 3, "", raft::entry_type::noop)};
  CHECK(to_hex(encode(r))
        == "2700000003000000e1b12e17070000000000000002000000030000000000000000010000007803000000"
           "000000000200000000");
}

// ---- round trips ----

TEST_CASE("wal format: segment header round trip and rejections") {
  segment_header out;
  std::string err;
  auto h = encode_segment_header(segment_header{42, 123456789});
  REQUIRE(decode_segment_header(h, out, err));
  CHECK(out.seq == 42);
  CHECK(out.first_index == 123456789);

  CHECK_FALSE(decode_segment_header(h.substr(0, 39), out, err));
  CHECK(err.find("incomplete") != std::string::npos);

  auto bad_magic = h;
  bad_magic[0] = 'X';
  CHECK_FALSE(decode_segment_header(bad_magic, out, err));
  CHECK(err.find("magic") != std::string::npos);

  for (size_t i = 8; i < 36; ++i) {
    auto flipped = h;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x10);
    CHECK_FALSE(decode_segment_header(flipped, out, err));
  }

  // A future version with a correct checksum is refused by version, not by checksum.
  auto v2 = h;
  v2[8] = 2;
  uint32_t crc = crc32c(v2.data(), 32);
  for (int i = 0; i < 4; ++i)
    v2[32 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  CHECK_FALSE(decode_segment_header(v2, out, err));
  CHECK(err.find("version 2") != std::string::npos);
}

TEST_CASE("wal format: every record type round-trips") {
  std::vector<record> recs = sample_records();
  recs.push_back(checkpoint_rec(9, 500, 8));
  recs.push_back(hard_state_rec(0, "", 0));
  recs.push_back(snapshot_rec(77, 6, snapshot_kind::installed));
  record binary;
  binary.type = record_type::entries;
  std::string all_bytes;
  for (int b = 0; b < 256; ++b)
    all_bytes.push_back(static_cast<char>(b));
  binary.entries = {make_entry(100, 4, all_bytes, raft::entry_type::conf_change),
                    make_entry(101, 4, ""), make_entry(102, 5, std::string(70000, '\0'))};
  recs.push_back(binary);
  record empty_config = checkpoint_rec(1, 0, 0);
  empty_config.snapshot.config = raft::configuration{};
  recs.push_back(empty_config);
  for (const auto& r : recs) {
    CAPTURE(to_string(r.type));
    CHECK(decode_one(encode(r)) == r);
  }
}

TEST_CASE("wal format: entries records refuse what they cannot represent") {
  std::vector<raft::entry> gap = {make_entry(1, 1, "a"), make_entry(3, 1, "b")};
  std::string out = "keep";
  CHECK_THROWS_AS(append_entries_record(out, gap.data(), gap.data() + gap.size()),
                  std::invalid_argument);
  CHECK(out == "keep");
  std::vector<raft::entry> zero = {make_entry(0, 1, "a")};
  CHECK_THROWS_AS(append_entries_record(out, zero.data(), zero.data() + 1), std::invalid_argument);
  CHECK_THROWS_AS(append_entries_record(out, zero.data(), zero.data()), std::invalid_argument);
  CHECK(out == "keep");
}

TEST_CASE("wal format: read_record reports each kind of bad frame") {
  auto bytes = encode(entries_rec(5, 4, 2));
  record r;
  size_t size = 0;
  std::string detail;

  SUBCASE("incomplete at every truncation") {
    for (size_t n = 0; n < bytes.size(); ++n)
      CHECK(read_record(bytes.substr(0, n), 0, r, size, detail) == frame_status::incomplete);
  }
  SUBCASE("a flipped bit anywhere is caught") {
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        auto b = bytes;
        b[i] = static_cast<char>(b[i] ^ (1 << bit));
        auto st = read_record(b, 0, r, size, detail);
        CAPTURE(i);
        CAPTURE(bit);
        CHECK(st != frame_status::ok);
      }
    }
  }
  SUBCASE("length above the limit") {
    auto b = bytes;
    b[3] = static_cast<char>(0x7f);
    CHECK(read_record(b, 0, r, size, detail) == frame_status::bad_length);
  }
  SUBCASE("valid checksum, unknown type") {
    std::string b = bytes;
    b[4] = 9;
    uint32_t crc = crc32c_extend(crc32c(b.data(), 8), b.data() + 12, b.size() - 12);
    for (int i = 0; i < 4; ++i)
      b[8 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    CHECK(read_record(b, 0, r, size, detail) == frame_status::bad_type);
  }
  SUBCASE("valid checksum, payload that does not decode") {
    std::string payload = "garbage!";
    std::string b;
    b += static_cast<char>(payload.size());
    b += std::string("\0\0\0", 3);
    b += static_cast<char>(record_type::entries);
    b += std::string("\0\0\0", 3);
    uint32_t crc = crc32c_extend(crc32c(b.data(), 8), payload);
    for (int i = 0; i < 4; ++i)
      b += static_cast<char>((crc >> (8 * i)) & 0xff);
    b += payload;
    CHECK(read_record(b, 0, r, size, detail) == frame_status::bad_payload);
  }
  SUBCASE("zeros are never a record") {
    std::string zeros(64, '\0');
    CHECK(read_record(zeros, 0, r, size, detail) != frame_status::ok);
    CHECK_FALSE(is_valid_frame_at(zeros, 0));
  }
}

// ---- the recovery scan ----

TEST_CASE("wal scan: clean segments") {
  SUBCASE("header and checkpoint only") {
    auto seg = make_segment({});
    auto s = scan_segment(seg);
    CHECK(s.end == scan_end::clean);
    CHECK(s.records.size() == 1);
    CHECK(s.valid_bytes == seg.size());
    CHECK(s.problem.empty());
  }
  SUBCASE("records come back in order with their offsets") {
    std::vector<size_t> offsets;
    auto recs = sample_records();
    auto seg = make_segment(recs, &offsets);
    auto s = scan_segment(seg);
    REQUIRE(s.end == scan_end::clean);
    REQUIRE(s.records.size() == recs.size() + 1);
    CHECK(s.header.seq == 1);
    for (size_t i = 0; i < recs.size(); ++i) {
      CHECK(s.records[i + 1].rec == recs[i]);
      CHECK(s.records[i + 1].offset == offsets[i]);
    }
  }
}

TEST_CASE("wal scan: a partial last record at every byte offset is a torn tail") {
  std::vector<size_t> offsets;
  auto recs = sample_records();
  auto seg = make_segment(recs, &offsets);
  size_t last = offsets.back();
  for (size_t cut = last; cut < seg.size(); ++cut) {
    CAPTURE(cut);
    auto s = scan_segment(std::string_view(seg).substr(0, cut));
    if (cut == last) {
      CHECK(s.end == scan_end::clean);
    } else {
      CHECK(s.end == scan_end::torn_tail);
      CHECK(s.bad_offset == last);
    }
    CHECK(s.valid_bytes == last);
    CHECK(s.records.size() == recs.size()); // checkpoint + all but the last
  }
}

TEST_CASE("wal scan: a checksum-failing last record, or zeros or garbage after the end, is a torn tail") {
  std::vector<size_t> offsets;
  auto recs = sample_records();
  auto seg = make_segment(recs, &offsets);

  SUBCASE("flipped byte in the last record") {
    for (size_t i = offsets.back(); i < seg.size(); ++i) {
      auto b = seg;
      b[i] = static_cast<char>(b[i] ^ 0x01);
      auto s = scan_segment(b);
      CAPTURE(i);
      CHECK(s.end == scan_end::torn_tail);
      CHECK(s.valid_bytes == offsets.back());
    }
  }
  SUBCASE("zeros after the last record") {
    auto s = scan_segment(seg + std::string(4096, '\0'));
    CHECK(s.end == scan_end::torn_tail);
    CHECK(s.valid_bytes == seg.size());
    CHECK(s.records.size() == recs.size() + 1);
  }
  SUBCASE("half a record followed by zeros") {
    auto b = seg.substr(0, offsets.back() + 7) + std::string(100, '\0');
    auto s = scan_segment(b);
    CHECK(s.end == scan_end::torn_tail);
    CHECK(s.valid_bytes == offsets.back());
  }
  SUBCASE("random garbage after the last record") {
    std::mt19937_64 rng{42};
    for (int round = 0; round < 50; ++round) {
      std::string garbage(1 + rng() % 300, '\0');
      for (auto& c : garbage)
        c = static_cast<char>(rng());
      auto s = scan_segment(seg + garbage);
      CHECK(s.end == scan_end::torn_tail);
      CHECK(s.valid_bytes == seg.size());
    }
  }
}

TEST_CASE("wal scan: a bad record followed by valid ones is corruption") {
  std::vector<size_t> offsets;
  auto recs = sample_records();
  auto seg = make_segment(recs, &offsets);
  // Every byte of every record but the last (the checkpoint included).
  std::vector<size_t> starts = {segment_header_bytes};
  starts.insert(starts.end(), offsets.begin(), offsets.end());
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    for (size_t i = starts[k]; i < starts[k + 1]; ++i) {
      auto b = seg;
      b[i] = static_cast<char>(b[i] ^ 0x40);
      auto s = scan_segment(b);
      CAPTURE(k);
      CAPTURE(i);
      CHECK(s.end == scan_end::corrupt);
      CHECK(s.bad_offset == starts[k]);
      CHECK(s.records.size() == k);
      CHECK(s.resume_offset > starts[k]);
      CHECK(s.problem.find("valid record follows") != std::string::npos);
    }
  }
}

TEST_CASE("wal scan: a record with a valid checksum but bad content is corruption even at the end") {
  auto seg = make_segment(sample_records());
  std::string payload = "not an entries payload";
  std::string frame;
  frame += static_cast<char>(payload.size());
  frame += std::string("\0\0\0", 3);
  frame += static_cast<char>(record_type::entries);
  frame += std::string("\0\0\0", 3);
  uint32_t crc = crc32c_extend(crc32c(frame.data(), 8), payload);
  for (int i = 0; i < 4; ++i)
    frame += static_cast<char>((crc >> (8 * i)) & 0xff);
  auto s = scan_segment(seg + frame + payload);
  CHECK(s.end == scan_end::corrupt);
  CHECK(s.bad_offset == seg.size());
}

TEST_CASE("wal scan: a bad header") {
  auto seg = make_segment(sample_records());
  auto b = seg;
  b[20] = static_cast<char>(b[20] ^ 1);
  CHECK(scan_segment(b).end == scan_end::bad_header);
  CHECK(scan_segment("").end == scan_end::bad_header);
  CHECK(scan_segment(seg.substr(0, 30)).end == scan_end::bad_header);
}

// ---- snapshot files ----

TEST_CASE("wal format: snapshot files round-trip and every damage is caught") {
  raft::snapshot s;
  s.metadata.index = 1234;
  s.metadata.term = 7;
  s.metadata.config = config_abc();
  s.data = std::string("state machine bytes \x00\x01\x02\xff", 24);  // NUL and high bytes too
  REQUIRE(s.data.size() == 24);
  auto bytes = encode_snapshot_file(s);
  auto parts = encode_snapshot_file_parts(s);
  CHECK(bytes == parts.head + s.data + parts.trailer);

  raft::snapshot out;
  std::string err;
  REQUIRE(decode_snapshot_file(bytes, out, err));
  CHECK(out.metadata.index == 1234);
  CHECK(out.metadata.term == 7);
  CHECK(out.metadata.config == config_abc());
  CHECK(out.data == s.data);

  raft::snapshot empty;
  REQUIRE(decode_snapshot_file(encode_snapshot_file(empty), out, err));
  CHECK(out.data.empty());

  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = bytes;
    b[i] = static_cast<char>(b[i] ^ 0x08);
    CAPTURE(i);
    CHECK_FALSE(decode_snapshot_file(b, out, err));
  }
  for (size_t n = 0; n < bytes.size(); ++n)
    CHECK_FALSE(decode_snapshot_file(bytes.substr(0, n), out, err));
  auto b = bytes;
  b[10] = static_cast<char>(b[10] ^ 1);
  CHECK_FALSE(decode_snapshot_file(b, out, err));
  CHECK(err.find("checksum mismatch at offset " + std::to_string(bytes.size() - 4))
        != std::string::npos);
}

// ---- file names ----

TEST_CASE("wal format: file names round-trip and sort by sequence") {
  uint64_t seq = 0;
  uint64_t first = 0;
  auto name = segment_file_name(12, 3456);
  CHECK(name == "wal-00000000000000000012-00000000000000003456.log");
  REQUIRE(parse_segment_file_name(name, seq, first));
  CHECK(seq == 12);
  CHECK(first == 3456);
  REQUIRE(parse_segment_file_name(segment_file_name(UINT64_MAX, UINT64_MAX), seq, first));
  CHECK(seq == UINT64_MAX);
  CHECK(first == UINT64_MAX);
  CHECK(segment_file_name(9, 1000) < segment_file_name(10, 5));
  CHECK_FALSE(parse_segment_file_name(name + ".tmp", seq, first));
  CHECK_FALSE(parse_segment_file_name("wal-0000000000000000001x-00000000000000003456.log", seq, first));
  CHECK_FALSE(parse_segment_file_name("wal-99999999999999999999-00000000000000003456.log", seq, first));

  uint64_t index = 0;
  CHECK(snapshot_file_name(77) == "snap-00000000000000000077.snap");
  REQUIRE(parse_snapshot_file_name(snapshot_file_name(77), index));
  CHECK(index == 77);
  CHECK_FALSE(parse_snapshot_file_name("snap-00000000000000000077.snap.tmp", index));
  CHECK_FALSE(parse_snapshot_file_name("snap-77.snap", index));
}
