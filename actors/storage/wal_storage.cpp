#include "actors/storage/wal_storage.hpp"

#include <algorithm>
#include <stdexcept>

#include "protocols/wal/format.hpp"
#include "protocols/wal/recovery.hpp"

namespace dsync::storage {

namespace {

// Entries records are kept well below the segment size so that a large
// batch spreads over segments instead of overfilling one.
constexpr uint64_t entries_record_target_bytes = 1ull << 20;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip_trailing_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  return dir;
}

} // namespace

// ---- construction and recovery -----------------------------------------------------

wal_storage::wal_storage(std::string dir, wal_options opts)
    : dir_(strip_trailing_slashes(std::move(dir))), opts_(std::move(opts)),
      fs_(opts_.fs ? opts_.fs : posix_file_system()) {
  if (dir_.empty())
    throw std::invalid_argument("wal_storage: empty directory name");
  if (opts_.segment_size_bytes < 4096)
    throw std::invalid_argument("wal_storage: segment_size_bytes must be at least 4096, got "
                                + std::to_string(opts_.segment_size_bytes));
  recover();
}

wal_storage::~wal_storage() = default;

void wal_storage::refuse(const std::string& what) const {
  throw storage_error("wal_storage: refusing to open " + dir_ + ": " + what);
}

void wal_storage::start_new_log() {
  raft::snapshot_metadata zero;
  zero.config = opts_.bootstrap;
  current_ = create_segment(1, 1, raft::hard_state{}, zero);
  segments_.push_back(segment_info{1, 1, wal::segment_file_name(1, 1)});
  next_seq_ = 2;
  auto snap = std::make_shared<raft::snapshot>();
  snap->metadata = zero;
  snapshot_ = std::move(snap);
  report_.created = true;
  report_.notes.push_back("no log in " + dir_ + ": started a new one");
}

