#include "protocols/cache/cache_controller.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace dsync::cache {

namespace {

using cs = cache_state;
using ev = cache_event;

constexpr std::string_view event_names[cache_event_count] = {
    "Load", "Store", "Replacement", "Fwd-GetS", "Fwd-GetM", "Inv", "Recall",
    "Data", "Excl-Data", "Data(ack=0)", "Data(ack>0)", "Revert-Data",
    "AckCount(0)", "AckCount(>0)", "Inv-Ack", "Last-Inv-Ack", "Put-Ack", "WT-Ack", "Nack",
};

// Counted against the capacity: everything but I and the eviction states (whose data
// waits for a Put-Ack in what real caches call a write-back buffer).
bool resident(cs s) {
  return s != cs::I && s != cs::MI_A && s != cs::EI_A && s != cs::OI_A && s != cs::SI_A && s != cs::II_A;
}

bool stable(cs s) { return readable(s); }

bool collecting_acks(cs s) {
  return s == cs::IM_AD || s == cs::IM_A || s == cs::SM_AD || s == cs::SM_A || s == cs::OM_AC || s == cs::OM_A;
}

}  // namespace

std::string_view to_string(cache_event e) {
  auto i = static_cast<size_t>(e);
  return i < cache_event_count ? event_names[i] : "?";
}

std::string controller::config::validate() const {
  if (self.empty() || self.size() > max_node_id_bytes)
    return "controller: self must be a node id of 1.." + std::to_string(max_node_id_bytes) + " bytes";
  if (capacity == 0) return "controller: capacity (CACHE_SIZE) must be at least 1 line";
  if (max_pending_ops == 0) return "controller: max_pending_ops must be at least 1";
  return {};
}

controller::controller(config cfg, membership m) : cfg_(std::move(cfg)), replacer_(cfg_.replacement) {
  if (auto why = cfg_.validate(); !why.empty()) throw std::invalid_argument(why);
  if (auto why = m.validate(); !why.empty()) throw std::invalid_argument("controller: " + why);
  epoch_ = m.epoch;
  members_ = std::move(m);
}

// --- inputs -------------------------------------------------------------------------

effects controller::start() {
  flushed_due_ = true;
  maybe_send_flushed();
  return std::exchange(fx_, {});
}

effects controller::submit(client_op op) {
  pending p;
  p.op = std::move(op);
  const auto& o = p.op;
  if (o.key.empty() || o.key.size() > max_key_bytes || (o.kind == op_kind::put && o.value.size() > max_value_bytes)) {
    complete(p, status::error, {}, cs::I, errc::invalid);
  } else if (requests_.count(o.request)) {
    complete(p, status::error, {}, cs::I, errc::duplicate_request);
  } else if (requests_.size() >= cfg_.max_pending_ops) {
    complete(p, status::error, {}, cs::I, errc::overloaded);
  } else {
    requests_.emplace(o.request, o.key);
    auto key = o.key;
    ops_[key].push_back(std::move(p));
    ready_.insert(key);
    drain();
  }
  return std::exchange(fx_, {});
}

effects controller::expire(uint64_t request) {
  auto r = requests_.find(request);
  if (r == requests_.end()) return {};
  auto key = r->second;
  auto& q = ops_[key];
  for (auto it = q.begin(); it != q.end(); ++it) {
    if (it->op.request != request || it->detached) continue;
    complete(*it, status::error, {}, state(key), errc::expired,
             it->started && (it->op.kind == op_kind::put || it->op.kind == op_kind::del));
    if (it->started) {
      it->detached = true;  // its transaction finishes in the background
    } else {
      requests_.erase(r);
      q.erase(it);
      if (q.empty()) ops_.erase(key);
    }
    break;
  }
  return std::exchange(fx_, {});
}

effects controller::on_message(const std::string& from, const message& m) {
  if (m.epoch > epoch_) {
    if (future_.size() < cfg_.max_future_messages) future_.emplace_back(from, m);
  } else if (for_directory(m.kind)) {
    ++stats_.unexpected_messages;
  } else {
    dispatch(from, m);
    drain();
    maybe_send_flushed();
  }
  return std::exchange(fx_, {});
}

