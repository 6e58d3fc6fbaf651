#include "protocols/wal/format.hpp"

#include <cinttypes>
#include <cstdio>
#include <stdexcept>

#include "protocols/wal/crc32c.hpp"

namespace dsync::wal {

namespace {

void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

void put_str(std::string& out, std::string_view s) {
  if (s.size() > UINT32_MAX)
    throw std::invalid_argument("wal: string longer than 4 GiB");
  put_u32(out, static_cast<uint32_t>(s.size()));
  out.append(s.data(), s.size());
}

void put_config(std::string& out, const raft::configuration& c) {
  put_u32(out, static_cast<uint32_t>(c.voters.size()));
  for (const auto& v : c.voters)
    put_str(out, v);
  put_u32(out, static_cast<uint32_t>(c.learners.size()));
  for (const auto& l : c.learners)
    put_str(out, l);
}

void put_hard_state(std::string& out, const raft::hard_state& h) {
  put_u64(out, h.term);
  put_u64(out, h.commit);
  put_str(out, h.vote);
}

uint32_t get_u32_at(std::string_view b, size_t pos) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(b[pos + i])) << (8 * i);
  return v;
}

uint64_t get_u64_at(std::string_view b, size_t pos) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(b[pos + i])) << (8 * i);
  return v;
}

// Bounds-checked reader: every get_* fails instead of reading past the end.
struct reader {
  std::string_view in;
  size_t pos = 0;

  size_t left() const { return in.size() - pos; }
  bool get_u8(uint8_t& v) {
    if (left() < 1)
      return false;
    v = static_cast<uint8_t>(in[pos++]);
    return true;
  }
  bool get_u32(uint32_t& v) {
    if (left() < 4)
      return false;
    v = get_u32_at(in, pos);
    pos += 4;
    return true;
  }
  bool get_u64(uint64_t& v) {
    if (left() < 8)
      return false;
    v = get_u64_at(in, pos);
    pos += 8;
    return true;
  }
  bool get_str(std::string& s) {
    uint32_t n = 0;
    if (!get_u32(n) || n > left())
      return false;
    s.assign(in.data() + pos, n);
    pos += n;
    return true;
  }
  bool get_ids(std::vector<raft::node_id>& ids) {
    uint32_t n = 0;
    if (!get_u32(n) || n > left() / 4) // each id costs at least its length field
      return false;
    ids.resize(n);
    for (auto& id : ids)
      if (!get_str(id))
        return false;
    return true;
  }
  bool get_config(raft::configuration& c) { return get_ids(c.voters) && get_ids(c.learners); }
  bool get_hard_state(raft::hard_state& h) {
    return get_u64(h.term) && get_u64(h.commit) && get_str(h.vote);
  }
};

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

// Builds a frame around a payload that is appended in place: the caller
// writes the payload after begin() and calls end().
struct frame_builder {
  std::string& out;
  size_t start;
  explicit frame_builder(std::string& o, record_type type) : out(o), start(o.size()) {
    put_u32(out, 0); // length, patched in end()
    put_u8(out, static_cast<uint8_t>(type));
    put_u8(out, 0);
    put_u8(out, 0);
    put_u8(out, 0);
    put_u32(out, 0); // checksum, patched in end()
  }
  void end() {
    size_t payload = out.size() - start - frame_header_bytes;
    if (payload > max_record_payload_bytes) {
      out.resize(start);
      throw std::invalid_argument("wal: record payload of " + std::to_string(payload)
                                  + " bytes exceeds the limit of "
                                  + std::to_string(max_record_payload_bytes));
    }
    for (int i = 0; i < 4; ++i)
      out[start + i] = static_cast<char>((payload >> (8 * i)) & 0xffu);
    uint32_t crc = crc32c(out.data() + start, 8);
    crc = crc32c_extend(crc, out.data() + start + frame_header_bytes, payload);
    for (int i = 0; i < 4; ++i)
      out[start + 8 + i] = static_cast<char>((crc >> (8 * i)) & 0xffu);
  }
};

