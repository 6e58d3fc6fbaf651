#include "protocols/raft/core.hpp"

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace dsync::raft {

namespace {

bool is_from_leader(message_type t) {
  return t == message_type::append_entries || t == message_type::heartbeat
         || t == message_type::install_snapshot;
}

bool is_vote_request(message_type t) {
  return t == message_type::request_vote || t == message_type::request_pre_vote;
}

void insert_sorted(std::vector<node_id>& ids, const node_id& id) {
  ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
}

void erase_sorted(std::vector<node_id>& ids, const node_id& id) {
  auto i = std::lower_bound(ids.begin(), ids.end(), id);
  if (i != ids.end() && *i == id)
    ids.erase(i);
}

// The k-th largest (1-based) of the values: the index a quorum of k has reached.
uint64_t kth_largest(std::vector<uint64_t> values, size_t k) {
  std::sort(values.begin(), values.end(), std::greater<>());
  return values[k - 1];
}

} // namespace

bool ready::empty() const {
  return !has_snapshot && entries.empty() && !has_hard_state && !has_compaction
         && messages.empty() && messages_after_append.empty() && committed_entries.empty()
         && read_states.empty() && !soft_state_changed;
}

void persist_ready(memory_storage& store, const ready& rd) {
  auto check = [](storage_errc err, const char* what) {
    if (err != storage_errc::ok)
      throw std::logic_error(std::string("raft: storage refused ") + what + ": " + to_string(err));
  };
  if (rd.has_snapshot)
    check(store.apply_snapshot(rd.snapshot), "snapshot");
  check(store.append(rd.entries), "entries");
  if (rd.has_hard_state)
    store.set_hard_state(rd.hard);
  if (rd.has_compaction)
    check(store.compact(rd.compaction), "compaction");
}

// ---- construction ------------------------------------------------------------

core::core(config cfg, const storage& store)
  : cfg_(std::move(cfg)), store_(store), log_(store), rng_(cfg_.seed) {
  if (auto err = cfg_.validate(); !err.empty())
    throw std::invalid_argument("raft config: " + err);
  auto init = store_.load_initial_state();
  auto snap_index = init.snapshot.index;
  if (store_.first_index() != snap_index + 1)
    throw std::invalid_argument("raft storage: first_index does not follow the snapshot");
  auto commit = std::max(init.hard.commit, snap_index);
  if (commit > log_.last_index())
    throw std::invalid_argument("raft storage: commit index " + std::to_string(commit)
                                + " beyond last index " + std::to_string(log_.last_index()));
  auto applied = std::max(cfg_.applied_index, snap_index);
  if (applied > commit)
    throw std::invalid_argument("raft config: applied_index " + std::to_string(applied)
                                + " beyond commit index " + std::to_string(commit));
  log_.set_committed(commit);
  log_.set_applied(applied);
  term_ = init.hard.term;
  vote_ = init.hard.vote;
  prev_hard_ = init.hard;
  handed_hard_ = init.hard;
  conf_history_.push_back(config_point{snap_index, init.snapshot.config});
  load_config_history();
  conf_ = conf_history_.back().config;
  become_follower(term_, node_id{});
  handed_soft_ = soft_state{leader_, state_};
}

void core::load_config_history() {
  // Configurations take effect when appended, so a restarting node must find
  // the newest one in its log, not only in its snapshot.
  auto lo = log_.first_index();
  auto hi = log_.last_index() + 1;
  std::vector<entry> page;
  while (lo < hi) {
    if (!log_.slice(lo, hi, 4ull << 20, 4096, page) || page.empty())
      throw std::invalid_argument("raft storage: cannot read entries from " + std::to_string(lo));
    for (const auto& e : page) {
      if (e.type != entry_type::conf_change)
        continue;
      conf_change_record rec;
      if (!decode_conf_change(e.data, rec))
        throw std::invalid_argument("raft storage: undecodable conf change at index "
                                    + std::to_string(e.index));
      conf_history_.push_back(config_point{e.index, rec.config});
    }
    lo = page.back().index + 1;
  }
}

const configuration& core::config_at(uint64_t index) const {
  for (auto i = conf_history_.rbegin(); i != conf_history_.rend(); ++i)
    if (i->index <= index)
      return i->config;
  return conf_history_.front().config;
}

const progress* core::progress_of(const node_id& peer) const {
  auto i = progress_.find(peer);
  return i == progress_.end() ? nullptr : &i->second;
}

// ---- role changes ------------------------------------------------------------

void core::reset_randomized_election_timeout() {
  randomized_election_ticks_ = cfg_.election_ticks + rng_.below(cfg_.election_ticks);
}

void core::reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_.clear();
  }
  leader_.clear();
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  abort_leader_transfer();
  votes_.clear();
  progress_.clear();
  pending_conf_index_ = 0;
  uncommitted_.clear();
  uncommitted_bytes_ = 0;
  broadcast_pending_ = false;
  heartbeat_pending_ = false;
  fail_reads();
}

void core::become_follower(uint64_t term, const node_id& leader) {
  reset(term);
  state_ = role::follower;
  leader_ = leader;
}

