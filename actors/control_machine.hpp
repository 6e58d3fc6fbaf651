// The state machine of the control Raft group (group 0, all members): the replicated
// key-value store, the lock table and the cache's membership (which members are home
// directories, per epoch). A command's first byte names the subsystem it is
// for, so one log serves them all in one order.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "actors/raft/state_machine.hpp"
#include "protocols/kv/kv_store.hpp"
#include "protocols/locks/lock_table.hpp"

namespace dsync {

constexpr uint64_t control_group = 0;

namespace control {
std::string kv_command(const kv::command& c);
std::string kv_query(const std::string& key);
// The answer to kv_query: the record, or nothing when the key has no value.
bool decode_kv_answer(const std::string& bytes, std::optional<kv::value_record>& out);

std::string lock_command(const locks::command& c);
std::string lock_query(const std::string& lock);
bool decode_lock_answer(const std::string& bytes, locks::lock_status& out);

// A new cache membership (the members that are home directories); its epoch is the log
// index it is committed at.
std::string cache_members_command(const std::vector<std::string>& members);

// The node API address of a member (port 0: forget it), recorded when it is added.
std::string member_address_command(const std::string& node_id, const std::string& host, uint16_t port);
}  // namespace control

// What applying lock commands did on this replica, for the node's lock service.
struct lock_apply_report {
  std::vector<locks::event> events;
  std::optional<uint64_t> next_deadline;  // leader time (ms) of the next lease/wait expiry
  size_t holders = 0;
  size_t waiters = 0;
};

// Hooks into the node's lock service and cache; called on the Raft group's actor thread.
struct lock_observer {
  std::function<void(lock_apply_report)> applied;
  std::function<void(bool leading)> leadership;
};
// Members' addresses are replicated so that every node finds the members added after it
// was configured, also after a restart with its old CLUSTER_NODES.
struct member_observer {
  std::function<void(const std::string& node_id, const std::string& host, uint16_t port)> address;
};
struct cache_observer {
  // The cache membership (epoch, members), after it changed or was restored.
  std::function<void(uint64_t epoch, std::vector<std::string> members)> members;
  std::function<void(bool leading)> leadership;
};

class control_machine final : public state_machine {
 public:
  explicit control_machine(lock_observer locks = {}, cache_observer cache = {}, member_observer members = {})
    : observer_(std::move(locks)), cache_observer_(std::move(cache)), member_observer_(std::move(members)) {}

  std::string apply(uint64_t index, const std::string& command) override;
  std::string query(const std::string& request) const override;
  std::string snapshot() const override;
  bool restore(const std::string& data) override;
  void on_leadership(bool leading) override;

 private:
  void report(std::vector<locks::event> events);

  void report_cache_members();
  void report_addresses();

  kv::store kv_;
  locks::table locks_;
  uint64_t cache_epoch_ = 0;
  std::vector<std::string> cache_members_;
  std::map<std::string, std::pair<std::string, uint16_t>> addresses_;  // node id -> host, port
  lock_observer observer_;
  cache_observer cache_observer_;
  member_observer member_observer_;
};

}  // namespace dsync