void wal_storage::recover() {
  fs_->create_dir(dir_);
  std::vector<segment_info> segs;
  std::vector<std::pair<uint64_t, std::string>> snap_names;
  std::vector<std::string> temps;
  for (auto& name : fs_->list_dir(dir_)) {
    uint64_t a = 0;
    uint64_t b = 0;
    if (ends_with(name, wal::temp_suffix))
      temps.push_back(name);
    else if (wal::parse_segment_file_name(name, a, b))
      segs.push_back(segment_info{a, b, name});
    else if (wal::parse_snapshot_file_name(name, a))
      snap_names.emplace_back(a, name);
    else
      report_.notes.push_back("ignored unknown file " + name);
  }
  std::sort(segs.begin(), segs.end(),
            [](const segment_info& x, const segment_info& y) { return x.seq < y.seq; });
  std::sort(snap_names.begin(), snap_names.end());

  auto remove_temps = [&] {
    for (const auto& t : temps) {
      fs_->remove(path(t));
      report_.notes.push_back("removed unfinished file " + t);
    }
  };

  if (segs.empty()) {
    if (!snap_names.empty())
      refuse("snapshot file " + snap_names.back().second
             + " exists but there is no log segment (wal-*.log): the log is missing");
    remove_temps();
    start_new_log();
    return;
  }
  for (size_t i = 1; i < segs.size(); ++i)
    if (segs[i].seq != segs[i - 1].seq + 1)
      refuse("log segment with sequence number " + std::to_string(segs[i - 1].seq + 1)
             + " is missing (between " + segs[i - 1].name + " and " + segs[i].name + ")");

  // Snapshot files: every one must verify; which one counts is decided below.
  std::vector<raft::snapshot> snaps;
  std::vector<wal::snapshot_file_info> infos;
  for (const auto& [index, name] : snap_names) {
    auto bytes = fs_->read_file(path(name));
    raft::snapshot s;
    std::string error;
    if (!wal::decode_snapshot_file(bytes, s, error))
      refuse(path(name) + ": " + error);
    if (s.metadata.index != index)
      refuse(path(name) + ": holds snapshot index " + std::to_string(s.metadata.index)
             + ", not the index in its name");
    infos.push_back(wal::snapshot_file_info{name, s.metadata});
    snaps.push_back(std::move(s));
  }

  // Pass 1: validate every segment, find the torn tail and the snapshots the
  // log names.
  std::vector<wal::snapshot_reference> refs;
  uint64_t torn_at = 0;
  uint64_t torn_file_size = 0;
  std::string torn_problem;
  bool torn = false;
  auto where = [this](const segment_info& s, uint64_t offset) {
    return path(s.name) + " offset " + std::to_string(offset);
  };
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& seg = segs[i];
    bool last = i + 1 == segs.size();
    auto bytes = fs_->read_file(path(seg.name));
    auto scan = wal::scan_segment(bytes);
    switch (scan.end) {
      case wal::scan_end::bad_header: refuse(where(seg, 0) + ": " + scan.problem);
      case wal::scan_end::corrupt:
        refuse(where(seg, scan.bad_offset) + ": " + scan.problem
               + " (corruption in the middle of the log)");
      case wal::scan_end::torn_tail:
        if (!last)
          refuse(where(seg, scan.bad_offset) + ": " + scan.problem + " in a segment that is not"
                 + " the last one (segments are synced before the next is started)");
        torn = true;
        torn_at = scan.valid_bytes;
        torn_file_size = bytes.size();
        torn_problem = scan.problem;
        break;
      case wal::scan_end::clean: break;
    }
    if (scan.header.seq != seg.seq || scan.header.first_index != seg.first_index)
      refuse(where(seg, 0) + ": header says seq " + std::to_string(scan.header.seq)
             + " first index " + std::to_string(scan.header.first_index)
             + ", which does not match the file name");
    if (scan.records.empty() || scan.records.front().rec.type != wal::record_type::checkpoint)
      refuse(where(seg, wal::segment_header_bytes) + ": segment does not start with a checkpoint"
             + " record");
    for (const auto& lr : scan.records) {
      const auto& r = lr.rec;
      if (r.type == wal::record_type::checkpoint)
        refs.push_back(wal::snapshot_reference{r.snapshot.index, r.snapshot.term, true,
                                               r.snapshot.config, where(seg, lr.offset)});
      else if (r.type == wal::record_type::snapshot)
        refs.push_back(wal::snapshot_reference{r.snapshot.index, r.snapshot.term, false, {},
                                               where(seg, lr.offset)});
    }
  }

  auto choice = wal::choose_snapshot(infos, refs);
  if (!choice.ok)
    refuse(choice.error);
  std::shared_ptr<raft::snapshot> base;
  if (choice.chosen >= 0) {
    base = std::make_shared<raft::snapshot>(std::move(snaps[static_cast<size_t>(choice.chosen)]));
  } else {
    base = std::make_shared<raft::snapshot>();
    base->metadata = choice.bootstrap;
  }
  snaps.clear();

  // Pass 2: replay on top of the chosen snapshot, from the newest segment
  // that starts at or before its index + 1 (recovery.hpp, rule W4). Older
  // ones hold nothing the snapshot does not cover; they are still there
  // because sync() did not get to delete them, or because a crash undid a
  // deletion. The next sync() deletes them.
  const uint64_t snap_index = base->metadata.index;
  size_t start = segs.size();
  for (size_t i = 0; i < segs.size(); ++i)
    if (segs[i].first_index <= snap_index + 1)
      start = i;
  if (start == segs.size())
    refuse(where(segs.front(), 0) + ": the oldest segment starts at index "
           + std::to_string(segs.front().first_index) + " but the snapshot ends at index "
           + std::to_string(snap_index) + ": the entries in between are missing");
  if (start > 0)
    report_.notes.push_back(std::to_string(start) + " segment(s) from " + segs.front().name
                            + " on are covered by snapshot " + std::to_string(snap_index)
                            + ": not replayed, deleted by the next sync");
  wal::replayer replay{base->metadata};
  uint64_t last_segment_records = 0;
  for (size_t i = start; i < segs.size(); ++i) {
    const auto& seg = segs[i];
    auto scan = wal::scan_segment(fs_->read_file(path(seg.name)));
    for (const auto& lr : scan.records) {
      auto error = replay.apply(lr.rec);
      if (!error.empty())
        refuse(where(seg, lr.offset) + ": " + error);
    }
    report_.records += scan.records.size();
    last_segment_records = scan.records.size();
  }

  // The directory is trusted: now clean up what recovery dropped.
  const auto& last = segs.back();
  bool dir_changed = false;
  if (torn) {
    fs_->truncate(path(last.name), torn_at);
    report_.dropped_bytes = torn_file_size - torn_at;
    report_.notes.push_back(last.name + ": dropped " + std::to_string(torn_file_size - torn_at)
                            + " bytes at offset " + std::to_string(torn_at)
                            + " (torn tail: " + torn_problem + ")");
  }
  for (size_t i : choice.ignored) {
    fs_->remove(path(infos[i].name));
    dir_changed = true;
    report_.notes.push_back("removed " + infos[i].name
                            + ": the log holds no record of it (a crash before the log was synced)");
  }
  if (!temps.empty())
    dir_changed = true;
  remove_temps();
  if (dir_changed)
    fs_->sync_dir(dir_);

  for (size_t i = 0; i < infos.size(); ++i)
    if (std::find(choice.ignored.begin(), choice.ignored.end(), i) == choice.ignored.end())
      snapshot_files_.push_back(infos[i].metadata.index);
  std::sort(snapshot_files_.begin(), snapshot_files_.end());

  hard_ = replay.hard();
  entries_ = std::move(replay.entries());
  logged_snapshot_index_ = base->metadata.index;
  report_.snapshot_index = base->metadata.index;
  report_.snapshot_term = base->metadata.term;
  report_.segments = segs.size() - start;
  report_.entries = entries_.size();
  snapshot_ = std::move(base);
  segments_ = std::move(segs);
  next_seq_ = segments_.back().seq + 1;
  segment_data_records_ = last_segment_records > 0 ? last_segment_records - 1 : 0;
  current_ = fs_->open_for_append(path(segments_.back().name));
}

