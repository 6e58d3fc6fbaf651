// The state machine of one queue shard's Raft group: protocols/queue's shard, with its
// events and next deadline reported to the node's queue service after every command.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "actors/raft/state_machine.hpp"
#include "protocols/queue/queue_shard.hpp"

namespace dsync {

// What applying a command did on this replica of group `group`.
struct queue_apply_report {
  uint64_t group = 0;
  std::vector<queue::event> events;
  std::optional<uint64_t> next_deadline;  // leader time (ms) of the next expiry
};

struct queue_observer {
  std::function<void(queue_apply_report)> applied;
  std::function<void(uint64_t group, bool leading)> leadership;
};

namespace shard_query {
// Queries of a shard's state (answered by queue_machine::query).
std::string stats(const std::string& queue);
std::string dead(const std::string& queue, uint64_t cursor, uint64_t limit);
std::string list(const std::string& after, uint64_t limit);
bool decode_stats(const std::string& bytes, queue::queue_stats& out);
bool decode_dead(const std::string& bytes, queue::dead_page& out);
bool decode_list(const std::string& bytes, std::vector<std::string>& out);
// The counts of the shard's first queues (for gauges).
std::string all_stats(uint64_t limit);
bool decode_all_stats(const std::string& bytes, std::vector<std::pair<std::string, queue::queue_stats>>& out);
}  // namespace shard_query

class queue_machine final : public state_machine {
 public:
  queue_machine(uint64_t group, uint32_t shard, queue_observer observer)
    : group_(group), shard_(shard), observer_(std::move(observer)) {}

  std::string apply(uint64_t index, const std::string& command) override;
  std::string query(const std::string& request) const override;
  std::string snapshot() const override { return shard_.snapshot(); }
  bool restore(const std::string& data) override;
  void on_leadership(bool leading) override;

 private:
  void report(std::vector<queue::event> events);

  uint64_t group_;
  queue::shard shard_;
  queue_observer observer_;
};

}  // namespace dsync