effects controller::on_memory_done(uint64_t id) {
  if (writes_.erase(id)) maybe_send_flushed();
  return std::exchange(fx_, {});
}

effects controller::on_membership(membership m) {
  if (auto why = m.validate(); !why.empty()) throw std::invalid_argument("controller: " + why);
  if (m.epoch <= epoch_) return {};
  ++stats_.epoch_changes;
  epoch_ = m.epoch;
  members_ = std::move(m);
  flushed_due_ = true;
  old_lines_ = lines_.size();  // every line predates the new epoch
  // Lines of older epochs stay: their homes recall them while closing those epochs.
  // Requests refused by a closing epoch, or waiting for a dead home, may go now.
  for (const auto& [key, q] : ops_) ready_.insert(key);
  auto buffered = std::move(future_);
  future_.clear();
  for (auto& [from, msg] : buffered) {
    if (msg.epoch > epoch_) {
      future_.emplace_back(std::move(from), std::move(msg));
    } else if (for_directory(msg.kind)) {
      ++stats_.unexpected_messages;
    } else {
      dispatch(from, msg);
    }
  }
  drain();
  maybe_send_flushed();
  return std::exchange(fx_, {});
}

effects controller::on_node_down(const std::string& node) {
  if (!dead_.insert(node).second) return {};
  std::vector<std::string> orphaned;
  for (const auto& [key, l] : lines_)
    if (l.home == node) orphaned.push_back(key);
  for (const auto& key : orphaned) lose_home(key);
  // A delete or invalidate in flight at the dead home.
  for (auto& [key, q] : ops_) {
    if (q.empty() || !q.front().started || q.front().home != node) continue;
    auto& h = q.front();
    if (h.op.kind != op_kind::del && h.op.kind != op_kind::invalidate) continue;
    if (h.op.kind == op_kind::del || h.detached) {
      complete(h, status::error, {}, state(key), errc::home_down, true);
      requests_.erase(h.op.request);
      q.pop_front();
    } else {
      h.started = false;  // an invalidate changes no value: it may simply run again
    }
    ready_.insert(key);
  }
  drain();
  maybe_send_flushed();
  return std::exchange(fx_, {});
}

effects controller::on_node_up(const std::string& node) {
  dead_.erase(node);
  for (const auto& [key, q] : ops_) ready_.insert(key);
  drain();
  return std::exchange(fx_, {});
}

void controller::note_hits(const std::string& key, uint64_t times) {
  auto it = lines_.find(key);
  if (it == lines_.end() || !readable(it->second.st)) return;
  replacer_.touch(key, times);
}

// --- inspection ---------------------------------------------------------------------

cache_state controller::state(const std::string& key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? cs::I : it->second.st;
}

const value* controller::data(const std::string& key) const {
  auto it = lines_.find(key);
  return it == lines_.end() || !it->second.has_data ? nullptr : &it->second.val;
}

bool controller::dirty(const std::string& key) const {
  auto it = lines_.find(key);
  return it != lines_.end() && it->second.dirty;
}

uint64_t controller::line_epoch(const std::string& key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? 0 : it->second.epoch;
}

std::vector<std::string> controller::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, l] : lines_) out.push_back(k);
  return out;
}

size_t controller::stalled_messages() const {
  size_t n = 0;
  for (const auto& [k, l] : lines_) n += l.stalled.size();
  return n;
}

bool controller::idle() const {
  if (!requests_.empty() || !future_.empty() || !writes_.empty() || flushed_due_ || old_lines_) return false;
  for (const auto& [k, l] : lines_)
    if (!stable(l.st) || !l.stalled.empty()) return false;
  return true;
}

// --- messages -------------------------------------------------------------------------