bool known_type(uint8_t t) { return t >= 1 && t <= 4; }

bool decode_payload(record_type type, std::string_view payload, record& out,
                    std::string& detail) {
  reader r{payload};
  out = record{};
  out.type = type;
  switch (type) {
    case record_type::checkpoint:
      if (!r.get_hard_state(out.hard) || !r.get_u64(out.snapshot.index)
          || !r.get_u64(out.snapshot.term) || !r.get_config(out.snapshot.config)) {
        detail = "malformed checkpoint payload";
        return false;
      }
      break;
    case record_type::hard_state:
      if (!r.get_hard_state(out.hard)) {
        detail = "malformed hard state payload";
        return false;
      }
      break;
    case record_type::snapshot: {
      uint8_t kind = 0;
      if (!r.get_u64(out.snapshot.index) || !r.get_u64(out.snapshot.term) || !r.get_u8(kind)
          || (kind != 1 && kind != 2)) {
        detail = "malformed snapshot payload";
        return false;
      }
      out.kind = static_cast<snapshot_kind>(kind);
      break;
    }
    case record_type::entries: {
      uint64_t first = 0;
      uint32_t count = 0;
      // Each entry costs at least 13 bytes: reject counts the payload cannot hold.
      if (!r.get_u64(first) || !r.get_u32(count) || count == 0 || first == 0
          || count > r.left() / 13 || first > UINT64_MAX - count) {
        detail = "malformed entries header";
        return false;
      }
      out.entries.resize(count);
      for (uint32_t i = 0; i < count; ++i) {
        auto& e = out.entries[i];
        uint8_t t = 0;
        e.index = first + i;
        if (!r.get_u64(e.term) || !r.get_u8(t) || !r.get_str(e.data)) {
          detail = "malformed entry " + std::to_string(i) + " of " + std::to_string(count);
          return false;
        }
        e.type = static_cast<raft::entry_type>(t);
      }
      break;
    }
  }
  if (r.left() != 0) {
    detail = std::to_string(r.left()) + " unexpected bytes after the " + to_string(type)
             + " payload";
    return false;
  }
  return true;
}

} // namespace

// ---- names of enum values -------------------------------------------------------

const char* to_string(record_type x) {
  switch (x) {
    case record_type::checkpoint: return "checkpoint";
    case record_type::hard_state: return "hard_state";
    case record_type::entries: return "entries";
    case record_type::snapshot: return "snapshot";
  }
  return "?";
}

const char* to_string(snapshot_kind x) {
  switch (x) {
    case snapshot_kind::installed: return "installed";
    case snapshot_kind::compacted: return "compacted";
  }
  return "?";
}

const char* to_string(frame_status x) {
  switch (x) {
    case frame_status::ok: return "ok";
    case frame_status::incomplete: return "incomplete";
    case frame_status::bad_length: return "bad_length";
    case frame_status::bad_checksum: return "bad_checksum";
    case frame_status::bad_type: return "bad_type";
    case frame_status::bad_payload: return "bad_payload";
  }
  return "?";
}

const char* to_string(scan_end x) {
  switch (x) {
    case scan_end::clean: return "clean";
    case scan_end::torn_tail: return "torn_tail";
    case scan_end::corrupt: return "corrupt";
    case scan_end::bad_header: return "bad_header";
  }
  return "?";
}

bool operator==(const record& a, const record& b) {
  if (a.type != b.type)
    return false;
  switch (a.type) {
    case record_type::checkpoint:
      return a.hard == b.hard && a.snapshot.index == b.snapshot.index
             && a.snapshot.term == b.snapshot.term && a.snapshot.config == b.snapshot.config;
    case record_type::hard_state: return a.hard == b.hard;
    case record_type::entries: return a.entries == b.entries;
    case record_type::snapshot:
      return a.snapshot.index == b.snapshot.index && a.snapshot.term == b.snapshot.term
             && a.kind == b.kind;
  }
  return false;
}

