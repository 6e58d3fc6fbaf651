// The state machine of the control Raft group (group 0, all members): the replicated
// key-value store now, the lock table next. A command's first byte names the subsystem
// it is for, so one log serves them all in one order.
#pragma once

#include <optional>
#include <string>

#include "actors/raft/state_machine.hpp"
#include "protocols/kv/kv_store.hpp"

namespace dsync {

constexpr uint64_t control_group = 0;

namespace control {
std::string kv_command(const kv::command& c);
std::string kv_query(const std::string& key);
// The answer to kv_query: the record, or nothing when the key has no value.
bool decode_kv_answer(const std::string& bytes, std::optional<kv::value_record>& out);
}  // namespace control

class control_machine final : public state_machine {
 public:
  std::string apply(uint64_t index, const std::string& command) override;
  std::string query(const std::string& request) const override;
  std::string snapshot() const override;
  bool restore(const std::string& data) override;

 private:
  kv::store kv_;
};

}  // namespace dsync
