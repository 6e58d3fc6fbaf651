// Sends requests to another node's node API (usually a Raft leader's) on behalf of an
// actor, and fails them at once when that node goes down. CAF does not fail a request to
// a peer that dies (it waits for the request's timeout), so the owner passes its down
// messages to on_down().
//
// Timeouts are kept here, not by CAF: a CAF request timeout wakes CAF's clock thread for
// every request, which cost a loaded node more than the request itself. The owner handles
// forward_sweep_atom by calling sweep(self); it arrives twice a second while calls wait.
//
// Kept in the owning actor's state; all calls run on that actor's thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "actors/peer_links.hpp"
#include "dsync/api.hpp"

namespace dsync {

// The leader's node id carried by an errc::not_leader error ("" if none is known).
inline std::string leader_of(const caf::error& err) {
  if (err.context().match_elements<std::string>()) return err.context().get_as<std::string>(0);
  return {};
}

class forwarder {
 public:
  void init(peer_links_actor links) { links_ = std::move(links); }

  // Sends xs... to the node API of node `to` and calls on_answer(T&) or on_error(caf::error&)
  // exactly once. Errors that are not dsync's own (lost links, timeouts) become
  // errc::unavailable naming the node.
  template <class T, class Self, class OnAnswer, class OnError, class... Ts>
  void call(Self self, const std::string& to, caf::timespan timeout, OnAnswer on_answer, OnError on_error,
            Ts... xs) {
    if (auto known = apis_.find(to); known != apis_.end())
      return send<T>(self, to, known->second, timeout, on_answer, on_error, xs...);
    self->request(links_, std::chrono::seconds(3), lookup_atom::value, to)
      .then(
        [=](node_api& remote) mutable {
          apis_[to] = remote;
          send<T>(self, to, remote, timeout, on_answer, on_error, xs...);
        },
        [=](caf::error& err) mutable { on_error(err); });
  }

  // To be called from the owner's down handler.
  void on_down(const caf::down_msg& dm) {
    for (auto a = apis_.begin(); a != apis_.end();) a = a->second.address() == dm.source ? apis_.erase(a) : std::next(a);
    monitored_.erase(dm.source);
    auto i = pending_.find(dm.source);
    if (i == pending_.end()) return;
    auto failed = std::move(i->second);
    pending_.erase(i);
    for (auto& [id, call] : failed) {
      deadlines_.erase(call.deadline);
      call.fail(false);
    }
  }

  // To be called from the owner's handler of forward_sweep_atom: fails the calls whose
  // time is up.
  template <class Self>
  void sweep(Self self) {
    sweep_scheduled_ = false;
    auto now = clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto [addr, id] = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      auto i = pending_.find(addr);
      if (i == pending_.end()) continue;
      auto c = i->second.find(id);
      if (c == i->second.end()) continue;
      auto fail = std::move(c->second.fail);
      i->second.erase(c);
      fail(true);
    }
    schedule_sweep(self);
  }

 private:
  using clock = std::chrono::steady_clock;
  using deadline_map = std::multimap<clock::time_point, std::pair<caf::actor_addr, uint64_t>>;

  struct pending_call {
    std::function<void(bool timed_out)> fail;
    deadline_map::iterator deadline;
  };

  template <class Self>
  void schedule_sweep(Self self) {
    if (sweep_scheduled_ || deadlines_.empty()) return;
    sweep_scheduled_ = true;
    self->delayed_send(self, std::chrono::milliseconds(500), forward_sweep_atom::value);
  }

  // Takes a call off the books; false if on_down or sweep already failed it.
  bool settle(const caf::actor_addr& addr, uint64_t id) {
    auto i = pending_.find(addr);
    if (i == pending_.end()) return false;
    auto c = i->second.find(id);
    if (c == i->second.end()) return false;
    deadlines_.erase(c->second.deadline);
    i->second.erase(c);
    return true;
  }

  template <class T, class Self, class OnAnswer, class OnError, class... Ts>
  void send(Self self, const std::string& to, node_api remote, caf::timespan timeout, OnAnswer on_answer,
            OnError on_error, Ts... xs) {
    auto addr = remote.address();
    if (monitored_.insert(addr).second) self->monitor(remote);
    auto id = ++next_id_;
    auto deadline = deadlines_.emplace(clock::now() + timeout, std::make_pair(addr, id));
    pending_[addr].emplace(id, pending_call{[=](bool timed_out) mutable {
                                              caf::error err = make_error(
                                                errc::unavailable, "node " + to
                                                                     + (timed_out ? " did not answer within the request timeout"
                                                                                  : " went down while answering"));
                                              on_error(err);
                                            },
                                            deadline});
    schedule_sweep(self);
    self->request(remote, caf::infinite, xs...)
      .then(
        [=](T& answer) mutable {
          if (settle(addr, id)) on_answer(answer);
        },
        [=](caf::error& err) mutable {
          if (!settle(addr, id)) return;
          if (err.category() == caf::atom("dsync")) return on_error(err);
          caf::error lost = make_error(errc::unavailable, "node " + to + " did not answer: " + caf::to_string(err));
          on_error(lost);
        });
  }

  peer_links_actor links_;
  std::map<caf::actor_addr, std::map<uint64_t, pending_call>> pending_;
  deadline_map deadlines_;
  bool sweep_scheduled_ = false;
  uint64_t next_id_ = 0;
  std::map<std::string, node_api> apis_;  // node APIs of peers, dropped when one goes down
  std::set<caf::actor_addr> monitored_;
};

}  // namespace dsync
