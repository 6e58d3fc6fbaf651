// Closures that an actor runs later on its own thread. CAF 0.17 has no run-later, only
// delayed messages, so each closure waits here under an id that a delayed message of the
// owner's interface carries back: `after(self, delay, atom, fn)` sends (atom, id) to self
// after `delay`; the owner's handler for (atom, uint64_t) calls `run(id)`.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

namespace dsync {

class deferred_calls {
 public:
  template <class Self, class Atom>
  void after(Self self, caf::timespan delay, Atom atom, std::function<void()> fn) {
    auto id = ++next_id_;
    calls_.emplace(id, std::move(fn));
    self->delayed_send(self, delay, atom, id);
  }

  // Runs (once) the closure kept under `id`; unknown ids are ignored.
  void run(uint64_t id) {
    auto i = calls_.find(id);
    if (i == calls_.end()) return;
    auto fn = std::move(i->second);
    calls_.erase(i);
    fn();
  }

 private:
  std::map<uint64_t, std::function<void()>> calls_;
  uint64_t next_id_ = 0;
};

}  // namespace dsync
