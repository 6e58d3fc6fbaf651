// The coherence messages' wire format (protocols/cache/messages.hpp): every kind round
// trips, and every malformed input is refused rather than misread.
#include "protocols/cache/messages.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocols/codec.hpp"
#include "protocols/raft/rng.hpp"

using namespace dsync::cache;

namespace {

// One well-formed message of every kind, with every field its kind may use.
std::vector<message> samples() {
  std::vector<message> out;
  auto make = [&](msg_kind k) {
    message m;
    m.kind = k;
    m.epoch = 7;
    m.key = "user:42";
    m.txn = 123456789012345ull;
    return m;
  };
  for (auto k : {msg_kind::get_s, msg_kind::get_m, msg_kind::put_s, msg_kind::put_e, msg_kind::unblock,
                 msg_kind::del, msg_kind::inval, msg_kind::put_ack, msg_kind::wt_ack, msg_kind::recall,
                 msg_kind::done, msg_kind::nack})
    out.push_back(make(k));
  for (auto k : {msg_kind::put_m, msg_kind::put_o, msg_kind::owner_data, msg_kind::write_through}) {
    auto m = make(k);
    m.has_data = true;
    m.val = std::string("v\0with\xff" "bytes", 12);
    m.dirty = true;
    out.push_back(m);
    m.val.reset();  // an absent value is data too
    m.dirty = false;
    out.push_back(m);
  }
  auto ra = make(msg_kind::recall_ack);
  out.push_back(ra);
  ra.has_data = true;
  ra.val = "dirty";
  ra.dirty = true;
  out.push_back(ra);
  auto d = make(msg_kind::data);
  d.has_data = true;
  d.val = "";
  d.acks = {"node-2", "node-3"};
  d.exclusive = true;
  out.push_back(d);
  d.exclusive = false;
  d.revert = true;
  d.dirty = true;
  out.push_back(d);
  for (auto k : {msg_kind::fwd_get_s, msg_kind::inv, msg_kind::inv_ack}) {
    auto m = make(k);
    m.node = "node-9";
    out.push_back(m);
  }
  auto f = make(msg_kind::fwd_get_m);
  f.node = "node-9";
  f.acks = {"node-1"};
  out.push_back(f);
  auto c = make(msg_kind::ack_count);
  c.acks = {"a", "b", "c"};
  out.push_back(c);
  message fl;
  fl.kind = msg_kind::flushed;
  fl.epoch = 3;
  out.push_back(fl);
  fl.from_directory = true;
  out.push_back(fl);
  return out;
}

// The encoding of `m` with its flag byte replaced (format, kind, epoch, key, txn, node
// come first).
std::string with_flags(const message& m, uint8_t flags) {
  std::string b = encode(m);
  const size_t at = 1 + 1 + 8 + 8 + m.key.size() + 8 + 8 + m.node.size();
  b[at] = static_cast<char>(flags);
  return b;
}

}  // namespace

TEST_CASE("every message kind survives encode and decode") {
  for (const auto& m : samples()) {
    CAPTURE(describe(m));
    message back;
    REQUIRE(decode(encode(m), back));
    CHECK(back == m);
    CHECK(encode(back) == encode(m));
  }
}

TEST_CASE("messages route to the directory or the controller by kind") {
  CHECK(for_directory(msg_kind::get_s));
  CHECK(for_directory(msg_kind::put_o));
  CHECK(for_directory(msg_kind::unblock));
  CHECK(for_directory(msg_kind::recall_ack));
  CHECK(for_directory(msg_kind::flushed));
  CHECK_FALSE(for_directory(msg_kind::data));
  CHECK_FALSE(for_directory(msg_kind::inv));
  CHECK_FALSE(for_directory(msg_kind::recall));
  CHECK_FALSE(for_directory(msg_kind::nack));
}

TEST_CASE("a truncated message is refused at every length, and so are trailing bytes") {
  for (const auto& m : samples()) {
    const std::string b = encode(m);
    message out;
    for (size_t n = 0; n < b.size(); ++n) CHECK_FALSE(decode(std::string_view(b.data(), n), out));
    CHECK_FALSE(decode(b + '\0', out));
  }
}