// ---- segment header ----------------------------------------------------------

std::string encode_segment_header(const segment_header& h) {
  std::string out;
  out.reserve(segment_header_bytes);
  out.append(segment_magic.data(), segment_magic.size());
  put_u32(out, format_version);
  put_u32(out, 0);
  put_u64(out, h.seq);
  put_u64(out, h.first_index);
  put_u32(out, crc32c(out.data(), out.size()));
  put_u32(out, 0);
  return out;
}

bool decode_segment_header(std::string_view b, segment_header& out, std::string& error) {
  if (b.size() < segment_header_bytes) {
    error = "segment header incomplete: " + std::to_string(b.size()) + " of "
            + std::to_string(segment_header_bytes) + " bytes";
    return false;
  }
  if (b.substr(0, 8) != segment_magic) {
    error = "not a WAL segment (bad magic)";
    return false;
  }
  uint32_t stored = get_u32_at(b, 32);
  uint32_t computed = crc32c(b.data(), 32);
  if (stored != computed) {
    error = "segment header checksum mismatch (stored " + hex32(stored) + ", computed "
            + hex32(computed) + ")";
    return false;
  }
  uint32_t version = get_u32_at(b, 8);
  if (version != format_version) {
    error = "unsupported segment format version " + std::to_string(version) + " (this build reads "
            + std::to_string(format_version) + ")";
    return false;
  }
  if (get_u32_at(b, 12) != 0 || get_u32_at(b, 36) != 0) {
    error = "segment header has unknown flags";
    return false;
  }
  out.seq = get_u64_at(b, 16);
  out.first_index = get_u64_at(b, 24);
  return true;
}

// ---- records ---------------------------------------------------------------------

void append_checkpoint_record(std::string& out, const raft::hard_state& hard,
                              const raft::snapshot_metadata& snapshot) {
  frame_builder f{out, record_type::checkpoint};
  put_hard_state(out, hard);
  put_u64(out, snapshot.index);
  put_u64(out, snapshot.term);
  put_config(out, snapshot.config);
  f.end();
}

void append_hard_state_record(std::string& out, const raft::hard_state& hard) {
  frame_builder f{out, record_type::hard_state};
  put_hard_state(out, hard);
  f.end();
}

void append_snapshot_record(std::string& out, uint64_t index, uint64_t term, snapshot_kind kind) {
  frame_builder f{out, record_type::snapshot};
  put_u64(out, index);
  put_u64(out, term);
  put_u8(out, static_cast<uint8_t>(kind));
  f.end();
}

void append_entries_record(std::string& out, const raft::entry* first, const raft::entry* last) {
  if (first == last)
    throw std::invalid_argument("wal: an entries record needs at least one entry");
  if (first->index == 0)
    throw std::invalid_argument("wal: entry index 0 is not a log position");
  auto count = static_cast<uint64_t>(last - first);
  if (count > UINT32_MAX)
    throw std::invalid_argument("wal: too many entries for one record");
  for (const raft::entry* e = first + 1; e != last; ++e)
    if (e->index != (e - 1)->index + 1)
      throw std::invalid_argument("wal: entries are not contiguous: index "
                                  + std::to_string(e->index) + " follows "
                                  + std::to_string((e - 1)->index));
  size_t start = out.size();
  try {
    frame_builder f{out, record_type::entries};
    put_u64(out, first->index);
    put_u32(out, static_cast<uint32_t>(count));
    for (const raft::entry* e = first; e != last; ++e) {
      put_u64(out, e->term);
      put_u8(out, static_cast<uint8_t>(e->type));
      put_str(out, e->data);
    }
    f.end();
  } catch (...) {
    out.resize(start);
    throw;
  }
}

void append_record(std::string& out, const record& r) {
  switch (r.type) {
    case record_type::checkpoint: append_checkpoint_record(out, r.hard, r.snapshot); return;
    case record_type::hard_state: append_hard_state_record(out, r.hard); return;
    case record_type::snapshot:
      append_snapshot_record(out, r.snapshot.index, r.snapshot.term, r.kind);
      return;
    case record_type::entries:
      append_entries_record(out, r.entries.data(), r.entries.data() + r.entries.size());
      return;
  }
  throw std::invalid_argument("wal: unknown record type");
}