void controller::dispatch(const std::string& from, const message& m) {
  switch (m.kind) {
    case msg_kind::done: handle_done(m); return;
    case msg_kind::nack: handle_nack(m); return;
    case msg_kind::fwd_get_s:
    case msg_kind::fwd_get_m:
    case msg_kind::inv:
    case msg_kind::recall: {
      // Requests stay in arrival order behind a stalled one.
      line* l = find(m.key, m.epoch);
      if (l && !l->stalled.empty()) {
        l->stalled.emplace_back(from, m);
      } else if (!handle_request(from, m)) {
        find(m.key, m.epoch)->stalled.emplace_back(from, m);
      }
      return;
    }
    case msg_kind::data:
    case msg_kind::inv_ack:
    case msg_kind::ack_count:
    case msg_kind::put_ack:
    case msg_kind::wt_ack: {
      line* l = find(m.key, m.epoch);
      if (!l) {
        if (m.kind == msg_kind::data || m.kind == msg_kind::inv_ack) ++stats_.duplicate_messages;
        else if (m.epoch < epoch_) ++stats_.stale_messages;
        else ++stats_.unexpected_messages;
        return;
      }
      switch (m.kind) {
        case msg_kind::data: handle_data(*l, m); return;
        case msg_kind::inv_ack: handle_inv_ack(*l, m); return;
        case msg_kind::ack_count: handle_ack_count(*l, m); return;
        case msg_kind::put_ack: handle_put_ack(*l, m); return;
        default: handle_wt_ack(*l, m); return;
      }
    }
    default: ++stats_.unexpected_messages; return;
  }
}

bool controller::handle_request(const std::string& from, const message& m) {
  line* l = find(m.key, m.epoch);
  switch (m.kind) {
    case msg_kind::fwd_get_s:
    case msg_kind::fwd_get_m:
      if (!l) {
        ++stats_.unexpected_messages;  // the directory forwards only to an owner
        return true;
      }
      return m.kind == msg_kind::fwd_get_s ? handle_fwd_get_s(*l, m) : handle_fwd_get_m(*l, m);
    case msg_kind::inv: return handle_inv(l, m);
    case msg_kind::recall: return handle_recall(from, l, m);
    default: ++stats_.unexpected_messages; return true;
  }
}

message controller::reply_data(const std::string& key, const line& l, uint64_t txn) const {
  message d;
  d.kind = msg_kind::data;
  d.key = key;
  d.txn = txn;
  d.has_data = true;
  d.val = l.val;
  return d;
}

bool controller::handle_fwd_get_s(line& l, const message& m) {
  const cs st = l.st;
  const bool mesi = cfg_.proto == protocol::mesi;
  switch (st) {
    case cs::E:
    case cs::M:
    case cs::MI_A:
    case cs::EI_A: {
      record(st, ev::fwd_get_s);
      send(m.node, l.epoch, reply_data(m.key, l, m.txn));
      const bool evicting = st == cs::MI_A || st == cs::EI_A;
      if (mesi) {
        // MESI has no owner for shared data: memory must be brought up to date.
        message o;
        o.kind = msg_kind::owner_data;
        o.key = m.key;
        o.has_data = true;
        o.val = l.val;
        o.dirty = l.dirty;
        if (l.dirty) ++stats_.write_backs;
        send_home(l, std::move(o));
        l.dirty = false;
        set_state(m.key, l, evicting ? cs::SI_A : cs::S);
      } else {
        set_state(m.key, l, evicting ? cs::OI_A : cs::O);  // keeps the dirty data: no write
      }
      return true;
    }
    case cs::O:
    case cs::OM_AC:
    case cs::OI_A:
      record(st, ev::fwd_get_s);
      send(m.node, l.epoch, reply_data(m.key, l, m.txn));
      return true;
    case cs::MW_A:
      record(st, ev::fwd_get_s);
      return false;
    default: ++stats_.unexpected_messages; return true;
  }
}