TEST_CASE("unknown formats, kinds and flags are refused") {
  message m;
  m.kind = msg_kind::get_s;
  m.key = "k";
  std::string b = encode(m);
  message out;
  std::string bad = b;
  bad[0] = 2;  // format
  CHECK_FALSE(decode(bad, out));
  for (int k : {0, 13, 15, 31, 43, 255}) {
    bad = b;
    bad[1] = static_cast<char>(k);
    CHECK_FALSE(decode(bad, out));
  }
  CHECK_FALSE(decode(with_flags(m, 64), out));
  CHECK_FALSE(decode(with_flags(m, 128), out));
}

TEST_CASE("fields a kind does not use, or lacks, are refused") {
  message out;
  message g;
  g.kind = msg_kind::get_s;
  g.key = "k";
  CHECK(decode(encode(g), out));
  SUBCASE("an empty or oversized key") {
    g.key = "";
    CHECK_FALSE(decode(encode(g), out));
    g.key = std::string(max_key_bytes + 1, 'k');
    CHECK_FALSE(decode(encode(g), out));
    g.key = std::string(max_key_bytes, 'k');
    CHECK(decode(encode(g), out));
  }
  SUBCASE("a key on flushed") {
    message f;
    f.kind = msg_kind::flushed;
    f.key = "k";
    CHECK_FALSE(decode(encode(f), out));
  }
  SUBCASE("a node where none is meant, none where one is") {
    g.node = "n";
    CHECK_FALSE(decode(encode(g), out));
    message i;
    i.kind = msg_kind::inv;
    i.key = "k";
    CHECK_FALSE(decode(encode(i), out));
    i.node = std::string(max_node_id_bytes + 1, 'n');
    CHECK_FALSE(decode(encode(i), out));
  }
  SUBCASE("data where none is meant, none where it is") {
    g.has_data = true;
    CHECK_FALSE(decode(encode(g), out));
    message p;
    p.kind = msg_kind::put_m;
    p.key = "k";
    CHECK_FALSE(decode(encode(p), out));          // PutM without data
    p.has_data = true;
    p.val = std::string(max_value_bytes + 1, 'v');
    CHECK_FALSE(decode(encode(p), out));          // oversized value
    message s;
    s.kind = msg_kind::put_s;
    s.key = "k";
    CHECK_FALSE(decode(with_flags(s, 16), out));  // a value flag without data
    CHECK_FALSE(decode(with_flags(s, 1), out));   // dirty without data
  }
  SUBCASE("flags of other kinds") {
    CHECK_FALSE(decode(with_flags(g, 2), out));   // exclusive
    CHECK_FALSE(decode(with_flags(g, 4), out));   // revert
    CHECK_FALSE(decode(with_flags(g, 32), out));  // from_directory
  }
  SUBCASE("acks where none are meant, empty or too many") {
    g.acks = {"n"};
    CHECK_FALSE(decode(encode(g), out));
    message d;
    d.kind = msg_kind::data;
    d.key = "k";
    d.has_data = true;
    d.acks = {""};
    CHECK_FALSE(decode(encode(d), out));
    d.acks.assign(max_members + 1, "n");
    CHECK_FALSE(decode(encode(d), out));
    d.acks.assign(max_members, "n");
    CHECK(decode(encode(d), out));
  }
  SUBCASE("a length field pointing past the end") {
    std::string b = encode(g);
    std::string huge;
    dsync::codec::put_u64(huge, ~0ull);
    b.replace(10, 8, huge);  // the key's length
    CHECK_FALSE(decode(b, out));
  }
}

TEST_CASE("random bytes and random corruptions never decode into a different encoding") {
  dsync::raft::rng r(2024);
  auto all = samples();
  message out;
  for (int i = 0; i < 20000; ++i) {
    std::string b;
    if (i % 2 == 0) {
      b = encode(all[r.below(all.size())]);
      const auto flips = 1 + r.below(4);
      for (uint64_t f = 0; f < flips; ++f) b[r.below(b.size())] = static_cast<char>(r.below(256));
    } else {
      b.resize(r.below(80));
      for (auto& c : b) c = static_cast<char>(r.below(256));
    }
    // The format is canonical: whatever decodes must re-encode to the same bytes.
    if (decode(b, out)) CHECK(encode(out) == b);
  }
}