void core::become_pre_candidate() {
  // Pre-vote leaves term and vote alone: a failed pre-election disturbs nobody.
  reset(term_);
  state_ = role::pre_candidate;
}

void core::become_candidate() {
  reset(term_ + 1);
  vote_ = cfg_.id;
  state_ = role::candidate;
}

void core::become_leader() {
  reset(term_);
  state_ = role::leader;
  leader_ = cfg_.id;
  auto last = log_.last_index();
  for (const auto& member : conf_.members()) {
    if (member == cfg_.id)
      continue;
    auto [it, _] = progress_.emplace(member, progress(last + 1, cfg_.max_inflight_msgs,
                                                      cfg_.max_inflight_bytes,
                                                      !conf_.is_voter(member)));
    it->second.recent_active = true; // give everyone a full check-quorum round
  }
  // Any conf change in the uncommitted tail may still be in flight.
  pending_conf_index_ = last;
  // A no-op of the new term lets the leader learn the commit index (§5.4.2:
  // only entries of the current term are committed by counting) and serve
  // read-index requests (§6.4).
  append_leader_entry(entry{term_, last + 1, entry_type::noop, {}});
}

void core::campaign() {
  if (state_ == role::leader || !promotable())
    return;
  start_campaign(cfg_.pre_vote, false);
}

void core::start_campaign(bool pre_vote, bool transfer) {
  message_type type;
  uint64_t vote_term;
  if (pre_vote) {
    become_pre_candidate();
    type = message_type::request_pre_vote;
    vote_term = term_ + 1;
    poll(cfg_.id, true); // a pre-vote needs nothing durable
    if (state_ != role::pre_candidate)
      return; // single voter: already moved on
  } else {
    become_candidate();
    type = message_type::request_vote;
    vote_term = term_;
    // The own vote counts only once it is durable: see advance().
  }
  for (const auto& voter : conf_.voters) {
    if (voter == cfg_.id)
      continue;
    auto m = make_message(type, voter);
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = transfer;
    send(std::move(m));
  }
}

void core::poll(const node_id& from, bool granted) {
  votes_.emplace(from, granted);
  size_t yes = 0;
  size_t no = 0;
  for (const auto& voter : conf_.voters) {
    auto i = votes_.find(voter);
    if (i == votes_.end())
      continue;
    (i->second ? yes : no) += 1;
  }
  auto quorum = conf_.quorum();
  if (quorum > 0 && yes >= quorum) {
    if (state_ == role::pre_candidate)
      start_campaign(false, false);
    else if (state_ == role::candidate)
      become_leader();
  } else if (no > conf_.voters.size() - quorum) {
    become_follower(term_, node_id{});
  }
}

// ---- ticking -----------------------------------------------------------------

void core::tick() {
  if (state_ == role::leader)
    tick_heartbeat();
  else
    tick_election();
}

void core::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_ticks_) {
    election_elapsed_ = 0;
    start_campaign(cfg_.pre_vote, false);
  }
}

void core::tick_heartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  for (auto& [_, pr] : progress_)
    if (pr.state() == progress_state::snapshot)
      ++pr.transfer().ticks_since_send;
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      // §6.2: a leader that cannot reach a majority steps down, so that
      // clients on its side of a partition learn it and retry elsewhere.
      if (!quorum_active()) {
        become_follower(term_, node_id{});
        return;
      }
      for (auto& [_, pr] : progress_)
        pr.recent_active = false;
    }
    // §3.10: a transfer that did not finish within an election timeout failed.
    abort_leader_transfer();
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeat();
  }
}

bool core::quorum_active() const {
  size_t active = 0;
  for (const auto& voter : conf_.voters) {
    if (voter == cfg_.id) {
      ++active;
    } else if (auto i = progress_.find(voter); i != progress_.end() && i->second.recent_active) {
      ++active;
    }
  }
  return active >= conf_.quorum();
}

// ---- stepping ----------------------------------------------------------------

errc core::step(const message& m) {
  if (m.group != cfg_.group)
    return errc::wrong_group;
  if (m.to != cfg_.id)
    return errc::not_addressed;

  if (m.term > term_) {
    if (is_vote_request(m.type)) {
      // Leader stickiness (§4.2.3): while we hear from a leader, a vote
      // request comes from a disruptive server (removed, or partitioned and
      // back). A leader transfer is the one legitimate exception.
      bool in_lease = cfg_.check_quorum && !leader_.empty()
                      && election_elapsed_ < cfg_.election_ticks;
      if (in_lease && !m.transfer)
        return errc::ok;
    }
    if (m.type == message_type::request_pre_vote) {
      // A pre-vote does not change our term.
    } else if (m.type == message_type::request_pre_vote_response && !m.reject) {
      // Granted pre-votes carry the future term we asked about.
    } else {
      become_follower(m.term, is_from_leader(m.type) ? m.from : node_id{});
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) && is_from_leader(m.type)) {
      // A stale leader (e.g. back from a partition) may never hear a higher
      // term otherwise, since pre-vote/stickiness keep our term from reaching
      // it through elections: tell it.
      send(make_message(message_type::append_entries_response, m.from));
    } else if (is_vote_request(m.type)) {
      // §5.1: reject a stale request, and tell the candidate our term. Silence
      // would let a candidate that needs our vote fall further behind forever
      // (e.g. when we do not count it as a voter, so we never contact it).
      auto r = make_message(m.type == message_type::request_pre_vote
                              ? message_type::request_pre_vote_response
                              : message_type::request_vote_response,
                            m.from);
      r.reject = true;
      send(std::move(r));
    }
    return errc::ok;
  }

  if (is_vote_request(m.type)) {
    handle_vote_request(m);
    return errc::ok;
  }
  switch (state_) {
    case role::follower: step_follower(m); break;
    case role::pre_candidate:
    case role::candidate: step_candidate(m); break;
    case role::leader: step_leader(m); break;
  }
  return errc::ok;
}