// ---- reads -----------------------------------------------------------------------------

raft::initial_state wal_storage::load_initial_state() const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  return raft::initial_state{hard_, snapshot_->metadata};
}

uint64_t wal_storage::first_index() const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  return snapshot_->metadata.index + 1;
}

uint64_t wal_storage::last_index() const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  return snapshot_->metadata.index + entries_.size();
}

raft::storage_errc wal_storage::term(uint64_t index, uint64_t& out) const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  uint64_t snap_index = snapshot_->metadata.index;
  if (index < snap_index)
    return raft::storage_errc::compacted;
  if (index > snap_index + entries_.size())
    return raft::storage_errc::unavailable;
  out = index == snap_index ? snapshot_->metadata.term : entries_[index - snap_index - 1].term;
  return raft::storage_errc::ok;
}

raft::storage_errc wal_storage::entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                        std::vector<raft::entry>& out) const {
  out.clear();
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  uint64_t first = snapshot_->metadata.index + 1;
  uint64_t last = snapshot_->metadata.index + entries_.size();
  if (lo < first)
    return raft::storage_errc::compacted;
  if (hi > last + 1 || lo > hi)
    return raft::storage_errc::unavailable;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const auto& e = entries_[i - first];
    bytes += raft::entry_size_bytes(e);
    if (!out.empty() && bytes > max_bytes)
      break;
    out.push_back(e);
  }
  return raft::storage_errc::ok;
}

raft::storage_errc wal_storage::snapshot(std::shared_ptr<const raft::snapshot>& out) const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  out = snapshot_;
  return raft::storage_errc::ok;
}

