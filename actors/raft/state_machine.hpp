// What a Raft group replicates: a deterministic state machine that the group actor feeds
// with committed commands in log order. apply() must depend only on the command, its
// index and the current state (never on clocks or randomness), so that every replica
// computes the same answers.
#pragma once

#include <cstdint>
#include <string>

namespace dsync {

class state_machine {
 public:
  virtual ~state_machine() = default;
  // Applies the command committed at `index`; returns the answer for its proposer.
  virtual std::string apply(uint64_t index, const std::string& command) = 0;
  // Answers a read-only query from the current state (after the group's read barrier
  // when the read must be linearizable).
  virtual std::string query(const std::string& request) const = 0;
  // The whole state, and its replacement by a snapshot; restore() returns false (and
  // keeps the state) when the bytes are malformed.
  virtual std::string snapshot() const = 0;
  virtual bool restore(const std::string& data) = 0;
  // This node became (true) or stopped being (false) the group's leader. Not part of the
  // replicated state: for services that act only on the leader (e.g. lease expiry).
  virtual void on_leadership(bool /*leading*/) {}
};

}  // namespace dsync