void core::handle_vote_request(const message& m) {
  bool pre = m.type == message_type::request_pre_vote;
  bool can_vote = vote_ == m.from || (vote_.empty() && leader_.empty())
                  || (pre && m.term > term_);
  auto type = pre ? message_type::request_pre_vote_response : message_type::request_vote_response;
  auto r = make_message(type, m.from);
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    r.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.reject = true;
  }
  // The vote is part of the hard state: it must be durable before it is sent.
  send_after_append(std::move(r));
}

void core::step_follower(const message& m) {
  switch (m.type) {
    case message_type::append_entries:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_append_entries(m);
      break;
    case message_type::heartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_heartbeat(m);
      break;
    case message_type::install_snapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_install_snapshot(m);
      break;
    case message_type::timeout_now:
      // §3.10: the leader hands over; skip pre-vote, and mark the requests
      // so that voters in a lease still answer.
      if (promotable())
        start_campaign(false, true);
      break;
    default:
      break; // stale responses
  }
}

void core::step_candidate(const message& m) {
  auto my_response = state_ == role::pre_candidate ? message_type::request_pre_vote_response
                                                   : message_type::request_vote_response;
  if (is_from_leader(m.type)) {
    // A leader of our term exists (§5.2): follow it.
    become_follower(m.term, m.from);
    step_follower(m);
  } else if (m.type == my_response) {
    poll(m.from, !m.reject);
  }
}

void core::step_leader(const message& m) {
  auto i = progress_.find(m.from);
  if (i == progress_.end())
    return; // not a member (any more)
  switch (m.type) {
    case message_type::append_entries_response:
      handle_append_response(m, i->second);
      break;
    case message_type::heartbeat_response:
      handle_heartbeat_response(m, i->second);
      break;
    case message_type::install_snapshot_response:
      handle_snapshot_ack(m, i->second);
      break;
    default:
      break;
  }
}

// ---- follower side -----------------------------------------------------------

void core::handle_append_entries(const message& m) {
  auto r = make_message(message_type::append_entries_response, m.from);
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches any current leader.
    r.index = log_.committed();
    send_after_append(std::move(r));
    return;
  }
  if (!log_.match_term(m.index, m.log_term)) {
    // Log matching check failed (§5.3). Give the leader a hint so it can skip
    // a whole term per round trip instead of one entry.
    r.reject = true;
    r.index = m.index;
    auto last = log_.last_index();
    if (m.index > last) {
      r.hint_term = 0;
      r.hint_index = last + 1;
    } else {
      auto t = log_.term(m.index).value_or(0);
      auto first = m.index;
      // Entries up to the commit index match the leader: no need to look further back.
      while (first - 1 > log_.committed() && log_.term(first - 1).value_or(0) == t)
        --first;
      r.hint_term = t;
      r.hint_index = first;
    }
    send_after_append(std::move(r));
    return;
  }
  if (auto conflict = log_.find_conflict(m.entries); conflict != 0) {
    if (conflict <= log_.committed())
      throw std::logic_error("raft: leader " + m.from + " conflicts with committed entry "
                             + std::to_string(conflict));
    std::vector<entry> suffix(m.entries.begin() + static_cast<std::ptrdiff_t>(conflict - m.index - 1),
                              m.entries.end());
    log_.truncate_and_append(suffix);
    on_entries_appended(suffix);
  }
  auto last_new = m.index + m.entries.size();
  log_.commit_to(std::min(m.commit, last_new));
  r.index = last_new;
  // Acknowledges entries: only after they are durable.
  send_after_append(std::move(r));
}

void core::handle_heartbeat(const message& m) {
  // The leader sends min(our match, its commit): entries up to there match it.
  log_.commit_to(std::min(m.commit, log_.last_index()));
  auto r = make_message(message_type::heartbeat_response, m.from);
  r.context = m.context;
  send(std::move(r));
}