raft::hard_state wal_storage::get_hard_state() const {
  std::shared_lock<std::shared_mutex> lock{view_mutex_};
  return hard_;
}

wal_stats wal_storage::stats() const {
  std::lock_guard<std::mutex> lock{io_mutex_};
  return stats_;
}

// ---- writer internals ---------------------------------------------------------------------

void wal_storage::check_failed() const {
  std::lock_guard<std::mutex> lock{io_mutex_};
  if (!failure_.empty())
    throw storage_error("wal_storage " + dir_ + " failed earlier and must not be used: "
                        + failure_);
}

void wal_storage::fail(const storage_error& e) {
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    if (failure_.empty())
      failure_ = e.what();
  }
  pending_.clear();
  pending_records_ = 0;
  throw storage_error("wal_storage " + dir_ + ": " + e.what(), e.sys_errno());
}

std::shared_ptr<writable_file> wal_storage::create_segment(uint64_t seq, uint64_t first_index,
                                                           const raft::hard_state& hard,
                                                           const raft::snapshot_metadata& snap) {
  auto name = wal::segment_file_name(seq, first_index);
  auto temp = name + std::string(wal::temp_suffix);
  auto bytes = wal::encode_segment_header(wal::segment_header{seq, first_index});
  wal::append_checkpoint_record(bytes, hard, snap);
  {
    auto f = fs_->create_file(path(temp));
    f->append(bytes);
    f->sync();
  }
  // Renamed only once complete, so every wal-*.log has a valid header and
  // checkpoint, and the name is durable before any record in it can be.
  fs_->rename(path(temp), path(name));
  fs_->sync_dir(dir_);
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    stats_.wal_bytes_written += bytes.size();
    stats_.fsyncs += 2;
    stats_.segments_created += 1;
  }
  return fs_->open_for_append(path(name));
}

void wal_storage::roll(uint64_t next_first_index) {
  // The finished segment is synced first: recovery treats a torn record in
  // any segment but the last as corruption.
  current_->sync();
  uint64_t seq = next_seq_;
  auto file = create_segment(seq, next_first_index, hard_, snapshot_->metadata);
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    stats_.fsyncs += 1;
    segments_.push_back(segment_info{seq, next_first_index,
                                     wal::segment_file_name(seq, next_first_index)});
    current_ = std::move(file);
  }
  ++next_seq_;
  segment_data_records_ = 0;
}

void wal_storage::emit(std::string&& record, uint64_t last_index_before) {
  uint64_t size = current_->size() + pending_.size();
  if (segment_data_records_ + pending_records_ > 0
      && size + record.size() > opts_.segment_size_bytes) {
    flush();
    roll(last_index_before + 1);
  }
  pending_ += record;
  ++pending_records_;
}

void wal_storage::flush() {
  if (pending_.empty())
    return;
  current_->append(pending_);
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    stats_.wal_bytes_written += pending_.size();
    stats_.records_written += pending_records_;
  }
  segment_data_records_ += pending_records_;
  pending_.clear();
  pending_records_ = 0;
}

void wal_storage::write_snapshot_file(const raft::snapshot& s) {
  auto name = wal::snapshot_file_name(s.metadata.index);
  auto temp = name + std::string(wal::temp_suffix);
  auto parts = wal::encode_snapshot_file_parts(s);
  {
    auto f = fs_->create_file(path(temp));
    f->append(parts.head);
    f->append(s.data);
    f->append(parts.trailer);
    f->sync();
  }
  fs_->rename(path(temp), path(name));
  fs_->sync_dir(dir_);
  std::lock_guard<std::mutex> lock{io_mutex_};
  snapshot_files_.push_back(s.metadata.index);
  stats_.snapshot_bytes_written += parts.head.size() + s.data.size() + parts.trailer.size();
  stats_.fsyncs += 2;
  stats_.snapshots_written += 1;
}

// ---- writes ---------------------------------------------------------------------------------

