#include "protocols/wal/recovery.hpp"

#include <algorithm>
#include <numeric>

namespace dsync::wal {

snapshot_choice choose_snapshot(const std::vector<snapshot_file_info>& files,
                                const std::vector<snapshot_reference>& refs) {
  snapshot_choice c;
  std::vector<size_t> order(files.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return files[a].metadata.index > files[b].metadata.index;
  });
  for (size_t i : order) {
    const auto& f = files[i];
    bool referenced = false;
    for (const auto& r : refs) {
      if (r.index != f.metadata.index)
        continue;
      if (r.term != f.metadata.term) {
        c.error = "snapshot file " + f.name + " has term " + std::to_string(f.metadata.term)
                  + " but the log names snapshot " + std::to_string(r.index) + " with term "
                  + std::to_string(r.term) + " at " + r.where;
        return c;
      }
      referenced = true;
    }
    if (referenced) {
      c.chosen = static_cast<int>(i);
      break;
    }
    c.ignored.push_back(i);
  }
  uint64_t chosen_index = 0;
  if (c.chosen >= 0) {
    chosen_index = files[static_cast<size_t>(c.chosen)].metadata.index;
  } else {
    // No snapshot file matches: only valid while the log still starts at the
    // implicit snapshot 0, whose configuration a checkpoint carries.
    const snapshot_reference* zero = nullptr;
    for (const auto& r : refs)
      if (r.index == 0 && r.from_checkpoint)
        zero = &r;
    if (zero == nullptr) {
      uint64_t newest = 0;
      std::string where = "nowhere";
      for (const auto& r : refs)
        if (r.index >= newest) {
          newest = r.index;
          where = r.where;
        }
      c.error = "no snapshot file matches the log: the log names snapshot " + std::to_string(newest)
                + " at " + where + " but there is no such snapshot file";
      return c;
    }
    c.bootstrap.index = 0;
    c.bootstrap.term = zero->term;
    c.bootstrap.config = zero->config;
  }
  for (const auto& r : refs)
    if (r.index > chosen_index) {
      c.error = "the log names snapshot " + std::to_string(r.index) + " (term "
                + std::to_string(r.term) + ") at " + r.where
                + " but its snapshot file is missing";
      return c;
    }
  c.ok = true;
  return c;
}

replayer::replayer(raft::snapshot_metadata base)
    : base_(std::move(base)), current_base_(base_.index) {}

std::string replayer::apply(const record& r) {
  switch (r.type) {
    case record_type::checkpoint:
      hard_ = r.hard;
      current_base_ = r.snapshot.index;
      return {};
    case record_type::hard_state:
      hard_ = r.hard;
      return {};
    case record_type::snapshot:
      if (r.snapshot.index > base_.index)
        return "snapshot record " + std::to_string(r.snapshot.index)
               + " is newer than the loaded snapshot " + std::to_string(base_.index);
      current_base_ = r.snapshot.index;
      // An installed snapshot replaced the whole log; a compaction at or
      // below the base changes nothing above it.
      if (r.kind == snapshot_kind::installed)
        entries_.clear();
      return {};
    case record_type::entries: {
      // What the append did when it was written (memory_storage::append
      // with the snapshot of that time): entries at or below that snapshot
      // were skipped; the first kept one cut the log there.
      const auto& es = r.entries;
      size_t skip = 0;
      while (skip < es.size() && es[skip].index <= current_base_)
        ++skip;
      if (skip == es.size())
        return {};
      uint64_t cut = es[skip].index;
      if (cut > last_index() + 1)
        return "entries start at index " + std::to_string(cut) + " but the log ends at index "
               + std::to_string(last_index()) + ": entries are missing (a deleted or lost segment?)";
      // Of the result, only what lies above the loaded snapshot is kept.
      entries_.resize(cut > base_.index ? cut - base_.index - 1 : 0);
      for (size_t i = skip; i < es.size(); ++i)
        if (es[i].index > base_.index)
          entries_.push_back(es[i]);
      return {};
    }
  }
  return "unknown record type";
}

} // namespace dsync::wal