void core::handle_install_snapshot(const message& m) {
  const auto& meta = m.snapshot;
  auto installed = [&](uint64_t index) {
    rx_ = snapshot_receiver{};
    auto r = make_message(message_type::append_entries_response, m.from);
    r.index = index;
    send_after_append(std::move(r));
  };
  auto ack = [&](uint64_t offset, bool reject) {
    auto r = make_message(message_type::install_snapshot_response, m.from);
    r.index = meta.index;
    r.snapshot_offset = offset;
    r.reject = reject;
    send(std::move(r));
  };
  if (meta.index <= log_.committed()) {
    installed(log_.committed());
    return;
  }
  if (log_.match_term(meta.index, meta.term)) {
    // We already hold the snapshot's last entry, hence everything before it
    // (log matching): keep the log, just learn that it is committed.
    log_.commit_to(meta.index);
    installed(log_.committed());
    return;
  }
  bool same = rx_.active && rx_.from == m.from && rx_.term == m.term
              && rx_.metadata.index == meta.index && rx_.metadata.term == meta.term;
  if (!same) {
    rx_ = snapshot_receiver{};
    if (m.snapshot_offset != 0) {
      ack(0, true); // we lost the beginning (restart or new transfer): start over
      return;
    }
    rx_.active = true;
    rx_.from = m.from;
    rx_.term = m.term;
    rx_.metadata = meta;
  }
  if (m.snapshot_offset != rx_.data.size()) {
    // Duplicate (offset below) or gap (offset above): say where we are.
    ack(rx_.data.size(), m.snapshot_offset > rx_.data.size());
    return;
  }
  if (rx_.data.size() + m.snapshot_chunk.size() > cfg_.max_snapshot_bytes) {
    rx_ = snapshot_receiver{};
    return; // refuse: the leader retries, an operator must raise the limit
  }
  rx_.data += m.snapshot_chunk;
  if (!m.snapshot_done) {
    ack(rx_.data.size(), false);
    return;
  }
  raft::snapshot snap{rx_.metadata, std::move(rx_.data)};
  rx_ = snapshot_receiver{};
  log_.restore(std::move(snap));
  conf_history_.clear();
  conf_history_.push_back(config_point{meta.index, meta.config});
  set_config(meta.config);
  pending_compaction_.reset(); // superseded by the newer snapshot
  installed(meta.index);
}

// ---- leader side -------------------------------------------------------------

uint64_t core::next_from_hint(const message& m, const progress& pr) const {
  if (m.hint_term == 0)
    return m.hint_index; // follower's log is shorter
  // If we hold entries of the follower's conflicting term, its entries of
  // that term up to our last one are likely identical: resume after them.
  // Otherwise skip the follower's whole term.
  auto idx = std::min(m.index, log_.last_index());
  while (idx > pr.match()) {
    auto t = log_.term(idx);
    if (!t || *t < m.hint_term)
      break;
    if (*t == m.hint_term)
      return idx + 1;
    --idx;
  }
  return m.hint_index;
}

void core::handle_append_response(const message& m, progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    if (pr.maybe_decrease_to(m.index, next_from_hint(m, pr)))
      maybe_send_append(m.from, true);
    return;
  }
  bool was_paused = pr.is_paused();
  if (!pr.maybe_update(m.index)) {
    // A probe answered at the known match (the follower is simply up to
    // date) also proves the position: resume pipelining.
    if (pr.state() == progress_state::probe && m.index == pr.match()) {
      pr.become_replicate();
      while (maybe_send_append(m.from, false)) {
      }
    }
    return; // otherwise stale or duplicate
  }
  switch (pr.state()) {
    case progress_state::probe:
      pr.become_replicate();
      break;
    case progress_state::snapshot:
      if (pr.match() >= pr.pending_snapshot()) {
        pr.become_probe();
        pr.become_replicate();
      }
      break;
    case progress_state::replicate:
      pr.window_free_le(m.index);
      break;
  }
  if (maybe_commit()) {
    if (state_ != role::leader)
      return; // stepped down after committing its own removal; `pr` is gone
    broadcast_pending_ = true;
  } else if (was_paused) {
    maybe_send_append(m.from, false);
  }
  while (maybe_send_append(m.from, false)) {
  }
  if (state_ == role::leader && m.from == lead_transferee_ && pr.match() == log_.last_index())
    send_timeout_now(m.from);
}

void core::handle_heartbeat_response(const message& m, progress& pr) {
  pr.recent_active = true;
  pr.resume_probe();
  if (pr.state() == progress_state::snapshot) {
    // Chunks (or their acks) may be lost: resend after a silence.
    if (pr.transfer().ticks_since_send >= 2 * cfg_.heartbeat_ticks)
      send_snapshot_chunk(m.from, pr);
  } else {
    // A full window whose messages were lost would stall forever: let one more out.
    pr.window_free_first_if_full();
    // Behind: (re)send. Probing: an empty probe lets a caught-up follower
    // confirm its position and return to replicate.
    if (pr.match() < log_.last_index() || pr.state() == progress_state::probe)
      maybe_send_append(m.from, true);
  }
  if (m.context > 0 && conf_.is_voter(m.from)) {
    auto& acked = read_acks_[m.from];
    if (m.context > acked) {
      acked = m.context;
      process_reads();
    }
  }
}

