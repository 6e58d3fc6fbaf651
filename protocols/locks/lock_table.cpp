#include "protocols/locks/lock_table.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "protocols/codec.hpp"

namespace dsync::locks {

namespace {

constexpr uint8_t holds_flag = 1;
constexpr uint8_t waits_flag = 2;
constexpr uint8_t lease_kind = 0;
constexpr uint8_t wait_kind = 1;
constexpr uint8_t snapshot_version = 1;
constexpr size_t npos = static_cast<size_t>(-1);

// Saturating: a leader clock near the top of the range must not wrap a deadline to the past.
uint64_t add_sat(uint64_t a, uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

bool valid_mode(uint8_t m) {
  return m == static_cast<uint8_t>(mode::shared) || m == static_cast<uint8_t>(mode::exclusive);
}
bool valid_op(uint8_t k) {
  return k >= static_cast<uint8_t>(op::acquire) && k <= static_cast<uint8_t>(op::renew_all);
}
bool valid_code(uint8_t c) {
  return c >= static_cast<uint8_t>(code::granted) && c <= static_cast<uint8_t>(code::done);
}
bool names_lock(op k) { return k == op::acquire || k == op::release || k == op::refresh; }

// Exclusive conflicts with everything, shared only with exclusive.
bool conflicts(mode a, mode b) { return a == mode::exclusive || b == mode::exclusive; }

std::string check_name(const char* field, const std::string& s, size_t max) {
  if (!s.empty() && s.size() <= max) return {};
  return std::string(field) + " is " + (s.empty() ? "empty" : std::to_string(s.size()) + " bytes")
         + "; it must be between 1 and " + std::to_string(max) + " bytes";
}

template <class Entry>
size_t find_holder(const Entry& e, const std::string& client) {
  for (size_t i = 0; i < e.holders.size(); ++i)
    if (e.holders[i].client == client) return i;
  return npos;
}

template <class Entry>
size_t find_waiter(const Entry& e, const std::string& client) {
  for (size_t i = 0; i < e.waiters.size(); ++i)
    if (e.waiters[i].client == client) return i;
  return npos;
}

// Holders are one exclusive grant or any number of shared ones.
template <class Entry>
bool compatible_with_holders(const Entry& e, mode wanted) {
  if (e.holders.empty()) return true;
  return wanted == mode::shared && e.holders.front().held == mode::shared;
}

template <class Holder>
grant make_grant(const std::string& lock, const Holder& h) {
  return grant{lock, h.client, h.held, h.token, h.ttl_ms, h.expires_at_ms};
}

// The subject of an event about a request that holds nothing (timed_out, cancelled).
grant named(const std::string& lock, const std::string& client) {
  grant g;
  g.lock = lock;
  g.client = client;
  return g;
}

outcome answer(code c) {
  outcome o;
  o.result = c;
  return o;
}

outcome answer(code c, std::string message) {
  outcome o;
  o.result = c;
  o.message = std::move(message);
  return o;
}

void put_grant(std::string& out, const grant& g) {
  codec::put_string(out, g.lock);
  codec::put_string(out, g.client);
  codec::put_u8(out, static_cast<uint8_t>(g.held));
  codec::put_u64(out, g.token);
  codec::put_u64(out, g.ttl_ms);
  codec::put_u64(out, g.expires_at_ms);
}

bool get_grant(codec::reader& r, grant& g) {
  uint8_t m = 0;
  if (!r.get_string(g.lock) || !r.get_string(g.client) || !r.get_u8(m) || !valid_mode(m)) return false;
  g.held = static_cast<mode>(m);
  return r.get_u64(g.token) && r.get_u64(g.ttl_ms) && r.get_u64(g.expires_at_ms);
}

}  // namespace

const char* to_string(mode m) {
  switch (m) {
    case mode::shared: return "shared";
    case mode::exclusive: return "exclusive";
  }
  return "unknown";
}

bool parse_mode(const std::string& s, mode& out) {
  if (s == "shared") out = mode::shared;
  else if (s == "exclusive") out = mode::exclusive;
  else return false;
  return true;
}

const char* to_string(code c) {
  switch (c) {
    case code::granted: return "granted";
    case code::waiting: return "waiting";
    case code::timeout: return "timeout";
    case code::deadlock: return "deadlock";
    case code::released: return "released";
    case code::cancelled: return "cancelled";
    case code::refreshed: return "refreshed";
    case code::not_held: return "not_held";
    case code::bad_request: return "bad_request";
    case code::limit: return "limit";
    case code::done: return "done";
  }
  return "unknown";
}

std::string validate(const command& c) {
  const auto kind = static_cast<uint8_t>(c.kind);
  if (!valid_op(kind))
    return "op is " + std::to_string(kind)
           + "; it must be acquire (1), release (2), refresh (3), expire (4) or renew_all (5)";
  if (!names_lock(c.kind)) return {};  // expire and renew_all ignore lock and client
  if (auto why = check_name("lock", c.lock, max_name_bytes); !why.empty()) return why;
  if (auto why = check_name("client", c.client, max_client_bytes); !why.empty()) return why;
  if (c.kind != op::acquire) return {};
  if (!valid_mode(static_cast<uint8_t>(c.wanted)))
    return "mode is " + std::to_string(static_cast<unsigned>(c.wanted))
           + "; it must be shared (1) or exclusive (2)";
  if (c.wait_ms > max_wait_ms)
    return "wait_ms is " + std::to_string(c.wait_ms) + "; it must be between 0 and "
           + std::to_string(max_wait_ms);
  if (c.ttl_ms < min_ttl_ms || c.ttl_ms > max_ttl_ms)
    return "ttl_ms is " + std::to_string(c.ttl_ms) + "; it must be between "
           + std::to_string(min_ttl_ms) + " and " + std::to_string(max_ttl_ms);
  return {};
}

// kind, now_ms, then lock and client (acquire, release, refresh), then mode, wait_ms and
// ttl_ms (acquire). Fields a kind does not use are not encoded.
std::string encode(const command& c) {
  std::string out;
  codec::put_u8(out, static_cast<uint8_t>(c.kind));
  codec::put_u64(out, c.now_ms);
  if (names_lock(c.kind)) {
    codec::put_string(out, c.lock);
    codec::put_string(out, c.client);
  }
  if (c.kind == op::acquire) {
    codec::put_u8(out, static_cast<uint8_t>(c.wanted));
    codec::put_u64(out, c.wait_ms);
    codec::put_u64(out, c.ttl_ms);
  }
  return out;
}

bool decode(const std::string& bytes, command& out) {
  codec::reader r{bytes};
  command c;
  uint8_t kind = 0;
  if (!r.get_u8(kind) || !valid_op(kind) || !r.get_u64(c.now_ms)) return false;
  c.kind = static_cast<op>(kind);
  if (names_lock(c.kind) && (!r.get_string(c.lock) || !r.get_string(c.client))) return false;
  if (c.kind == op::acquire) {
    uint8_t m = 0;
    if (!r.get_u8(m) || !valid_mode(m) || !r.get_u64(c.wait_ms) || !r.get_u64(c.ttl_ms)) return false;
    c.wanted = static_cast<mode>(m);
  }
  if (!r.at_end()) return false;
  out = std::move(c);
  return true;
}

// Every field, whatever the code: decode(encode(o)) gives back o exactly.
std::string encode(const outcome& o) {
  std::string out;
  codec::put_u8(out, static_cast<uint8_t>(o.result));
  put_grant(out, o.granted);
  codec::put_u64(out, o.position);
  codec::put_u64(out, o.cycle.size());
  for (const auto& s : o.cycle) codec::put_string(out, s);
  codec::put_string(out, o.message);
  return out;
}

bool decode(const std::string& bytes, outcome& out) {
  codec::reader r{bytes};
  outcome o;
  uint8_t result = 0;
  uint64_t n = 0;
  if (!r.get_u8(result) || !valid_code(result) || !get_grant(r, o.granted) || !r.get_u64(o.position)
      || !r.get_u64(n))
    return false;
  o.result = static_cast<code>(result);
  for (uint64_t i = 0; i < n; ++i) {  // each element needs 8 bytes: a huge n fails fast
    std::string s;
    if (!r.get_string(s)) return false;
    o.cycle.push_back(std::move(s));
  }
  if (!r.get_string(o.message) || !r.at_end()) return false;
  out = std::move(o);
  return true;
}

// ---- applying commands ----

outcome table::apply(uint64_t /*index*/, const command& c, std::vector<event>& events) {
  now_ms_ = std::max(now_ms_, c.now_ms);
  if (auto why = validate(c); !why.empty()) return answer(code::bad_request, std::move(why));
  switch (c.kind) {
    case op::acquire: return acquire(c);
    case op::release: return release(c, events);
    case op::refresh: return refresh(c);
    case op::expire: expire(events); break;
    case op::renew_all: renew_all(); break;
  }
  return answer(code::done);
}

outcome table::acquire(const command& c) {
  auto li = locks_.find(c.lock);
  if (li != locks_.end()) {
    entry& e = li->second;
    if (size_t h = find_holder(e, c.client); h != npos) {
      holder& hd = e.holders[h];
      if (c.wanted == mode::exclusive && hd.held == mode::shared) {
        if (size_t w = find_waiter(e, c.client); w != npos) {
          outcome o = answer(code::waiting);  // already waiting for this upgrade
          o.position = w + 1;
          return o;
        }
        return upgrade(li, c);
      }
      // Idempotent: the grant it has (same mode and token), lease renewed.
      hd.ttl_ms = c.ttl_ms;
      set_lease(li->first, hd, add_sat(now_ms_, c.ttl_ms));
      outcome o = answer(code::granted);
      o.granted = make_grant(li->first, hd);
      return o;
    }
    if (size_t w = find_waiter(e, c.client); w != npos) {
      outcome o = answer(code::waiting);
      o.position = w + 1;
      return o;
    }
  }

  const bool grantable = li == locks_.end()
                         || (li->second.waiters.empty() && compatible_with_holders(li->second, c.wanted));
  if (!grantable && c.wait_ms == 0) return answer(code::timeout);
  if (!grantable && li->second.waiters.size() >= max_waiters_per_lock)
    return answer(code::limit, "lock " + c.lock + " has " + std::to_string(li->second.waiters.size())
                                   + " waiters; max_waiters_per_lock is "
                                   + std::to_string(max_waiters_per_lock));
  if (size_t n = lock_count_of(c.client); n >= max_locks_per_client)
    return answer(code::limit, "client " + c.client + " holds or waits for " + std::to_string(n)
                                   + " locks; max_locks_per_client is "
                                   + std::to_string(max_locks_per_client));

  if (grantable) {
    li = locks_.try_emplace(c.lock).first;
    add_holder(li->first, li->second,
               holder{c.client, c.wanted, ++last_token_, c.ttl_ms, add_sat(now_ms_, c.ttl_ms)});
    outcome o = answer(code::granted);
    o.granted = make_grant(li->first, li->second.holders.back());
    return o;
  }
  entry& e = li->second;
  add_waiter(li->first, e, waiter{c.client, c.wanted, false, c.ttl_ms, add_sat(now_ms_, c.wait_ms)},
             false);
  if (auto cycle = find_cycle(c.client); !cycle.empty()) {
    remove_waiter(li->first, e, e.waiters.size() - 1);
    outcome o = answer(code::deadlock);
    o.cycle = std::move(cycle);
    return o;
  }
  outcome o = answer(code::waiting);
  o.position = e.waiters.size();
  return o;
}

// A shared holder asks for exclusive (and does not wait for that already).
outcome table::upgrade(lock_iter li, const command& c) {
  entry& e = li->second;
  if (e.holders.size() == 1) {
    holder& hd = e.holders.front();
    hd.held = mode::exclusive;
    hd.token = ++last_token_;
    hd.ttl_ms = c.ttl_ms;
    set_lease(li->first, hd, add_sat(now_ms_, c.ttl_ms));
    outcome o = answer(code::granted);
    o.granted = make_grant(li->first, hd);
    return o;
  }
  if (c.wait_ms == 0) return answer(code::timeout);
  if (e.waiters.size() >= max_waiters_per_lock)
    return answer(code::limit, "lock " + c.lock + " has " + std::to_string(e.waiters.size())
                                   + " waiters; max_waiters_per_lock is "
                                   + std::to_string(max_waiters_per_lock));
  add_waiter(li->first, e, waiter{c.client, mode::exclusive, true, c.ttl_ms, add_sat(now_ms_, c.wait_ms)},
             true);
  if (auto cycle = find_cycle(c.client); !cycle.empty()) {
    remove_waiter(li->first, e, 0);
    outcome o = answer(code::deadlock);
    o.cycle = std::move(cycle);
    return o;
  }
  outcome o = answer(code::waiting);
  o.position = 1;
  return o;
}

outcome table::release(const command& c, std::vector<event>& events) {
  auto li = locks_.find(c.lock);
  if (li == locks_.end()) return answer(code::not_held);
  entry& e = li->second;
  const size_t h = find_holder(e, c.client);
  const size_t w = find_waiter(e, c.client);
  if (h == npos && w == npos) return answer(code::not_held);
  if (w != npos) {
    remove_waiter(li->first, e, w);
    events.push_back(event{event::kind::cancelled, named(li->first, c.client)});
  }
  if (h != npos) remove_holder(li->first, e, h);
  grant_waiters(li->first, e, events);
  drop_if_empty(li);
  return answer(h != npos ? code::released : code::cancelled);
}

outcome table::refresh(const command& c) {
  auto li = locks_.find(c.lock);
  if (li == locks_.end()) return answer(code::not_held);
  const size_t h = find_holder(li->second, c.client);
  if (h == npos) return answer(code::not_held);
  holder& hd = li->second.holders[h];
  set_lease(li->first, hd, add_sat(now_ms_, hd.ttl_ms));
  outcome o = answer(code::refreshed);
  o.granted = make_grant(li->first, hd);
  return o;
}

void table::expire(std::vector<event>& events) {
  // Drop everything that lapsed before granting anything, so that a waiter whose own
  // deadline passed is never granted.
  std::set<std::string> touched;
  while (!deadlines_.empty() && std::get<0>(*deadlines_.begin()) <= now_ms_) {
    const auto [at, kind, lock, client] = *deadlines_.begin();
    auto li = locks_.find(lock);
    entry& e = li->second;
    if (kind == lease_kind) {
      const size_t h = find_holder(e, client);
      events.push_back(event{event::kind::expired, make_grant(lock, e.holders[h])});
      remove_holder(lock, e, h);
      if (size_t w = find_waiter(e, client); w != npos) {  // its wait for an upgrade
        remove_waiter(lock, e, w);
        events.push_back(event{event::kind::cancelled, named(lock, client)});
      }
    } else {
      remove_waiter(lock, e, find_waiter(e, client));
      events.push_back(event{event::kind::timed_out, named(lock, client)});
    }
    touched.insert(lock);
  }
  for (const auto& lock : touched) {
    auto li = locks_.find(lock);
    grant_waiters(li->first, li->second, events);
    drop_if_empty(li);
  }
}

void table::renew_all() {
  for (auto& [lock, e] : locks_)
    for (auto& hd : e.holders)
      if (uint64_t at = add_sat(now_ms_, hd.ttl_ms); at > hd.expires_at_ms) set_lease(lock, hd, at);
}

// ---- bookkeeping ----

void table::add_holder(const std::string& lock, entry& e, holder h) {
  deadlines_.emplace(h.expires_at_ms, lease_kind, lock, h.client);
  link(h.client, lock, holds_flag);
  e.holders.push_back(std::move(h));
  ++holder_count_;
}

void table::remove_holder(const std::string& lock, entry& e, size_t i) {
  const holder& h = e.holders[i];
  deadlines_.erase(deadline{h.expires_at_ms, lease_kind, lock, h.client});
  unlink(h.client, lock, holds_flag);
  e.holders.erase(e.holders.begin() + static_cast<std::ptrdiff_t>(i));
  --holder_count_;
}

void table::set_lease(const std::string& lock, holder& h, uint64_t expires_at_ms) {
  deadlines_.erase(deadline{h.expires_at_ms, lease_kind, lock, h.client});
  h.expires_at_ms = expires_at_ms;
  deadlines_.emplace(h.expires_at_ms, lease_kind, lock, h.client);
}

void table::add_waiter(const std::string& lock, entry& e, waiter w, bool at_front) {
  deadlines_.emplace(w.deadline_ms, wait_kind, lock, w.client);
  link(w.client, lock, waits_flag);
  if (at_front) e.waiters.push_front(std::move(w));
  else e.waiters.push_back(std::move(w));
  ++waiter_count_;
}

void table::remove_waiter(const std::string& lock, entry& e, size_t i) {
  const waiter& w = e.waiters[i];
  deadlines_.erase(deadline{w.deadline_ms, wait_kind, lock, w.client});
  unlink(w.client, lock, waits_flag);
  e.waiters.erase(e.waiters.begin() + static_cast<std::ptrdiff_t>(i));
  --waiter_count_;
}

void table::link(const std::string& client, const std::string& lock, uint8_t flag) {
  by_client_[client][lock] |= flag;
}

void table::unlink(const std::string& client, const std::string& lock, uint8_t flag) {
  auto ci = by_client_.find(client);
  auto li = ci->second.find(lock);
  li->second &= static_cast<uint8_t>(~flag);
  if (li->second != 0) return;
  ci->second.erase(li);
  if (ci->second.empty()) by_client_.erase(ci);
}

void table::grant_waiters(const std::string& lock, entry& e, std::vector<event>& events) {
  while (!e.waiters.empty()) {
    const waiter& front = e.waiters.front();
    if (front.upgrade) {
      if (e.holders.size() != 1) return;  // others still share the lock
      const uint64_t ttl = front.ttl_ms;
      remove_waiter(lock, e, 0);
      holder& hd = e.holders.front();  // the upgrader itself
      hd.held = mode::exclusive;
      hd.token = ++last_token_;
      hd.ttl_ms = ttl;
      set_lease(lock, hd, add_sat(now_ms_, ttl));
      events.push_back(event{event::kind::granted, make_grant(lock, hd)});
      continue;
    }
    if (!compatible_with_holders(e, front.wanted)) return;
    waiter w = front;
    remove_waiter(lock, e, 0);
    add_holder(lock, e, holder{w.client, w.wanted, ++last_token_, w.ttl_ms, add_sat(now_ms_, w.ttl_ms)});
    events.push_back(event{event::kind::granted, make_grant(lock, e.holders.back())});
  }
}

void table::drop_if_empty(lock_iter li) {
  if (li->second.holders.empty() && li->second.waiters.empty()) locks_.erase(li);
}

size_t table::lock_count_of(const std::string& client) const {
  auto ci = by_client_.find(client);
  return ci == by_client_.end() ? 0 : ci->second.size();
}

// Depth-first search of the wait-for graph from the requester. Edges are visited client by
// client in lock-name order, holders (grant order) before waiters (queue order).
//
// It follows a subset of the edges that reaches the same clients: the nearest exclusive
// waiter E before a waiter W itself has edges to every holder (but itself) and to every
// waiter before it, so W needs only its edge to E, its edges to the waiters between E and
// W, and (for a shared W) its edge to an exclusive holder. This keeps the search linear in
// the queue length instead of quadratic; every edge it follows is an edge of the graph, so
// the cycle it returns is a real one.
std::vector<std::string> table::find_cycle(const std::string& requester) const {
  struct edge {
    const std::string* lock;
    const std::string* client;
  };
  struct frame {
    const std::string* client;
    std::vector<edge> edges;
    size_t next = 0;
  };
  struct queue_index {
    std::unordered_map<std::string_view, size_t> position;
    std::vector<size_t> exclusive_before;  // 1 + position of the nearest exclusive waiter before, or 0
  };
  std::unordered_map<const entry*, queue_index> indexes;  // built once per lock per search
  auto index_of = [&](const entry& e) -> const queue_index& {
    auto [it, fresh] = indexes.try_emplace(&e);
    if (fresh) {
      size_t last = 0;
      for (size_t i = 0; i < e.waiters.size(); ++i) {
        it->second.position.emplace(e.waiters[i].client, i);
        it->second.exclusive_before.push_back(last);
        if (e.waiters[i].wanted == mode::exclusive) last = i + 1;
      }
    }
    return it->second;
  };
  auto edges_of = [&](const std::string& x) {
    std::vector<edge> out;
    auto ci = by_client_.find(x);
    if (ci == by_client_.end()) return out;
    for (const auto& [lock, flags] : ci->second) {
      if (!(flags & waits_flag)) continue;
      const entry& e = locks_.find(lock)->second;
      const queue_index& q = index_of(e);
      const size_t p = q.position.at(x);
      const size_t k = q.exclusive_before[p];  // E is waiters[k - 1]
      const mode wanted = e.waiters[p].wanted;
      if (wanted == mode::shared || k == 0)
        for (const auto& h : e.holders)
          if (h.client != x && conflicts(wanted, h.held)) out.push_back(edge{&lock, &h.client});
      if (k > 0) out.push_back(edge{&lock, &e.waiters[k - 1].client});
      if (wanted == mode::exclusive)
        for (size_t j = k; j < p; ++j) out.push_back(edge{&lock, &e.waiters[j].client});
    }
    return out;
  };

  // A cycle needs an edge into the requester: from a waiter of a lock it holds, or from a
  // waiter queued behind it. Without either there is nothing to search (the common case,
  // e.g. a long queue of clients that hold nothing).
  bool waited_for = false;
  for (const auto& [lock, flags] : by_client_.find(requester)->second) {
    const auto& q = locks_.find(lock)->second.waiters;
    const bool others_wait = q.size() > 1 || (q.size() == 1 && q.front().client != requester);
    if ((flags & holds_flag) ? others_wait : q.back().client != requester) {
      waited_for = true;
      break;
    }
  }
  if (!waited_for) return {};

  std::set<std::string_view> visited{requester};
  std::vector<frame> stack;
  stack.push_back(frame{&requester, edges_of(requester)});
  while (!stack.empty()) {
    frame& f = stack.back();
    if (f.next == f.edges.size()) {
      stack.pop_back();
      continue;
    }
    const edge ed = f.edges[f.next++];
    if (*ed.client == requester) {
      std::vector<std::string> cycle;
      for (const auto& s : stack) {
        cycle.push_back(*s.client);
        cycle.push_back(*s.edges[s.next - 1].lock);
      }
      cycle.push_back(requester);
      return cycle;
    }
    if (visited.insert(*ed.client).second) stack.push_back(frame{ed.client, edges_of(*ed.client)});
  }
  return {};
}

// ---- queries ----

std::optional<uint64_t> table::next_deadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return std::get<0>(*deadlines_.begin());
}

lock_status table::status(const std::string& lock) const {
  lock_status s;
  s.lock = lock;
  auto li = locks_.find(lock);
  if (li == locks_.end()) return s;
  for (const auto& h : li->second.holders)
    s.holders.push_back(holder_status{h.client, h.held, h.token, h.ttl_ms, h.expires_at_ms});
  for (const auto& w : li->second.waiters)
    s.waiters.push_back(waiter_status{w.client, w.wanted, w.upgrade, w.deadline_ms});
  return s;
}

size_t table::lock_count() const { return locks_.size(); }
size_t table::holder_count() const { return holder_count_; }
size_t table::waiter_count() const { return waiter_count_; }
uint64_t table::last_token() const { return last_token_; }
uint64_t table::now_ms() const { return now_ms_; }

// ---- snapshots ----

// version, now_ms, last_token, then the locks in name order, each with its holders in
// grant order and its waiters in queue order. by_client_, deadlines_ and the counters are
// derived and rebuilt by restore().
std::string table::snapshot() const {
  std::string out;
  codec::put_u8(out, snapshot_version);
  codec::put_u64(out, now_ms_);
  codec::put_u64(out, last_token_);
  codec::put_u64(out, locks_.size());
  for (const auto& [lock, e] : locks_) {
    codec::put_string(out, lock);
    codec::put_u64(out, e.holders.size());
    for (const auto& h : e.holders) {
      codec::put_string(out, h.client);
      codec::put_u8(out, static_cast<uint8_t>(h.held));
      codec::put_u64(out, h.token);
      codec::put_u64(out, h.ttl_ms);
      codec::put_u64(out, h.expires_at_ms);
    }
    codec::put_u64(out, e.waiters.size());
    for (const auto& w : e.waiters) {
      codec::put_string(out, w.client);
      codec::put_u8(out, static_cast<uint8_t>(w.wanted));
      codec::put_u8(out, w.upgrade ? 1 : 0);
      codec::put_u64(out, w.ttl_ms);
      codec::put_u64(out, w.deadline_ms);
    }
  }
  return out;
}

bool table::restore(const std::string& bytes) {
  codec::reader r{bytes};
  table t;
  uint8_t version = 0;
  uint64_t nlocks = 0;
  if (!r.get_u8(version) || version != snapshot_version || !r.get_u64(t.now_ms_)
      || !r.get_u64(t.last_token_) || !r.get_u64(nlocks))
    return false;
  std::set<uint64_t> tokens;
  std::string previous;
  for (uint64_t i = 0; i < nlocks; ++i) {
    std::string lock;
    uint64_t nholders = 0;
    if (!r.get_string(lock) || lock.empty() || (i > 0 && lock <= previous) || !r.get_u64(nholders))
      return false;
    previous = lock;
    auto li = t.locks_.try_emplace(lock).first;
    entry& e = li->second;
    for (uint64_t k = 0; k < nholders; ++k) {
      holder h;
      uint8_t m = 0;
      if (!r.get_string(h.client) || h.client.empty() || !r.get_u8(m) || !valid_mode(m)
          || !r.get_u64(h.token) || !r.get_u64(h.ttl_ms) || !r.get_u64(h.expires_at_ms))
        return false;
      h.held = static_cast<mode>(m);
      if (h.token == 0 || h.token > t.last_token_ || !tokens.insert(h.token).second
          || find_holder(e, h.client) != npos)
        return false;
      if (!e.holders.empty() && (h.held == mode::exclusive || e.holders.front().held == mode::exclusive))
        return false;
      t.add_holder(li->first, e, std::move(h));
    }
    uint64_t nwaiters = 0;
    if (!r.get_u64(nwaiters)) return false;
    for (uint64_t k = 0; k < nwaiters; ++k) {
      waiter w;
      uint8_t m = 0;
      uint8_t up = 0;
      if (!r.get_string(w.client) || w.client.empty() || !r.get_u8(m) || !valid_mode(m) || !r.get_u8(up)
          || up > 1 || !r.get_u64(w.ttl_ms) || !r.get_u64(w.deadline_ms))
        return false;
      w.wanted = static_cast<mode>(m);
      w.upgrade = up == 1;
      if (find_waiter(e, w.client) != npos) return false;
      const size_t h = find_holder(e, w.client);
      if (w.upgrade ? (k != 0 || w.wanted != mode::exclusive || h == npos
                       || e.holders[h].held != mode::shared)
                    : h != npos)
        return false;
      t.add_waiter(li->first, e, std::move(w), false);
    }
    if (e.holders.empty() && e.waiters.empty()) return false;
  }
  if (!r.at_end()) return false;
  *this = std::move(t);
  return true;
}

}  // namespace dsync::locks