void wal_storage::set_hard_state(const raft::hard_state& hs) {
  std::lock_guard<std::mutex> writer{write_mutex_};
  check_failed();
  if (hs == hard_)
    return;
  try {
    std::string rec;
    wal::append_hard_state_record(rec, hs);
    emit(std::move(rec), snapshot_->metadata.index + entries_.size());
    flush();
  } catch (const storage_error& e) {
    fail(e);
  }
  std::unique_lock<std::shared_mutex> view{view_mutex_};
  hard_ = hs;
}

raft::storage_errc wal_storage::append(const std::vector<raft::entry>& ents) {
  if (ents.empty())
    return raft::storage_errc::ok;
  for (size_t i = 1; i < ents.size(); ++i)
    if (ents[i].index != ents[i - 1].index + 1)
      throw std::invalid_argument("wal_storage::append: entries are not contiguous: index "
                                  + std::to_string(ents[i].index) + " follows "
                                  + std::to_string(ents[i - 1].index));
  for (const auto& e : ents)
    if (wal::entry_record_bytes(e) + wal::entries_record_overhead_bytes
        > wal::max_record_payload_bytes)
      throw std::invalid_argument("wal_storage::append: entry " + std::to_string(e.index)
                                  + " is too large for a WAL record");
  std::lock_guard<std::mutex> writer{write_mutex_};
  check_failed();
  uint64_t snap_index = snapshot_->metadata.index;
  uint64_t last = snap_index + entries_.size();
  if (ents.front().index > last + 1)
    return raft::storage_errc::unavailable;
  size_t skip = 0;
  while (skip < ents.size() && ents[skip].index <= snap_index)
    ++skip; // already covered by the snapshot
  if (skip == ents.size())
    return raft::storage_errc::ok;
  const uint64_t target = std::min(entries_record_target_bytes, opts_.segment_size_bytes / 4);
  try {
    uint64_t last_before = last;
    size_t i = skip;
    while (i < ents.size()) {
      size_t j = i;
      uint64_t bytes = wal::entries_record_overhead_bytes + wal::entry_record_bytes(ents[j++]);
      while (j < ents.size() && bytes + wal::entry_record_bytes(ents[j]) <= target)
        bytes += wal::entry_record_bytes(ents[j++]);
      std::string rec;
      rec.reserve(bytes);
      wal::append_entries_record(rec, ents.data() + i, ents.data() + j);
      emit(std::move(rec), last_before);
      last_before = ents[j - 1].index;
      i = j;
    }
    flush();
  } catch (const storage_error& e) {
    fail(e);
  }
  std::unique_lock<std::shared_mutex> view{view_mutex_};
  entries_.resize(ents[skip].index - snap_index - 1); // drop the conflicting suffix
  entries_.insert(entries_.end(), ents.begin() + static_cast<std::ptrdiff_t>(skip), ents.end());
  return raft::storage_errc::ok;
}

raft::storage_errc wal_storage::apply_snapshot(raft::snapshot snap) {
  std::lock_guard<std::mutex> writer{write_mutex_};
  check_failed();
  if (snap.metadata.index <= snapshot_->metadata.index)
    return raft::storage_errc::out_of_date;
  // An installed snapshot replaces the whole log.
  log_snapshot(std::move(snap), wal::snapshot_kind::installed, entries_.size());
  return raft::storage_errc::ok;
}

raft::storage_errc wal_storage::compact(raft::snapshot snap) {
  std::lock_guard<std::mutex> writer{write_mutex_};
  check_failed();
  uint64_t index = snap.metadata.index;
  uint64_t old_index = snapshot_->metadata.index;
  if (index <= old_index)
    return raft::storage_errc::out_of_date;
  if (index > old_index + entries_.size())
    return raft::storage_errc::unavailable;
  // A local snapshot drops the entries it covers and keeps the later ones.
  log_snapshot(std::move(snap), wal::snapshot_kind::compacted, index - old_index);
  return raft::storage_errc::ok;
}