void core::handle_snapshot_ack(const message& m, progress& pr) {
  pr.recent_active = true;
  if (pr.state() != progress_state::snapshot || m.index != pr.pending_snapshot())
    return;
  auto& tr = pr.transfer();
  auto size = tr.snap->data.size();
  auto offset = std::min<uint64_t>(m.snapshot_offset, size);
  if (m.reject) {
    tr.acked_offset = offset;
  } else if (offset > tr.acked_offset) {
    tr.acked_offset = offset;
  } else {
    return; // duplicate ack: the chunk after it is already on its way
  }
  send_snapshot_chunk(m.from, pr);
}

bool core::maybe_send_append(const node_id& to, bool send_if_empty) {
  auto i = progress_.find(to);
  if (i == progress_.end())
    return false;
  auto& pr = i->second;
  if (pr.is_paused())
    return false;
  auto prev = pr.next() - 1;
  auto prev_term = log_.term(prev);
  std::vector<entry> ents;
  if (!prev_term
      || !log_.slice(pr.next(), log_.last_index() + 1, cfg_.max_msg_bytes,
                     cfg_.max_entries_per_msg, ents))
    return send_snapshot(to, pr); // the entries it needs are compacted
  if (ents.empty() && !send_if_empty)
    return false;
  auto m = make_message(message_type::append_entries, to);
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  uint64_t bytes = 0;
  for (const auto& e : ents)
    bytes += entry_size_bytes(e);
  auto last = ents.empty() ? prev : ents.back().index;
  pr.sent_entries(last, ents.size(), bytes);
  m.entries = std::move(ents);
  send(std::move(m));
  return true;
}

bool core::send_snapshot(const node_id& to, progress& pr) {
  if (!pr.recent_active)
    return false; // do not ship a snapshot to a peer that seems down
  std::shared_ptr<const raft::snapshot> snap;
  if (store_.snapshot(snap) != storage_errc::ok || !snap)
    return false; // temporarily unavailable: retried on the next heartbeat response
  if (snap->metadata.index == 0)
    throw std::logic_error("raft: entries compacted but storage has no snapshot");
  auto index = snap->metadata.index;
  pr.become_snapshot(index, std::move(snap));
  send_snapshot_chunk(to, pr);
  return true;
}

void core::send_snapshot_chunk(const node_id& to, progress& pr) {
  auto& tr = pr.transfer();
  const auto& data = tr.snap->data;
  auto offset = std::min<uint64_t>(tr.acked_offset, data.size());
  auto len = std::min<uint64_t>(cfg_.snapshot_chunk_bytes, data.size() - offset);
  auto m = make_message(message_type::install_snapshot, to);
  m.snapshot = tr.snap->metadata;
  m.snapshot_offset = offset;
  m.snapshot_chunk = data.substr(offset, len);
  m.snapshot_done = offset + len == data.size();
  tr.ticks_since_send = 0;
  send(std::move(m));
}

void core::send_timeout_now(const node_id& to) {
  send(make_message(message_type::timeout_now, to));
}

void core::broadcast_append() {
  for (auto& [id, _] : progress_)
    if (maybe_send_append(id, true))
      while (maybe_send_append(id, false)) {
      }
}

void core::broadcast_heartbeat() {
  for (auto& [id, pr] : progress_) {
    auto m = make_message(message_type::heartbeat, id);
    m.commit = std::min(pr.match(), log_.committed());
    m.context = read_seq_;
    send(std::move(m));
  }
}

void core::flush_broadcasts() {
  if (state_ != role::leader) {
    broadcast_pending_ = heartbeat_pending_ = false;
    return;
  }
  if (broadcast_pending_)
    broadcast_append();
  if (heartbeat_pending_)
    broadcast_heartbeat();
  broadcast_pending_ = heartbeat_pending_ = false;
}

bool core::maybe_commit() {
  if (state_ != role::leader || conf_.voters.empty())
    return false;
  std::vector<uint64_t> matches;
  matches.reserve(conf_.voters.size());
  for (const auto& voter : conf_.voters) {
    if (voter == cfg_.id) {
      matches.push_back(log_.stable_last_index());
    } else {
      auto i = progress_.find(voter);
      matches.push_back(i == progress_.end() ? 0 : i->second.match());
    }
  }
  auto index = kth_largest(std::move(matches), conf_.quorum());
  // §5.4.2: only an entry of the current term is committed by counting
  // replicas; earlier ones follow indirectly (Figure 8).
  if (index <= log_.committed() || log_.term(index) != term_)
    return false;
  log_.commit_to(index);
  on_commit_advanced();
  return true;
}

void core::on_commit_advanced() {
  auto committed = log_.committed();
  while (!uncommitted_.empty() && uncommitted_.front().first <= committed) {
    uncommitted_bytes_ -= uncommitted_.front().second;
    uncommitted_.pop_front();
  }
  if (!deferred_reads_.empty() && committed_in_current_term()) {
    auto ids = std::move(deferred_reads_);
    deferred_reads_.clear();
    for (auto id : ids)
      register_read(id);
  }
  // §4.2.2: a leader removed from the configuration leads until the change
  // is committed, then steps down. Hand over to a caught-up voter so the
  // cluster need not wait for an election timeout.
  if (!conf_.is_voter(cfg_.id) && committed >= conf_history_.back().index) {
    for (const auto& [id, pr] : progress_) {
      if (conf_.is_voter(id) && pr.match() == log_.last_index()) {
        send_timeout_now(id);
        break;
      }
    }
    become_follower(term_, node_id{});
  }
}

