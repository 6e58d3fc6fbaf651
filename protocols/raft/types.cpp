#include "protocols/raft/types.hpp"

#include <algorithm>

namespace dsync::raft {

const char* to_string(entry_type x) {
  switch (x) {
    case entry_type::normal: return "normal";
    case entry_type::conf_change: return "conf_change";
    case entry_type::noop: return "noop";
  }
  return "?";
}

bool operator==(const entry& a, const entry& b) {
  return a.term == b.term && a.index == b.index && a.type == b.type && a.data == b.data;
}

uint64_t entry_size_bytes(const entry& e) {
  // 24: term, index and type as they would be framed; keeps empty entries
  // from being free under the byte limits.
  return 24 + e.data.size();
}

bool configuration::is_voter(const node_id& id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

bool configuration::is_learner(const node_id& id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

std::vector<node_id> configuration::members() const {
  std::vector<node_id> out = voters;
  out.insert(out.end(), learners.begin(), learners.end());
  return out;
}

bool operator==(const configuration& a, const configuration& b) {
  return a.voters == b.voters && a.learners == b.learners;
}

std::string to_string(const configuration& c) {
  std::string out = "voters{";
  for (size_t i = 0; i < c.voters.size(); ++i)
    out += (i ? "," : "") + c.voters[i];
  out += "} learners{";
  for (size_t i = 0; i < c.learners.size(); ++i)
    out += (i ? "," : "") + c.learners[i];
  return out + "}";
}

const char* to_string(conf_change_type x) {
  switch (x) {
    case conf_change_type::add_learner: return "add_learner";
    case conf_change_type::promote_learner: return "promote_learner";
    case conf_change_type::remove_node: return "remove_node";
  }
  return "?";
}

bool operator==(const hard_state& a, const hard_state& b) {
  return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

struct reader {
  const std::string& in;
  size_t pos = 0;

  bool get_u8(uint8_t& v) {
    if (pos + 1 > in.size())
      return false;
    v = static_cast<uint8_t>(in[pos++]);
    return true;
  }
  bool get_u32(uint32_t& v) {
    if (pos + 4 > in.size())
      return false;
    v = 0;
    for (int i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
    pos += 4;
    return true;
  }
  bool get_str(std::string& s) {
    uint32_t n = 0;
    if (!get_u32(n) || n > in.size() - pos)
      return false;
    s.assign(in, pos, n);
    pos += n;
    return true;
  }
  bool get_ids(std::vector<node_id>& ids) {
    uint32_t n = 0;
    // Each id costs at least 4 bytes: reject counts the input cannot hold.
    if (!get_u32(n) || n > (in.size() - pos) / 4)
      return false;
    ids.resize(n);
    for (auto& id : ids)
      if (!get_str(id))
        return false;
    return true;
  }
};

} // namespace

std::string encode_conf_change(const conf_change_record& x) {
  std::string out;
  out.push_back(static_cast<char>(1)); // format version
  out.push_back(static_cast<char>(x.change.type));
  put_str(out, x.change.node);
  put_u32(out, static_cast<uint32_t>(x.config.voters.size()));
  for (auto& v : x.config.voters)
    put_str(out, v);
  put_u32(out, static_cast<uint32_t>(x.config.learners.size()));
  for (auto& l : x.config.learners)
    put_str(out, l);
  return out;
}

bool decode_conf_change(const std::string& bytes, conf_change_record& out) {
  reader r{bytes};
  uint8_t version = 0;
  uint8_t type = 0;
  if (!r.get_u8(version) || version != 1 || !r.get_u8(type) || type > 2)
    return false;
  out.change.type = static_cast<conf_change_type>(type);
  if (!r.get_str(out.change.node) || !r.get_ids(out.config.voters)
      || !r.get_ids(out.config.learners))
    return false;
  return r.pos == bytes.size()
         && std::is_sorted(out.config.voters.begin(), out.config.voters.end())
         && std::is_sorted(out.config.learners.begin(), out.config.learners.end());
}

const char* to_string(message_type x) {
  switch (x) {
    case message_type::append_entries: return "append_entries";
    case message_type::append_entries_response: return "append_entries_response";
    case message_type::request_vote: return "request_vote";
    case message_type::request_vote_response: return "request_vote_response";
    case message_type::request_pre_vote: return "request_pre_vote";
    case message_type::request_pre_vote_response: return "request_pre_vote_response";
    case message_type::heartbeat: return "heartbeat";
    case message_type::heartbeat_response: return "heartbeat_response";
    case message_type::install_snapshot: return "install_snapshot";
    case message_type::install_snapshot_response: return "install_snapshot_response";
    case message_type::timeout_now: return "timeout_now";
  }
  return "?";
}

std::string describe(const message& m) {
  std::string out = m.from + "->" + m.to + " " + to_string(m.type) + " t" + std::to_string(m.term);
  auto add = [&out](const char* k, uint64_t v) { out += std::string(" ") + k + "=" + std::to_string(v); };
  switch (m.type) {
    case message_type::append_entries:
      add("prev", m.index);
      add("prev_term", m.log_term);
      add("n", m.entries.size());
      add("commit", m.commit);
      break;
    case message_type::append_entries_response:
      add("index", m.index);
      if (m.reject) {
        out += " reject";
        add("hint_term", m.hint_term);
        add("hint_index", m.hint_index);
      }
      break;
    case message_type::request_vote:
    case message_type::request_pre_vote:
      add("last", m.index);
      add("last_term", m.log_term);
      if (m.transfer)
        out += " transfer";
      break;
    case message_type::request_vote_response:
    case message_type::request_pre_vote_response:
      out += m.reject ? " reject" : " grant";
      break;
    case message_type::heartbeat:
      add("commit", m.commit);
      add("ctx", m.context);
      break;
    case message_type::heartbeat_response:
      add("ctx", m.context);
      break;
    case message_type::install_snapshot:
      add("snap", m.snapshot.index);
      add("off", m.snapshot_offset);
      add("len", m.snapshot_chunk.size());
      if (m.snapshot_done)
        out += " done";
      break;
    case message_type::install_snapshot_response:
      add("snap", m.index);
      add("off", m.snapshot_offset);
      if (m.reject)
        out += " reject";
      break;
    case message_type::timeout_now:
      break;
  }
  return out;
}

const char* to_string(errc x) {
  switch (x) {
    case errc::ok: return "ok";
    case errc::not_leader: return "not_leader";
    case errc::leader_transfer_in_progress: return "leader_transfer_in_progress";
    case errc::too_many_uncommitted: return "too_many_uncommitted";
    case errc::entry_too_large: return "entry_too_large";
    case errc::conf_change_in_progress: return "conf_change_in_progress";
    case errc::leader_not_ready: return "leader_not_ready";
    case errc::invalid_conf_change: return "invalid_conf_change";
    case errc::learner_not_caught_up: return "learner_not_caught_up";
    case errc::unknown_node: return "unknown_node";
    case errc::too_many_pending_reads: return "too_many_pending_reads";
    case errc::invalid_compaction: return "invalid_compaction";
    case errc::wrong_group: return "wrong_group";
    case errc::not_addressed: return "not_addressed";
  }
  return "?";
}

const char* to_string(role x) {
  switch (x) {
    case role::follower: return "follower";
    case role::pre_candidate: return "pre_candidate";
    case role::candidate: return "candidate";
    case role::leader: return "leader";
  }
  return "?";
}

} // namespace dsync::raft