void wal_storage::log_snapshot(raft::snapshot snap, wal::snapshot_kind kind, uint64_t dropped_entries) {
  uint64_t index = snap.metadata.index;
  try {
    write_snapshot_file(snap);
    std::string rec;
    wal::append_snapshot_record(rec, index, snap.metadata.term, kind);
    emit(std::move(rec), snapshot_->metadata.index + entries_.size());
    flush();
  } catch (const storage_error& e) {
    fail(e);
  }
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    logged_snapshot_index_ = index;
  }
  std::unique_lock<std::shared_mutex> view{view_mutex_};
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(dropped_entries));
  snapshot_ = std::make_shared<raft::snapshot>(std::move(snap));
}

// ---- durability ---------------------------------------------------------------------------

void wal_storage::sync() {
  std::lock_guard<std::mutex> syncing{sync_mutex_};
  std::shared_ptr<writable_file> file;
  uint64_t written = 0;
  uint64_t logged = 0;
  size_t segment_count = 0;
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    if (!failure_.empty())
      throw storage_error("wal_storage " + dir_ + " failed earlier and must not be used: "
                          + failure_);
    file = current_;
    written = stats_.records_written;
    logged = logged_snapshot_index_;
    segment_count = segments_.size();
  }
  auto failed = [this](const storage_error& e) {
    std::lock_guard<std::mutex> lock{io_mutex_};
    if (failure_.empty())
      failure_ = e.what();
    return storage_error("wal_storage " + dir_ + ": " + e.what(), e.sys_errno());
  };
  if (written != synced_records_) {
    // Records in earlier segments were synced when the segment was rolled.
    try {
      file->sync();
    } catch (const storage_error& e) {
      throw failed(e);
    }
    std::lock_guard<std::mutex> lock{io_mutex_};
    uint64_t n = written - synced_records_;
    stats_.syncs += 1;
    stats_.fsyncs += 1;
    stats_.records_synced += n;
    stats_.last_sync_records = n;
    stats_.max_sync_records = std::max(stats_.max_sync_records, n);
    synced_records_ = written;
  }

  // The record of snapshot `logged` is durable now: retire the segments and
  // snapshot files it covers. Segment k can go once segment k+1 starts at or
  // before logged + 1 (recovery.hpp, rule W4); only segments that existed
  // when this sync began are considered.
  std::vector<std::string> old_segments;
  std::vector<std::string> old_snapshots;
  {
    std::lock_guard<std::mutex> lock{io_mutex_};
    size_t keep_from = 0;
    for (size_t k = 1; k < segment_count; ++k)
      if (segments_[k].first_index <= logged + 1)
        keep_from = k;
    for (size_t k = 0; k < keep_from; ++k)
      old_segments.push_back(segments_[k].name);
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(keep_from));
    while (!snapshot_files_.empty() && snapshot_files_.front() < logged) {
      old_snapshots.push_back(wal::snapshot_file_name(snapshot_files_.front()));
      snapshot_files_.erase(snapshot_files_.begin());
    }
  }
  try {
    // Oldest first, each removal durable before the next: a crash never
    // leaves a gap in the sequence of segments.
    for (const auto& name : old_segments) {
      fs_->remove(path(name));
      fs_->sync_dir(dir_);
    }
    for (const auto& name : old_snapshots)
      fs_->remove(path(name));
    if (!old_snapshots.empty())
      fs_->sync_dir(dir_);
  } catch (const storage_error& e) {
    throw failed(e);
  }
  if (!old_segments.empty() || !old_snapshots.empty()) {
    std::lock_guard<std::mutex> lock{io_mutex_};
    stats_.segments_deleted += old_segments.size();
    stats_.snapshots_deleted += old_snapshots.size();
    stats_.fsyncs += old_segments.size() + (old_snapshots.empty() ? 0 : 1);
  }
}

} // namespace dsync::storage