bool core::committed_in_current_term() const {
  return log_.term(log_.committed()) == term_;
}

bool core::within_uncommitted_bounds(const entry& e) const {
  if (log_.last_index() - log_.committed() >= cfg_.max_uncommitted_entries)
    return false;
  // A single entry is always accepted when nothing is pending, so that an
  // entry up to max_entry_bytes can always make progress.
  return uncommitted_bytes_ == 0
         || uncommitted_bytes_ + entry_size_bytes(e) <= cfg_.max_uncommitted_bytes;
}

uint64_t core::append_leader_entry(entry e) {
  auto index = e.index;
  auto bytes = entry_size_bytes(e);
  std::vector<entry> one{std::move(e)};
  log_.truncate_and_append(one);
  uncommitted_.emplace_back(index, bytes);
  uncommitted_bytes_ += bytes;
  broadcast_pending_ = true;
  if (one.front().type == entry_type::conf_change)
    on_entries_appended(one);
  return index;
}

// ---- client requests ---------------------------------------------------------

result core::propose(std::string data) {
  if (state_ != role::leader)
    return result{errc::not_leader, leader_, 0, 0};
  if (!lead_transferee_.empty())
    return result{errc::leader_transfer_in_progress, cfg_.id, 0, 0};
  if (data.size() > cfg_.max_entry_bytes)
    return result{errc::entry_too_large, cfg_.id, 0, 0};
  entry e{term_, log_.last_index() + 1, entry_type::normal, std::move(data)};
  if (!within_uncommitted_bounds(e))
    return result{errc::too_many_uncommitted, cfg_.id, 0, 0};
  auto index = append_leader_entry(std::move(e));
  return result{errc::ok, cfg_.id, index, term_};
}

result core::propose_conf_change(const conf_change& cc) {
  if (state_ != role::leader)
    return result{errc::not_leader, leader_, 0, 0};
  if (!lead_transferee_.empty())
    return result{errc::leader_transfer_in_progress, cfg_.id, 0, 0};
  if (pending_conf_index_ > log_.committed())
    return result{errc::conf_change_in_progress, cfg_.id, 0, 0};
  // §4.1 (the fix from the raft-dev list): a new leader must commit an entry
  // of its term before changing the configuration, or a change from a
  // previous term that it does not know about could still be committed.
  if (!committed_in_current_term())
    return result{errc::leader_not_ready, cfg_.id, 0, 0};
  auto next = conf_;
  const auto& node = cc.node;
  switch (cc.type) {
    case conf_change_type::add_learner:
      if (node.empty() || next.contains(node))
        return result{errc::invalid_conf_change, cfg_.id, 0, 0};
      insert_sorted(next.learners, node);
      break;
    case conf_change_type::promote_learner: {
      if (!next.is_learner(node))
        return result{errc::invalid_conf_change, cfg_.id, 0, 0};
      auto pr = progress_.find(node);
      if (pr == progress_.end() || pr->second.match() < log_.committed())
        return result{errc::learner_not_caught_up, cfg_.id, 0, 0};
      erase_sorted(next.learners, node);
      insert_sorted(next.voters, node);
      break;
    }
    case conf_change_type::remove_node:
      if (!next.contains(node) || (next.is_voter(node) && next.voters.size() == 1))
        return result{errc::invalid_conf_change, cfg_.id, 0, 0};
      erase_sorted(next.voters, node);
      erase_sorted(next.learners, node);
      break;
  }
  entry e{term_, log_.last_index() + 1, entry_type::conf_change,
          encode_conf_change(conf_change_record{cc, next})};
  if (!within_uncommitted_bounds(e))
    return result{errc::too_many_uncommitted, cfg_.id, 0, 0};
  auto index = append_leader_entry(std::move(e));
  pending_conf_index_ = index;
  return result{errc::ok, cfg_.id, index, term_};
}

result core::transfer_leadership(const node_id& target) {
  if (state_ != role::leader)
    return result{errc::not_leader, leader_, 0, 0};
  if (target == cfg_.id) {
    abort_leader_transfer();
    return result{};
  }
  if (!conf_.is_voter(target) || progress_.count(target) == 0)
    return result{errc::unknown_node, cfg_.id, 0, 0};
  if (lead_transferee_ == target)
    return result{};
  lead_transferee_ = target;
  election_elapsed_ = 0; // the transfer must finish within one election timeout
  auto& pr = progress_.at(target);
  if (pr.match() == log_.last_index())
    send_timeout_now(target);
  else
    maybe_send_append(target, true);
  return result{};
}

void core::report_unreachable(const node_id& peer) {
  auto i = progress_.find(peer);
  if (state_ == role::leader && i != progress_.end()
      && i->second.state() == progress_state::replicate)
    i->second.become_probe();
}