frame_status read_record(std::string_view b, size_t offset, record& out, size_t& size,
                         std::string& detail) {
  size_t left = offset <= b.size() ? b.size() - offset : 0;
  if (left < frame_header_bytes) {
    detail = "incomplete record header: " + std::to_string(left) + " of "
             + std::to_string(frame_header_bytes) + " bytes";
    return frame_status::incomplete;
  }
  uint32_t length = get_u32_at(b, offset);
  if (length > max_record_payload_bytes) {
    detail = "record length " + std::to_string(length) + " exceeds the limit";
    return frame_status::bad_length;
  }
  if (left - frame_header_bytes < length) {
    detail = "incomplete record: length says " + std::to_string(length) + " payload bytes, "
             + std::to_string(left - frame_header_bytes) + " remain";
    return frame_status::incomplete;
  }
  uint32_t stored = get_u32_at(b, offset + 8);
  uint32_t computed = crc32c_extend(crc32c(b.data() + offset, 8),
                                    b.data() + offset + frame_header_bytes, length);
  if (stored != computed) {
    detail = "record checksum mismatch (stored " + hex32(stored) + ", computed " + hex32(computed)
             + ")";
    return frame_status::bad_checksum;
  }
  auto type = static_cast<uint8_t>(b[offset + 4]);
  if (!known_type(type) || b[offset + 5] != 0 || b[offset + 6] != 0 || b[offset + 7] != 0) {
    detail = "record with a valid checksum has unknown type " + std::to_string(type)
             + " or reserved bits set";
    return frame_status::bad_type;
  }
  std::string why;
  if (!decode_payload(static_cast<record_type>(type), b.substr(offset + frame_header_bytes, length),
                      out, why)) {
    detail = "record with a valid checksum does not decode: " + why;
    return frame_status::bad_payload;
  }
  size = frame_header_bytes + length;
  return frame_status::ok;
}

bool is_valid_frame_at(std::string_view b, size_t offset) {
  if (offset > b.size() || b.size() - offset < frame_header_bytes)
    return false;
  uint32_t length = get_u32_at(b, offset);
  if (length > b.size() - offset - frame_header_bytes)
    return false;
  auto type = static_cast<uint8_t>(b[offset + 4]);
  if (!known_type(type) || b[offset + 5] != 0 || b[offset + 6] != 0 || b[offset + 7] != 0)
    return false;
  uint32_t computed = crc32c_extend(crc32c(b.data() + offset, 8),
                                    b.data() + offset + frame_header_bytes, length);
  return computed == get_u32_at(b, offset + 8);
}

// ---- recovery scan ---------------------------------------------------------------

scan_result scan_segment(std::string_view b) {
  scan_result r;
  if (!decode_segment_header(b, r.header, r.problem)) {
    r.end = scan_end::bad_header;
    return r;
  }
  size_t off = segment_header_bytes;
  while (off < b.size()) {
    located_record lr;
    lr.offset = off;
    size_t size = 0;
    std::string detail;
    auto st = read_record(b, off, lr.rec, size, detail);
    if (st == frame_status::ok) {
      r.records.push_back(std::move(lr));
      off += size;
      continue;
    }
    r.valid_bytes = off;
    r.bad_offset = off;
    r.problem = detail;
    if (st == frame_status::bad_type || st == frame_status::bad_payload) {
      r.end = scan_end::corrupt;
      return r;
    }
    for (size_t p = off + 1; p + frame_header_bytes <= b.size(); ++p) {
      if (is_valid_frame_at(b, p)) {
        r.end = scan_end::corrupt;
        r.resume_offset = p;
        r.problem += "; a valid record follows at offset " + std::to_string(p);
        return r;
      }
    }
    r.end = scan_end::torn_tail;
    return r;
  }
  r.valid_bytes = off;
  return r;
}

