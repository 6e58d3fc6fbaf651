#include "protocols/raft/config.hpp"

#include <utility>

namespace dsync::raft {

std::string config::validate() const {
  auto must_be_positive = [](uint64_t v, const char* name) -> std::string {
    return v == 0 ? std::string(name) + " must be > 0" : std::string();
  };
  if (id.empty())
    return "id must not be empty";
  if (heartbeat_ticks == 0)
    return "heartbeat_ticks must be > 0";
  if (election_ticks <= heartbeat_ticks)
    return "election_ticks (" + std::to_string(election_ticks)
           + ") must be greater than heartbeat_ticks (" + std::to_string(heartbeat_ticks) + ")";
  if (election_ticks > (1ull << 31))
    return "election_ticks is unreasonably large";
  for (auto [v, name] : {std::pair{max_inflight_msgs, "max_inflight_msgs"},
                         std::pair{max_inflight_bytes, "max_inflight_bytes"},
                         std::pair{max_msg_bytes, "max_msg_bytes"},
                         std::pair{max_entries_per_msg, "max_entries_per_msg"},
                         std::pair{max_uncommitted_entries, "max_uncommitted_entries"},
                         std::pair{max_uncommitted_bytes, "max_uncommitted_bytes"},
                         std::pair{max_entry_bytes, "max_entry_bytes"},
                         std::pair{max_apply_bytes_per_ready, "max_apply_bytes_per_ready"},
                         std::pair{snapshot_chunk_bytes, "snapshot_chunk_bytes"},
                         std::pair{max_snapshot_bytes, "max_snapshot_bytes"},
                         std::pair{max_pending_reads, "max_pending_reads"}}) {
    if (auto err = must_be_positive(v, name); !err.empty())
      return err;
  }
  if (max_entry_bytes > max_uncommitted_bytes)
    return "max_entry_bytes must not exceed max_uncommitted_bytes";
  if (max_uncommitted_entries < 2)
    return "max_uncommitted_entries must be >= 2 (the leader's no-op plus one proposal)";
  return {};
}

} // namespace dsync::raft