void core::report_snapshot(const node_id& peer, bool ok) {
  (void) ok; // either way, resume probing: success shows in the next append response
  auto i = progress_.find(peer);
  if (state_ == role::leader && i != progress_.end()
      && i->second.state() == progress_state::snapshot)
    i->second.become_probe();
}

result core::compact(uint64_t index, std::string data) {
  auto stored_snapshot = store_.first_index() - 1;
  // One compaction at a time: one handed out is not on storage until advanced.
  if (index <= stored_snapshot || index > log_.applied() || log_.pending_snapshot()
      || barrier_outstanding_ || (pending_compaction_ && pending_compaction_->metadata.index >= index))
    return result{errc::invalid_compaction, {}, 0, 0};
  auto t = log_.term(index);
  if (!t)
    return result{errc::invalid_compaction, {}, 0, 0};
  pending_compaction_ = raft::snapshot{snapshot_metadata{index, *t, config_at(index)},
                                       std::move(data)};
  return result{errc::ok, {}, index, *t};
}

// ---- read index --------------------------------------------------------------

result core::read_index(uint64_t request_id) {
  if (state_ != role::leader)
    return result{errc::not_leader, leader_, 0, 0};
  if (pending_reads_.size() + deferred_reads_.size() >= cfg_.max_pending_reads)
    return result{errc::too_many_pending_reads, cfg_.id, 0, 0};
  // §6.4 step 1: until an entry of its term is committed, the leader does
  // not know the commit index of the cluster.
  if (!committed_in_current_term())
    deferred_reads_.push_back(request_id);
  else
    register_read(request_id);
  return result{errc::ok, cfg_.id, 0, 0};
}

void core::register_read(uint64_t request_id) {
  auto index = log_.committed();
  if (conf_.voters.size() == 1 && conf_.is_voter(cfg_.id)) {
    read_states_.push_back(read_state{request_id, index, true});
    return;
  }
  // §6.4 step 3: confirm leadership with a heartbeat round. One round (the
  // highest seq) answers every read registered before it.
  pending_reads_.push_back(pending_read{request_id, index, ++read_seq_});
  heartbeat_pending_ = true;
}

void core::process_reads() {
  if (pending_reads_.empty() || conf_.voters.empty())
    return;
  std::vector<uint64_t> acked;
  for (const auto& voter : conf_.voters) {
    if (voter == cfg_.id) {
      acked.push_back(read_seq_);
    } else {
      auto i = read_acks_.find(voter);
      acked.push_back(i == read_acks_.end() ? 0 : i->second);
    }
  }
  auto confirmed = kth_largest(std::move(acked), conf_.quorum());
  while (!pending_reads_.empty() && pending_reads_.front().seq <= confirmed) {
    const auto& r = pending_reads_.front();
    read_states_.push_back(read_state{r.request_id, r.index, true});
    pending_reads_.pop_front();
  }
}

void core::fail_reads() {
  for (const auto& r : pending_reads_)
    read_states_.push_back(read_state{r.request_id, 0, false});
  for (auto id : deferred_reads_)
    read_states_.push_back(read_state{id, 0, false});
  pending_reads_.clear();
  deferred_reads_.clear();
  read_acks_.clear();
  read_seq_ = 0;
}

// ---- configuration -----------------------------------------------------------

void core::on_entries_appended(const std::vector<entry>& ents) {
  if (ents.empty())
    return;
  auto first = ents.front().index;
  bool changed = false;
  // Entries from `first` on replaced whatever we had: configurations they
  // overwrote no longer apply (§4.1: the latest configuration in the log).
  while (conf_history_.size() > 1 && conf_history_.back().index >= first) {
    conf_history_.pop_back();
    changed = true;
  }
  for (const auto& e : ents) {
    if (e.type != entry_type::conf_change)
      continue;
    conf_change_record rec;
    if (!decode_conf_change(e.data, rec))
      throw std::logic_error("raft: undecodable conf change at index " + std::to_string(e.index));
    conf_history_.push_back(config_point{e.index, std::move(rec.config)});
    changed = true;
  }
  if (changed)
    set_config(conf_history_.back().config);
}

void core::set_config(const configuration& c) {
  conf_ = c;
  if (state_ != role::leader)
    return;
  for (auto i = progress_.begin(); i != progress_.end();) {
    if (!conf_.contains(i->first))
      i = progress_.erase(i);
    else
      ++i;
  }
  for (const auto& member : conf_.members()) {
    if (member == cfg_.id)
      continue;
    auto learner = !conf_.is_voter(member);
    auto i = progress_.find(member);
    if (i == progress_.end()) {
      // Probe from our last entry; a new, empty follower answers with a
      // hint that sends us straight to its end.
      auto [it, _] = progress_.emplace(member, progress(std::max<uint64_t>(log_.last_index(), 1),
                                                        cfg_.max_inflight_msgs,
                                                        cfg_.max_inflight_bytes, learner));
      it->second.recent_active = true;
      broadcast_pending_ = true;
    } else {
      i->second.set_learner(learner);
    }
  }
  for (auto i = read_acks_.begin(); i != read_acks_.end();)
    i = conf_.is_voter(i->first) ? std::next(i) : read_acks_.erase(i);
  if (!lead_transferee_.empty() && !conf_.is_voter(lead_transferee_))
    abort_leader_transfer();
  // The quorum changed: commitment and pending reads may now be decided.
  if (maybe_commit() && state_ == role::leader)
    broadcast_pending_ = true;
  if (state_ == role::leader)
    process_reads();
}