// ---- snapshot files ----------------------------------------------------------------

snapshot_file_parts encode_snapshot_file_parts(const raft::snapshot& s) {
  snapshot_file_parts p;
  p.head.append(snapshot_magic.data(), snapshot_magic.size());
  put_u32(p.head, format_version);
  put_u32(p.head, 0);
  put_u64(p.head, s.metadata.index);
  put_u64(p.head, s.metadata.term);
  put_config(p.head, s.metadata.config);
  put_u64(p.head, s.data.size());
  uint32_t crc = crc32c_extend(crc32c(p.head), s.data);
  put_u32(p.trailer, crc);
  return p;
}

std::string encode_snapshot_file(const raft::snapshot& s) {
  auto p = encode_snapshot_file_parts(s);
  return p.head + s.data + p.trailer;
}

bool decode_snapshot_file(std::string_view b, raft::snapshot& out, std::string& error) {
  constexpr size_t min_bytes = 32 + 8 + 8 + 4; // fixed head, empty config, data length, crc
  if (b.size() < min_bytes) {
    error = "snapshot file too short: " + std::to_string(b.size()) + " bytes";
    return false;
  }
  if (b.substr(0, 8) != snapshot_magic) {
    error = "not a snapshot file (bad magic at offset 0)";
    return false;
  }
  size_t crc_at = b.size() - 4;
  uint32_t stored = get_u32_at(b, crc_at);
  uint32_t computed = crc32c(b.data(), crc_at);
  if (stored != computed) {
    error = "snapshot checksum mismatch at offset " + std::to_string(crc_at) + " (stored "
            + hex32(stored) + ", computed " + hex32(computed) + " over bytes [0, "
            + std::to_string(crc_at) + "))";
    return false;
  }
  reader r{b.substr(0, crc_at)};
  r.pos = 8;
  uint32_t version = 0;
  uint32_t flags = 0;
  r.get_u32(version);
  r.get_u32(flags);
  if (version != format_version || flags != 0) {
    error = "unsupported snapshot format version " + std::to_string(version) + " or flags";
    return false;
  }
  out = raft::snapshot{};
  uint64_t data_len = 0;
  if (!r.get_u64(out.metadata.index) || !r.get_u64(out.metadata.term)
      || !r.get_config(out.metadata.config) || !r.get_u64(data_len) || data_len != r.left()) {
    error = "malformed snapshot file (at offset " + std::to_string(r.pos) + ")";
    return false;
  }
  out.data.assign(b.data() + r.pos, data_len);
  return true;
}

// ---- file names --------------------------------------------------------------------

namespace {

// Parses exactly `digits` decimal digits.
bool parse_decimal(std::string_view s, size_t digits, uint64_t& out) {
  if (s.size() != digits)
    return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

std::string decimal20(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRIu64, v);
  return buf;
}

} // namespace

std::string segment_file_name(uint64_t seq, uint64_t first_index) {
  return "wal-" + decimal20(seq) + "-" + decimal20(first_index) + ".log";
}

bool parse_segment_file_name(std::string_view name, uint64_t& seq, uint64_t& first_index) {
  // wal- (4) + 20 + '-' + 20 + .log (4)
  if (name.size() != 49 || name.substr(0, 4) != "wal-" || name[24] != '-'
      || name.substr(45) != ".log")
    return false;
  return parse_decimal(name.substr(4, 20), 20, seq)
         && parse_decimal(name.substr(25, 20), 20, first_index);
}

std::string snapshot_file_name(uint64_t index) { return "snap-" + decimal20(index) + ".snap"; }

bool parse_snapshot_file_name(std::string_view name, uint64_t& index) {
  if (name.size() != 30 || name.substr(0, 5) != "snap-" || name.substr(25) != ".snap")
    return false;
  return parse_decimal(name.substr(5, 20), 20, index);
}

} // namespace dsync::wal