bool controller::handle_fwd_get_m(line& l, const message& m) {
  const cs st = l.st;
  switch (st) {
    case cs::E:
    case cs::M:
    case cs::O:
    case cs::OM_AC:
    case cs::MI_A:
    case cs::EI_A:
    case cs::OI_A: {
      record(st, ev::fwd_get_m);
      auto d = reply_data(m.key, l, m.txn);
      d.dirty = l.dirty;
      d.acks = m.acks;
      send(m.node, l.epoch, std::move(d));
      ++stats_.invalidations;
      if (st == cs::E || st == cs::M || st == cs::O) {
        remove(m.key);
        return true;
      }
      l.has_data = false;
      l.val.reset();
      l.dirty = false;
      if (st == cs::OM_AC) {
        // Our upgrade lost the race: it will be served later as a plain GetM.
        l.got_data = false;
        set_state(m.key, l, cs::IM_AD);
      } else {
        set_state(m.key, l, cs::II_A);
      }
      return true;
    }
    case cs::MW_A:
      record(st, ev::fwd_get_m);
      return false;
    default: ++stats_.unexpected_messages; return true;
  }
}

bool controller::handle_inv(line* l, const message& m) {
  const cs st = l ? l->st : cs::I;
  auto ack = [&] {
    message a;
    a.kind = msg_kind::inv_ack;
    a.key = m.key;
    a.txn = m.txn;
    a.node = cfg_.self;
    send(m.node, m.epoch, std::move(a));
  };
  switch (st) {
    case cs::I:  // after a recovery only (the sharer list was a superset)
      record(st, ev::inv);
      ack();
      return true;
    case cs::S:
      record(st, ev::inv);
      ack();
      ++stats_.invalidations;
      remove(m.key);
      return true;
    case cs::SM_AD:  // an invalidation crossing our upgrade: we need data after all
    case cs::SI_A:
      record(st, ev::inv);
      ack();
      ++stats_.invalidations;
      l->has_data = false;
      l->val.reset();
      set_state(m.key, *l, st == cs::SM_AD ? cs::IM_AD : cs::II_A);
      return true;
    case cs::IS_D:  // the data is on its way: use it once, then invalidate
      record(st, ev::inv);
      return false;
    default: ++stats_.unexpected_messages; return true;
  }
}

bool controller::handle_recall(const std::string& from, line* l, const message& m) {
  const cs st = l ? l->st : cs::I;
  auto ack = [&](bool with_data) {
    message a;
    a.kind = msg_kind::recall_ack;
    a.key = m.key;
    a.txn = m.txn;
    if (with_data) {
      a.has_data = true;
      a.val = l->val;
      a.dirty = l->dirty;
      if (l->dirty) ++stats_.write_backs;
    }
    send(from, m.epoch, std::move(a));
  };
  auto drop_data = [&] {
    l->got_data = false;  // an upgrade that lost its data waits for Data like IM^AD
    l->has_data = false;
    l->val.reset();
    l->dirty = false;
  };
  switch (st) {
    case cs::I:
    case cs::IS_D:
    case cs::IM_AD:
    case cs::II_A:
      record(st, ev::recall);
      ack(false);
      return true;
    case cs::S:
    case cs::E:
    case cs::M:
    case cs::O:
      record(st, ev::recall);
      ack(st == cs::M || st == cs::O);
      ++stats_.invalidations;
      remove(m.key);
      return true;
    case cs::SM_AD:
    case cs::OM_AC:
      record(st, ev::recall);
      ack(st == cs::OM_AC);
      ++stats_.invalidations;
      drop_data();
      set_state(m.key, *l, cs::IM_AD);
      return true;
    case cs::SI_A:
    case cs::EI_A:
    case cs::MI_A:
    case cs::OI_A:
      record(st, ev::recall);
      ack(st == cs::MI_A || st == cs::OI_A);
      drop_data();
      set_state(m.key, *l, cs::II_A);
      return true;
    case cs::MW_A:
    case cs::IM_A:
    case cs::SM_A:
    case cs::OM_A:
      record(st, ev::recall);
      return false;
  }
  ++stats_.unexpected_messages;
  return true;
}

