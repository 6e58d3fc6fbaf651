#include "protocols/raft/log.hpp"

#include <algorithm>
#include <stdexcept>

namespace dsync::raft {

raft_log::raft_log(const storage& store)
  : store_(store), unstable_offset_(store.last_index() + 1), persisting_(store.last_index()) {
  committed_ = store.first_index() - 1;
  applied_ = committed_;
  applying_ = applied_;
}

uint64_t raft_log::first_index() const {
  return pending_snapshot_ ? pending_snapshot_->metadata.index + 1 : store_.first_index();
}

uint64_t raft_log::last_index() const {
  if (!unstable_.empty())
    return unstable_offset_ + unstable_.size() - 1;
  if (pending_snapshot_)
    return pending_snapshot_->metadata.index;
  return store_.last_index();
}

std::optional<uint64_t> raft_log::term(uint64_t index) const {
  if (index + 1 < first_index() || index > last_index())
    return std::nullopt;
  if (pending_snapshot_ && index == pending_snapshot_->metadata.index)
    return pending_snapshot_->metadata.term;
  if (index >= unstable_offset_)
    return unstable_[index - unstable_offset_].term;
  uint64_t t = 0;
  auto err = store_.term(index, t);
  if (err == storage_errc::ok)
    return t;
  if (err == storage_errc::compacted)
    return std::nullopt; // compacted concurrently with our bounds check
  throw std::logic_error("raft_log: storage lost entry " + std::to_string(index) + ": "
                         + to_string(err));
}

uint64_t raft_log::last_term() const { return term(last_index()).value_or(0); }

bool raft_log::match_term(uint64_t index, uint64_t t) const {
  auto mine = term(index);
  return mine && *mine == t;
}

bool raft_log::is_up_to_date(uint64_t idx, uint64_t t) const {
  auto lt = last_term();
  return t > lt || (t == lt && idx >= last_index());
}

uint64_t raft_log::find_conflict(const std::vector<entry>& ents) const {
  auto first = first_index();
  for (const auto& e : ents) {
    if (e.index < first)
      continue;
    if (!match_term(e.index, e.term))
      return e.index;
  }
  return 0;
}

void raft_log::truncate_and_append(const std::vector<entry>& ents) {
  if (ents.empty())
    return;
  auto after = ents.front().index - 1;
  if (after < committed_)
    throw std::logic_error("raft_log: truncating committed entry " + std::to_string(after + 1)
                           + " (committed " + std::to_string(committed_) + ")");
  if (after > last_index())
    throw std::logic_error("raft_log: gap before appended entry " + std::to_string(after + 1));
  if (after + 1 == unstable_offset_ + unstable_.size()) {
    // Plain append after the current tail.
  } else if (after + 1 <= unstable_offset_) {
    // Replaces stable entries too: the storage overwrites them when it
    // persists this tail (entries overwrite from their first index).
    unstable_offset_ = after + 1;
    unstable_.clear();
  } else {
    unstable_.resize(after + 1 - unstable_offset_);
  }
  unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  // Replaced entries may have been handed out already: the new ones go out again.
  persisting_ = std::min(persisting_, after);
}

std::vector<entry> raft_log::entries_to_persist() const {
  auto from = std::max(persisting_ + 1, unstable_offset_);
  if (from >= unstable_offset_ + unstable_.size())
    return {};
  return {unstable_.begin() + static_cast<std::ptrdiff_t>(from - unstable_offset_), unstable_.end()};
}

bool raft_log::has_entries_to_persist() const {
  return std::max(persisting_ + 1, unstable_offset_) < unstable_offset_ + unstable_.size();
}

bool raft_log::slice(uint64_t lo, uint64_t hi, uint64_t max_bytes, uint64_t max_count,
                     std::vector<entry>& out) const {
  out.clear();
  if (lo < first_index())
    return false;
  hi = std::min(hi, last_index() + 1);
  if (lo >= hi)
    return true;
  hi = lo + std::min(hi - lo, max_count);
  uint64_t bytes = 0;
  if (lo < unstable_offset_) {
    auto stable_hi = std::min(hi, unstable_offset_);
    auto err = store_.entries(lo, stable_hi, max_bytes, out);
    if (err == storage_errc::compacted)
      return false;
    if (err != storage_errc::ok)
      throw std::logic_error("raft_log: storage cannot read entries "
                             + std::to_string(lo) + ".." + std::to_string(stable_hi) + ": "
                             + to_string(err));
    for (const auto& e : out)
      bytes += entry_size_bytes(e);
    if (out.size() < stable_hi - lo)
      return true; // size limit reached inside the stable part
  }
  for (auto i = std::max(lo, unstable_offset_); i < hi; ++i) {
    const auto& e = unstable_[i - unstable_offset_];
    bytes += entry_size_bytes(e);
    if (!out.empty() && bytes > max_bytes)
      break;
    out.push_back(e);
  }
  return true;
}

void raft_log::commit_to(uint64_t index) {
  if (index <= committed_)
    return;
  if (index > last_index())
    throw std::logic_error("raft_log: commit " + std::to_string(index) + " beyond last index "
                           + std::to_string(last_index()));
  committed_ = index;
}

void raft_log::applied_to(uint64_t index) {
  if (index <= applied_)
    return;
  if (index > committed_)
    throw std::logic_error("raft_log: applied " + std::to_string(index) + " beyond commit "
                           + std::to_string(committed_));
  applied_ = index;
}

std::vector<entry> raft_log::next_committed_entries(uint64_t max_bytes) const {
  std::vector<entry> out;
  auto done = std::max(applied_, applying_);
  if (pending_snapshot_ || done >= committed_)
    return out;
  auto lo = std::max(done + 1, first_index());
  if (!slice(lo, committed_ + 1, max_bytes, UINT64_MAX, out))
    throw std::logic_error("raft_log: committed entries compacted before being applied");
  return out;
}

bool raft_log::has_next_committed_entries() const {
  return !pending_snapshot_ && std::max(applied_, applying_) < committed_;
}

void raft_log::stable_to(uint64_t index, uint64_t t) {
  if (index < unstable_offset_ || index >= unstable_offset_ + unstable_.size())
    return;
  if (unstable_[index - unstable_offset_].term != t)
    return;
  unstable_.erase(unstable_.begin(),
                  unstable_.begin() + static_cast<std::ptrdiff_t>(index + 1 - unstable_offset_));
  unstable_offset_ = index + 1;
}

void raft_log::stable_snapshot_to(uint64_t index) {
  if (pending_snapshot_ && pending_snapshot_->metadata.index == index)
    pending_snapshot_.reset();
}

void raft_log::restore(raft::snapshot snap) {
  committed_ = snap.metadata.index;
  unstable_.clear();
  unstable_offset_ = snap.metadata.index + 1;
  persisting_ = snap.metadata.index;
  pending_snapshot_ = std::move(snap);
}

} // namespace dsync::raft
