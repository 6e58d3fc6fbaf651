#include "protocols/raft/storage.hpp"

namespace dsync::raft {

const char* to_string(storage_errc x) {
  switch (x) {
    case storage_errc::ok: return "ok";
    case storage_errc::compacted: return "compacted";
    case storage_errc::unavailable: return "unavailable";
    case storage_errc::snapshot_temporarily_unavailable: return "snapshot_temporarily_unavailable";
    case storage_errc::out_of_date: return "out_of_date";
  }
  return "?";
}

memory_storage::memory_storage() : snapshot_(std::make_shared<raft::snapshot>()) {}

memory_storage::memory_storage(configuration bootstrap) {
  auto snap = std::make_shared<raft::snapshot>();
  snap->metadata.config = std::move(bootstrap);
  snapshot_ = std::move(snap);
}

initial_state memory_storage::load_initial_state() const {
  return initial_state{hard_, snapshot_->metadata};
}

uint64_t memory_storage::first_index() const { return snapshot_->metadata.index + 1; }

uint64_t memory_storage::last_index() const {
  return snapshot_->metadata.index + entries_.size();
}

storage_errc memory_storage::term(uint64_t index, uint64_t& out) const {
  auto snap_index = snapshot_->metadata.index;
  if (index < snap_index)
    return storage_errc::compacted;
  if (index > last_index())
    return storage_errc::unavailable;
  out = index == snap_index ? snapshot_->metadata.term : entries_[index - snap_index - 1].term;
  return storage_errc::ok;
}

storage_errc memory_storage::entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                     std::vector<entry>& out) const {
  out.clear();
  if (lo < first_index())
    return storage_errc::compacted;
  if (hi > last_index() + 1 || lo > hi)
    return storage_errc::unavailable;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const auto& e = entries_[i - first_index()];
    bytes += entry_size_bytes(e);
    if (!out.empty() && bytes > max_bytes)
      break;
    out.push_back(e);
  }
  return storage_errc::ok;
}

storage_errc memory_storage::snapshot(std::shared_ptr<const raft::snapshot>& out) const {
  out = snapshot_;
  return storage_errc::ok;
}

void memory_storage::set_hard_state(const hard_state& hs) { hard_ = hs; }

storage_errc memory_storage::append(const std::vector<entry>& ents) {
  if (ents.empty())
    return storage_errc::ok;
  auto first = first_index();
  if (ents.front().index > last_index() + 1)
    return storage_errc::unavailable;
  size_t skip = 0;
  while (skip < ents.size() && ents[skip].index < first)
    ++skip; // already covered by the snapshot
  if (skip == ents.size())
    return storage_errc::ok;
  entries_.resize(ents[skip].index - first); // drop the conflicting suffix
  entries_.insert(entries_.end(), ents.begin() + static_cast<std::ptrdiff_t>(skip), ents.end());
  return storage_errc::ok;
}

storage_errc memory_storage::apply_snapshot(raft::snapshot snap) {
  if (snap.metadata.index <= snapshot_->metadata.index)
    return storage_errc::out_of_date;
  entries_.clear();
  snapshot_ = std::make_shared<raft::snapshot>(std::move(snap));
  return storage_errc::ok;
}

storage_errc memory_storage::compact(raft::snapshot snap) {
  auto index = snap.metadata.index;
  auto old_index = snapshot_->metadata.index;
  if (index <= old_index)
    return storage_errc::out_of_date;
  if (index > last_index())
    return storage_errc::unavailable;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(index - old_index));
  snapshot_ = std::make_shared<raft::snapshot>(std::move(snap));
  return storage_errc::ok;
}

} // namespace dsync::raft