void controller::handle_data(line& l, const message& m) {
  if (m.revert && l.st != cs::IS_D) {
    // The directory's answer to a GetS whose owner died: it replaces whatever the dead
    // owner sent, so that no copy of data that never reached memory survives.
    if (l.fill_txn == m.txn && (l.st == cs::S || l.st == cs::SM_AD || l.st == cs::SI_A)) {
      record(l.st, ev::revert_data);
      l.val = m.val;
      l.dirty = false;
      changed(m.key);
    } else {
      ++stats_.duplicate_messages;
    }
    return;
  }
  if (l.txn != m.txn || l.got_data || (l.st != cs::IS_D && l.st != cs::IM_AD && l.st != cs::SM_AD)) {
    ++stats_.duplicate_messages;  // e.g. re-sent by the directory after the sender died
    return;
  }
  const cs st = l.st;
  l.got_data = true;
  l.has_data = true;
  l.val = m.val;
  l.fill_txn = m.txn;
  if (st == cs::IS_D) {
    const bool excl = m.exclusive && has_exclusive(cfg_.proto);
    record(st, m.revert ? ev::revert_data : excl ? ev::excl_data : ev::data);
    l.dirty = false;
    set_state(m.key, l, excl ? cs::E : cs::S);
    message u;
    u.kind = msg_kind::unblock;
    u.key = m.key;
    u.txn = m.txn;
    send_home(l, std::move(u));
    replacer_.touch(m.key);
    finish_head(m.key, l.val ? status::ok : status::not_found, l.val, l.st);
    return;
  }
  l.dirty = m.dirty;
  l.acks_known = true;
  l.acks_expected = m.acks;
  if (all_acked(l)) {
    record(st, ev::data_ack0);
    reach_m(m.key, l);
  } else {
    record(st, ev::data_acks);
    set_state(m.key, l, st == cs::IM_AD ? cs::IM_A : cs::SM_A);
  }
}

void controller::handle_inv_ack(line& l, const message& m) {
  if (l.txn != m.txn || !collecting_acks(l.st)) {
    ++stats_.duplicate_messages;
    return;
  }
  l.acks_got.insert(m.node);
  const cs st = l.st;
  const bool have_all = (st == cs::IM_A || st == cs::SM_A || st == cs::OM_A) && all_acked(l);
  record(st, have_all ? ev::last_inv_ack : ev::inv_ack);
  if (have_all) reach_m(m.key, l);
}

void controller::handle_ack_count(line& l, const message& m) {
  if (l.txn != m.txn || l.st != cs::OM_AC) {
    ++stats_.unexpected_messages;
    return;
  }
  l.acks_known = true;
  l.acks_expected = m.acks;
  if (all_acked(l)) {
    record(cs::OM_AC, ev::ack_count0);
    reach_m(m.key, l);
  } else {
    record(cs::OM_AC, ev::ack_counts);
    set_state(m.key, l, cs::OM_A);
  }
}

void controller::handle_put_ack(line& l, const message& m) {
  if (resident(l.st)) {
    ++stats_.unexpected_messages;
    return;
  }
  record(l.st, ev::put_ack);
  remove(m.key);
}

void controller::handle_wt_ack(line& l, const message& m) {
  if (l.st != cs::MW_A || l.txn != m.txn) {
    ++stats_.unexpected_messages;
    return;
  }
  record(cs::MW_A, ev::wt_ack);
  l.dirty = false;
  set_state(m.key, l, cs::M);
  finish_head(m.key, status::ok, {}, cs::M);
}

void controller::handle_nack(const message& m) {
  auto it = ops_.find(m.key);
  if (it == ops_.end() || it->second.empty() || !it->second.front().started || it->second.front().txn != m.txn) {
    ++stats_.duplicate_messages;
    return;
  }
  pending& h = it->second.front();
  if (h.op.kind == op_kind::get || h.op.kind == op_kind::put) {
    line* l = find(m.key, m.epoch);
    if (!l || l->txn != m.txn) {
      ++stats_.unexpected_messages;
      return;
    }
    const cs st = l->st;
    record(st, ev::nack);
    l->acks_known = false;
    l->acks_expected.clear();
    l->acks_got.clear();
    if (st == cs::IS_D || st == cs::IM_AD) remove(m.key);
    else if (st == cs::SM_AD) set_state(m.key, *l, cs::S);
    else if (st == cs::OM_AC) set_state(m.key, *l, cs::O);
    else ++stats_.unexpected_messages;
  }
  ++stats_.nacks;
  h.started = false;
  h.refused_in = m.epoch;
  if (h.detached) {
    requests_.erase(h.op.request);
    it->second.pop_front();
  }
  ready_.insert(m.key);
}