// ---- ready / advance ---------------------------------------------------------

message core::make_message(message_type type, const node_id& to) const {
  message m;
  m.type = type;
  m.group = cfg_.group;
  m.from = cfg_.id;
  m.to = to;
  m.term = term_;
  return m;
}

bool core::has_ready() const {
  bool barrier_next = log_.pending_snapshot() != nullptr || pending_compaction_.has_value();
  if (outstanding_readies() > 0 && (barrier_outstanding_ || barrier_next))
    return false;
  return log_.has_entries_to_persist() || barrier_next || log_.has_next_committed_entries()
         || current_hard_state() != handed_hard_ || !msgs_.empty() || !msgs_after_append_.empty()
         || !read_states_.empty() || (state_ == role::leader && (broadcast_pending_ || heartbeat_pending_))
         || !(soft_state{leader_, state_} == handed_soft_);
}

raft::ready core::ready() {
  if (outstanding_readies() > 0
      && (barrier_outstanding_ || log_.pending_snapshot() != nullptr || pending_compaction_))
    throw std::logic_error("raft: ready() called while a snapshot or compaction waits for the "
                           "outstanding batches (or they wait for it)");
  flush_broadcasts();
  raft::ready rd;
  rd.seq = ++handed_seq_;
  rd.entries = log_.entries_to_persist();
  log_.accept_persisting();
  if (const auto* snap = log_.pending_snapshot()) {
    rd.has_snapshot = true;
    rd.snapshot = *snap;
  }
  rd.committed_entries = log_.next_committed_entries(cfg_.max_apply_bytes_per_ready);
  if (!rd.committed_entries.empty())
    log_.accept_applying(rd.committed_entries.back().index);
  auto hs = current_hard_state();
  if (hs != handed_hard_) {
    rd.has_hard_state = true;
    rd.hard = hs;
  }
  if (pending_compaction_ && !rd.has_snapshot) {
    rd.has_compaction = true;
    rd.compaction = std::move(*pending_compaction_);
    pending_compaction_.reset();
  }
  rd.must_sync = !rd.entries.empty() || rd.has_snapshot || rd.has_compaction
                 || (rd.has_hard_state && (hs.term != handed_hard_.term || hs.vote != handed_hard_.vote));
  handed_hard_ = hs;
  barrier_outstanding_ = rd.has_snapshot || rd.has_compaction;
  rd.messages = std::move(msgs_);
  rd.messages_after_append = std::move(msgs_after_append_);
  msgs_.clear();
  msgs_after_append_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.soft = soft_state{leader_, state_};
  rd.soft_state_changed = !(rd.soft == handed_soft_);
  handed_soft_ = rd.soft;
  return rd;
}

void core::advance(const raft::ready& rd) {
  if (outstanding_readies() == 0)
    throw std::logic_error("raft: advance() without an outstanding ready()");
  if (rd.seq != advanced_seq_ + 1)
    throw std::logic_error("raft: advance() of batch " + std::to_string(rd.seq) + ", expected "
                           + std::to_string(advanced_seq_ + 1));
  ++advanced_seq_;
  if (rd.has_snapshot || rd.has_compaction)
    barrier_outstanding_ = false;
  if (rd.has_hard_state)
    prev_hard_ = rd.hard;
  if (rd.has_snapshot) {
    log_.stable_snapshot_to(rd.snapshot.metadata.index);
    log_.set_applied(std::max(log_.applied(), rd.snapshot.metadata.index));
  }
  if (!rd.entries.empty())
    log_.stable_to(rd.entries.back().index, rd.entries.back().term);
  if (rd.has_compaction) {
    // Configurations before the snapshot are no longer needed.
    auto index = rd.compaction.metadata.index;
    size_t keep = 0;
    while (keep + 1 < conf_history_.size() && conf_history_[keep + 1].index <= index)
      ++keep;
    conf_history_.erase(conf_history_.begin(),
                        conf_history_.begin() + static_cast<std::ptrdiff_t>(keep));
  }
  if (!rd.committed_entries.empty())
    log_.applied_to(rd.committed_entries.back().index);
  if (state_ == role::leader) {
    // Our own entries count toward a majority only once durable.
    if (maybe_commit() && state_ == role::leader)
      broadcast_pending_ = true;
  } else if (state_ == role::candidate && votes_.count(cfg_.id) == 0
             && prev_hard_.term == term_ && prev_hard_.vote == cfg_.id) {
    poll(cfg_.id, true); // our vote for ourselves is now durable
  }
}

} // namespace dsync::raft