void controller::handle_done(const message& m) {
  auto it = ops_.find(m.key);
  if (it == ops_.end() || it->second.empty()) {
    ++stats_.duplicate_messages;
    return;
  }
  auto& h = it->second.front();
  if (!h.started || h.txn != m.txn || (h.op.kind != op_kind::del && h.op.kind != op_kind::invalidate)) {
    ++stats_.duplicate_messages;
    return;
  }
  finish_head(m.key, status::ok, {}, state(m.key));
}

// --- client operations ----------------------------------------------------------------

void controller::drain() {
  while (!retry_.empty() || !ready_.empty()) {
    if (!retry_.empty()) {
      auto key = *retry_.begin();
      retry_.erase(retry_.begin());
      retry_stalled(key);
    } else {
      auto key = *ready_.begin();
      ready_.erase(ready_.begin());
      pump(key);
    }
  }
}

void controller::retry_stalled(const std::string& key) {
  for (;;) {
    line* l = find(key);
    if (!l || l->stalled.empty()) return;
    auto item = std::move(l->stalled.front());
    l->stalled.pop_front();
    if (!handle_request(item.first, item.second)) {
      find(key)->stalled.push_front(std::move(item));
      return;
    }
  }
}

void controller::pump(const std::string& key) {
  for (;;) {
    auto it = ops_.find(key);
    if (it == ops_.end()) return;
    if (it->second.empty()) {
      ops_.erase(it);
      return;
    }
    pending& h = it->second.front();
    if (h.started || h.refused_in >= epoch_) return;
    line* l = find(key);
    const cs st = l ? l->st : cs::I;
    // An older epoch's line still serves hits, but no transaction starts before it is
    // gone (its home recalls it), and none starts while the key's home is down.
    const bool blocked = (l && l->epoch < epoch_) || dead_.count(members_.home(key));
    switch (h.op.kind) {
      case op_kind::get: {
        if (readable(st)) {
          record(st, ev::load);
          ++stats_.hits;
          replacer_.touch(key);
          finish_head(key, l->val ? status::ok : status::not_found, l->val, st);
          continue;
        }
        if (l || blocked || !allocate(key)) return;
        record(cs::I, ev::load);
        ++stats_.misses;
        line& n = create(key, cs::IS_D);
        n.txn = h.txn = ++next_txn_;
        h.started = true;
        message g;
        g.kind = msg_kind::get_s;
        g.key = key;
        g.txn = n.txn;
        send_home(n, std::move(g));
        return;
      }
      case op_kind::put: {
        if (st == cs::M || st == cs::E) {
          record(st, ev::store);
          ++stats_.hits;
          if (st == cs::E) set_state(key, *l, cs::M);  // silent upgrade
          replacer_.touch(key);
          h.txn = ++next_txn_;
          l->txn = h.txn;
          if (write(key, *l, h)) continue;
          return;
        }
        if (blocked || (st != cs::S && st != cs::O && (st != cs::I || !allocate(key)))) return;
        record(st, ev::store);
        ++stats_.misses;
        line& n = st == cs::I ? create(key, cs::IM_AD) : *l;
        if (st == cs::S) set_state(key, n, cs::SM_AD);
        if (st == cs::O) set_state(key, n, cs::OM_AC);
        n.txn = h.txn = ++next_txn_;
        n.got_data = st == cs::O;  // an O owner has the data; it waits for AckCount only
        n.acks_known = false;
        n.acks_expected.clear();
        n.acks_got.clear();
        h.started = true;
        message g;
        g.kind = msg_kind::get_m;
        g.key = key;
        g.txn = n.txn;
        send_home(n, std::move(g));
        return;
      }
      case op_kind::del:
      case op_kind::invalidate: {
        if (blocked) return;
        h.txn = ++next_txn_;
        h.started = true;
        h.home = members_.home(key);
        message d;
        d.kind = h.op.kind == op_kind::del ? msg_kind::del : msg_kind::inval;
        d.key = key;
        d.txn = h.txn;
        send(h.home, epoch_, std::move(d));
        return;
      }
    }
    return;
  }
}

bool controller::allocate(const std::string& key) {
  if (resident_ < cfg_.capacity) {
    waiting_slot_.erase(key);
    return true;
  }
  auto victim = replacer_.victim([&](const std::string& k) {
    if (k == key) return false;
    auto it = lines_.find(k);
    return it != lines_.end() && stable(it->second.st);
  });
  if (!victim) {
    waiting_slot_.insert(key);  // retried when a line becomes evictable or leaves
    return false;
  }
  evict(*victim, lines_.find(*victim)->second);
  waiting_slot_.erase(key);
  return true;
}

void controller::evict(const std::string& key, line& l) {
  const cs st = l.st;
  record(st, ev::replacement);
  ++stats_.evictions;
  message p;
  p.key = key;
  switch (st) {
    case cs::S: p.kind = msg_kind::put_s; break;
    case cs::E: p.kind = msg_kind::put_e; break;
    case cs::M: p.kind = msg_kind::put_m; break;
    default: p.kind = msg_kind::put_o; break;
  }
  if (st == cs::M || st == cs::O) {
    p.has_data = true;
    p.val = l.val;
    p.dirty = l.dirty;
    if (l.dirty) ++stats_.write_backs;
  }
  send_home(l, std::move(p));
  set_state(key, l, st == cs::S ? cs::SI_A : st == cs::E ? cs::EI_A : st == cs::M ? cs::MI_A : cs::OI_A);
}

void controller::reach_m(const std::string& key, line& l) {
  set_state(key, l, cs::M);
  message u;
  u.kind = msg_kind::unblock;
  u.key = key;
  u.txn = l.txn;
  send_home(l, std::move(u));
  auto it = ops_.find(key);
  if (it == ops_.end() || it->second.empty() || it->second.front().op.kind != op_kind::put) return;
  replacer_.touch(key);
  if (write(key, l, it->second.front())) ready_.insert(key);
}

bool controller::write(const std::string& key, line& l, pending& p) {
  if (p.detached) {  // expired before it could write: leave the line as it is
    requests_.erase(p.op.request);
    ops_[key].pop_front();
    return true;
  }
  l.has_data = true;
  l.val = p.op.value;
  changed(key);
  if (cfg_.policy == write_policy::write_back) {
    l.dirty = true;
    finish_head(key, status::ok, {}, cs::M);
    return true;
  }
  // Write-through: memory first, then the client. Until the WT-Ack the line answers
  // nobody (forwards and recalls stall), so no copy can spread a value memory lacks.
  p.wrote = true;
  p.started = true;
  l.dirty = false;
  set_state(key, l, cs::MW_A);
  message w;
  w.kind = msg_kind::write_through;
  w.key = key;
  w.txn = l.txn;
  w.has_data = true;
  w.val = l.val;
  ++stats_.write_throughs;
  send_home(l, std::move(w));
  return false;
}

void controller::lose_home(const std::string& key) {
  line& l = lines_.find(key)->second;
  ++stats_.lines_lost_with_home;  // one rule for every state (README), not a table entry
  l.stalled.clear();  // requests of the dead home's transactions: nobody waits for them
  auto it = ops_.find(key);
  if (it != ops_.end() && !it->second.empty() && it->second.front().started) {
    pending& h = it->second.front();
    if (h.op.kind == op_kind::get || h.op.kind == op_kind::put) {
      if (h.wrote || h.detached) {  // a write-through that may or may not have landed
        complete(h, status::error, {}, cs::I, errc::home_down, h.wrote);
        requests_.erase(h.op.request);
        it->second.pop_front();
      } else {
        h.started = false;  // waits for an epoch with a live home
      }
    }
  }
  // The newest data of the key, if this line surely holds it: a dirty line in a stable
  // or upgrading state (single writer). An eviction waiting for its Put-Ack may already
  // be in memory and overwritten since: dropping it is the only safe choice.
  if (l.has_data && l.dirty && l.st != cs::MI_A && l.st != cs::OI_A) {
    memory_op w;
    w.id = ++next_mem_id_;
    w.key = key;
    w.kind = l.val ? memory_kind::write : memory_kind::erase;
    if (l.val) w.value = *l.val;
    writes_.insert(w.id);
    fx_.memory.push_back(std::move(w));
    ++stats_.write_backs;
  }
  remove(key);
}

void controller::finish_head(const std::string& key, status st, const value& v, cache_state s) {
  auto it = ops_.find(key);
  if (it == ops_.end() || it->second.empty()) return;
  auto& h = it->second.front();
  complete(h, st, v, s);
  requests_.erase(h.op.request);
  it->second.pop_front();
  ready_.insert(key);
}

void controller::complete(const pending& p, status st, const value& v, cache_state s, std::string_view error,
                          bool maybe_applied) {
  if (p.detached) return;
  completion c;
  c.request = p.op.request;
  c.kind = p.op.kind;
  c.key = p.op.key;
  c.result = st;
  if (p.op.kind == op_kind::get) c.val = v;
  c.state = s;
  c.error = std::string(error);
  c.maybe_applied = maybe_applied;
  fx_.completions.push_back(std::move(c));
}

void controller::maybe_send_flushed() {
  if (!flushed_due_ || !writes_.empty() || old_lines_) return;
  flushed_due_ = false;
  for (const auto& member : members_.members) {
    message f;
    f.kind = msg_kind::flushed;
    send(member, epoch_, std::move(f));
  }
}

// --- lines ----------------------------------------------------------------------------

controller::line* controller::find(const std::string& key) {
  auto it = lines_.find(key);
  return it == lines_.end() ? nullptr : &it->second;
}

controller::line* controller::find(const std::string& key, uint64_t e) {
  auto it = lines_.find(key);
  return it == lines_.end() || it->second.epoch != e ? nullptr : &it->second;
}

controller::line& controller::create(const std::string& key, cache_state st) {
  line& l = lines_[key];
  l.epoch = epoch_;
  l.home = members_.home(key);
  set_state(key, l, st);
  return l;
}

void controller::set_state(const std::string& key, line& l, cache_state st) {
  const cs old = l.st;
  if (old == st) return;
  changed(key);
  if (old != cs::I) --state_counts_[static_cast<size_t>(old)];
  if (st != cs::I) ++state_counts_[static_cast<size_t>(st)];
  if (resident(old) && !resident(st)) {
    --resident_;
    replacer_.erase(key);
    for (const auto& k : waiting_slot_) ready_.insert(k);
  } else if (!resident(old) && resident(st)) {
    ++resident_;
    replacer_.insert(key);
  }
  l.st = st;
  if (!l.stalled.empty()) retry_.insert(key);
  if (stable(st)) {
    ready_.insert(key);
    for (const auto& k : waiting_slot_) ready_.insert(k);  // a new eviction candidate
  }
}

void controller::remove(const std::string& key) {
  auto it = lines_.find(key);
  if (it == lines_.end()) return;
  auto orphans = std::move(it->second.stalled);
  it->second.stalled.clear();
  if (it->second.epoch < epoch_) --old_lines_;
  set_state(key, it->second, cs::I);
  lines_.erase(it);
  ready_.insert(key);
  // Requests that waited behind the one that removed the line now meet I.
  for (auto& [from, m] : orphans) handle_request(from, m);
}

bool controller::all_acked(const line& l) const {
  if (!l.acks_known) return false;
  for (const auto& a : l.acks_expected)
    if (!l.acks_got.count(a)) return false;
  return true;
}

void controller::send(const std::string& to, uint64_t epoch, message m) {
  m.epoch = epoch;
  fx_.messages.push_back(envelope{to, std::move(m)});
}

}  // namespace dsync::cache
