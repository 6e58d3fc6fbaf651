#include "protocols/cache/directory.hpp"

#include <algorithm>
#include <stdexcept>

namespace dsync::cache {

namespace {

constexpr std::string_view row_names[dir_row_count] = {"I", "S", "E", "O", "M", "busy", "closing"};

constexpr std::string_view event_names[dir_event_count] = {
    "GetS", "GetM", "GetM(owner)", "PutS", "PutS(last)", "Put(owner)", "Put(non-owner)", "Del", "Inval",
    "WriteThrough", "OwnerData", "Unblock", "Recall-Ack", "Last-Recall-Ack", "Mem-Read", "Mem-Write",
    "Down(sharer)", "Down(owner)", "Down(requester)", "Down(forwarded)", "Down(invalidated)", "Down(recalled)",
    "Close",
};

dir_event request_event(msg_kind k) {
  switch (k) {
    case msg_kind::get_s: return dir_event::get_s;
    case msg_kind::get_m: return dir_event::get_m;
    case msg_kind::put_s: return dir_event::put_s;
    case msg_kind::del: return dir_event::del;
    case msg_kind::inval: return dir_event::inval;
    default: return dir_event::put_owner;  // put_e / put_m / put_o
  }
}

bool is_request(msg_kind k) {
  return k == msg_kind::get_s || k == msg_kind::get_m || k == msg_kind::put_s || k == msg_kind::put_e ||
         k == msg_kind::put_m || k == msg_kind::put_o || k == msg_kind::del || k == msg_kind::inval;
}

bool is_put(msg_kind k) {
  return k == msg_kind::put_s || k == msg_kind::put_e || k == msg_kind::put_m || k == msg_kind::put_o;
}

}  // namespace

std::optional<message> refusal(const message& m) {
  message a;
  a.key = m.key;
  a.epoch = m.epoch;
  if (is_put(m.kind)) {
    a.kind = msg_kind::put_ack;
  } else if (is_request(m.kind)) {
    a.kind = msg_kind::nack;
    a.txn = m.txn;
  } else {
    return std::nullopt;
  }
  return a;
}

std::string_view to_string(dir_state s) { return row_names[static_cast<size_t>(s)]; }
std::string_view to_string(dir_row r) { return row_names[static_cast<size_t>(r)]; }
std::string_view to_string(dir_event e) {
  auto i = static_cast<size_t>(e);
  return i < dir_event_count ? event_names[i] : "?";
}

std::string directory::config::validate() const {
  if (self.empty() || self.size() > max_node_id_bytes)
    return "directory: self must be a node id of 1.." + std::to_string(max_node_id_bytes) + " bytes";
  return {};
}

directory::directory(config cfg, membership m) : cfg_(std::move(cfg)) {
  if (auto why = cfg_.validate(); !why.empty()) throw std::invalid_argument(why);
  if (auto why = m.validate(); !why.empty()) throw std::invalid_argument("directory: " + why);
  epoch_ = m.epoch;
  members_ = std::move(m);
}

// --- inputs -------------------------------------------------------------------------

effects directory::start() {
  serving_ = false;
  flushed_due_ = true;
  maybe_send_flushed();
  return std::exchange(fx_, {});
}

effects directory::on_message(const std::string& from, const message& m) {
  if (!for_directory(m.kind)) {
    ++stats_.unexpected_messages;
  } else {
    deliver(from, m);
  }
  return std::exchange(fx_, {});
}

effects directory::on_memory_done(uint64_t id, value v) {
  auto it = issued_.find(id);
  if (it == issued_.end()) {
    ++stats_.unexpected_messages;
    return {};
  }
  const auto [key, e] = it->second;
  issued_.erase(it);
  table& t = e == epoch_ ? lines_ : closing_;
  auto li = t.find(key);
  if (li == t.end() || li->second.mem.empty() || li->second.mem.front().id != id) {
    ++stats_.unexpected_messages;  // cannot happen: one operation in flight per line
    return std::exchange(fx_, {});
  }
  line& l = li->second;
  mem_job job = std::move(l.mem.front());
  l.mem.pop_front();
  record(dir_row::busy, job.kind == memory_kind::read ? dir_event::mem_read : dir_event::mem_write);
  message r;
  r.key = key;
  r.txn = job.txn;
  switch (job.action) {
    case then::nothing: break;
    case then::data:
    case then::revert:
      r.kind = msg_kind::data;
      r.has_data = true;
      r.val = std::move(v);
      r.exclusive = job.exclusive;
      r.revert = job.action == then::revert;
      r.acks = std::move(job.acks);
      send(job.to, l.epoch, std::move(r));
      break;
    case then::put_ack:
      r.kind = msg_kind::put_ack;
      r.txn = 0;
      send(job.to, l.epoch, std::move(r));
      break;
    case then::wt_ack:
      r.kind = msg_kind::wt_ack;
      send(job.to, l.epoch, std::move(r));
      break;
    case then::done:
      r.kind = msg_kind::done;
      send(job.to, l.epoch, std::move(r));
      break;
  }
  issue(key, l);
  advance(t, key);
  return std::exchange(fx_, {});
}

effects directory::on_membership(membership m) {
  if (auto why = m.validate(); !why.empty()) throw std::invalid_argument("directory: " + why);
  if (m.epoch <= epoch_) return {};
  ++stats_.epoch_changes;
  if (serving_) {
    start_closing();
  } else {
    // This epoch never started here: its requests go back to their senders.
    auto w = std::move(waiting_);
    waiting_.clear();
    for (auto& [from, msg] : w) refuse(from, msg);
  }
  epoch_ = m.epoch;
  members_ = std::move(m);
  serving_ = false;
  flushed_due_ = true;
  maybe_send_flushed();
  check_barrier();
  auto buffered = std::move(future_);
  future_.clear();
  for (auto& [from, msg] : buffered) deliver(from, msg);
  return std::exchange(fx_, {});
}

effects directory::on_node_down(const std::string& node) {
  if (!dead_.insert(node).second) return {};
  // Nothing a dead node asked for may make it a sharer or owner again.
  future_.erase(std::remove_if(future_.begin(), future_.end(), [&](const auto& f) { return f.first == node; }),
                future_.end());
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w.first == node; }),
                 waiting_.end());
  for (table* t : {&closing_, &lines_}) {
    std::vector<std::string> keys;
    for (const auto& [k, l] : *t) keys.push_back(k);
    for (const auto& k : keys) {
      auto it = t->find(k);
      if (it == t->end()) continue;
      node_down_line(k, it->second, node);
      advance(*t, k);
    }
  }
  check_barrier();
  return std::exchange(fx_, {});
}

effects directory::on_node_up(const std::string& node) {
  dead_.erase(node);
  return {};
}

// --- inspection ---------------------------------------------------------------------

directory::line_view directory::view(const std::string& key) const {
  line_view v;
  const line* found = nullptr;
  if (auto it = lines_.find(key); it != lines_.end()) found = &it->second;
  else if (auto c = closing_.find(key); c != closing_.end()) found = &c->second;
  if (!found) {
    v.state = "I";
    return v;
  }
  const line& l = *found;
  v.state = state_name(l);
  if (l.epoch != epoch_) v.state += "(closing e" + std::to_string(l.epoch) + ")";
  v.owner = l.owner;
  v.sharers.assign(l.sharers.begin(), l.sharers.end());
  v.queued = l.queue.size();
  return v;
}

std::vector<std::string> directory::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, l] : lines_) out.push_back(k);
  return out;
}

std::vector<std::string> directory::barrier_waiting() const {
  std::vector<std::string> out;
  if (serving_) return out;
  for (const auto& n : members_.members) {
    if (dead_.count(n)) continue;
    for (bool d : {false, true}) {
      auto it = flushed_.find({n, d});
      if (it == flushed_.end() || it->second < epoch_) out.push_back(n + (d ? ", dir" : ", ctl"));
    }
  }
  return out;
}

bool directory::idle() const {
  if (!serving_ || !closing_.empty() || !waiting_.empty() || !future_.empty() || flushed_due_) return false;
  for (const auto& [k, l] : lines_)
    if (busy(l) || !l.queue.empty()) return false;
  return true;
}

std::string directory::state_name(const line& l) const {
  std::string s{to_string(l.st)};
  std::string waits;
  if (l.tx && (!l.tx->recall.empty() || l.tx->revert_after_recall)) waits += 'A';
  if (l.tx && l.tx->wait_data) waits += 'D';
  if (!l.mem.empty()) waits += 'M';
  if (l.tx && l.tx->wait_unblock) waits += 'U';
  if (!waits.empty()) s += "^" + waits;
  return s;
}

dir_row directory::row(const line& l) const {
  return busy(l) ? dir_row::busy : static_cast<dir_row>(static_cast<uint8_t>(l.st));
}

// --- messages -------------------------------------------------------------------------

void directory::deliver(const std::string& from, const message& m) {
  if (m.kind == msg_kind::flushed) {
    // Flushed(e) also vouches for every older epoch.
    auto& seen = flushed_[{from, m.from_directory}];
    seen = std::max(seen, m.epoch);
    check_barrier();
    return;
  }
  if (m.epoch > epoch_) {
    if (future_.size() < cfg_.max_future_messages) future_.emplace_back(from, m);
    return;
  }
  if (m.epoch == epoch_) {
    if (!serving_) {
      waiting_.emplace_back(from, m);
      return;
    }
    handle_in(lines_, from, m);
    return;
  }
  if (!closing_.empty() && m.epoch == closing_epoch_) {
    handle_in(closing_, from, m);
    return;
  }
  refuse(from, m);
}

void directory::refuse(const std::string& from, const message& m) {
  auto a = refusal(m);
  if (!a) {
    ++stats_.stale_messages;
    return;
  }
  if (a->kind == msg_kind::put_ack) {
    // Its line was recalled when the epoch closed (or it lost it before): nothing to write.
    record(dir_row::closing, dir_event::put_non_owner);
  } else {
    record(dir_row::closing, request_event(m.kind));
    ++stats_.nacks;
  }
  send(from, m.epoch, std::move(*a));
}

void directory::handle_in(table& t, const std::string& from, const message& m) {
  const bool closing = &t == &closing_;
  if (members_of(m.epoch).home(m.key) != cfg_.self) {  // the members disagree about the ring
    ++stats_.unexpected_messages;
    return;
  }
  if (closing && is_request(m.kind) && !is_put(m.kind)) {
    refuse(from, m);  // a closing epoch takes no new transactions
    return;
  }
  auto [it, fresh] = t.try_emplace(m.key);
  line& l = it->second;
  if (fresh) l.epoch = m.epoch;
  if (is_request(m.kind)) {
    if (busy(l) || !l.queue.empty()) {
      // "A request arriving while the directory waits": it waits its turn.
      record(dir_row::busy, request_event(m.kind));
      ++stats_.queued_requests;
      l.queue.emplace_back(from, m);
    } else {
      process_request(m.key, l, from, m);
    }
  } else {
    on_response(m.key, l, from, m);
  }
  advance(t, m.key);
}

void directory::process_request(const std::string& key, line& l, const std::string& from, const message& m) {
  switch (m.kind) {
    case msg_kind::get_s: on_get_s(key, l, from, m); return;
    case msg_kind::get_m: on_get_m(key, l, from, m); return;
    case msg_kind::put_s:
    case msg_kind::put_e:
    case msg_kind::put_m:
    case msg_kind::put_o: on_put(key, l, from, m); return;
    case msg_kind::del:
    case msg_kind::inval: on_del_or_inval(key, l, from, m); return;
    default: ++stats_.unexpected_messages; return;
  }
}

void directory::on_get_s(const std::string& key, line& l, const std::string& from, const message& m) {
  if (from == l.owner || l.sharers.count(from)) {  // it holds a copy: it cannot ask
    ++stats_.unexpected_messages;
    return;
  }
  const dir_row r = row(l);
  record(r, dir_event::get_s);
  transaction t;
  t.kind = tx_kind::get_s;
  t.requester = from;
  t.txn = m.txn;
  t.wait_unblock = true;
  mem_job read;
  read.kind = memory_kind::read;
  read.action = then::data;
  read.to = from;
  read.txn = m.txn;
  switch (l.st) {
    case dir_state::I:
      if (has_exclusive(cfg_.proto)) {
        l.st = dir_state::E;
        l.owner = from;
        read.exclusive = true;
      } else {
        l.st = dir_state::S;
        l.sharers.insert(from);
      }
      l.tx = std::move(t);
      add_job(key, l, std::move(read));
      return;
    case dir_state::S:
      l.sharers.insert(from);
      l.tx = std::move(t);
      add_job(key, l, std::move(read));
      return;
    case dir_state::E:
    case dir_state::M:
    case dir_state::O: {
      message f;
      f.kind = msg_kind::fwd_get_s;
      f.key = key;
      f.txn = m.txn;
      f.node = from;
      send(l.owner, l.epoch, std::move(f));
      ++stats_.forwards;
      t.forwarded_to = l.owner;
      if (cfg_.proto == protocol::mesi) {
        // Primer S^D: the owner's data must reach memory before the line is shared.
        t.wait_data = true;
        l.sharers.insert(l.owner);
        l.sharers.insert(from);
        l.owner.clear();
        l.st = dir_state::S;
      } else {
        l.sharers.insert(from);
        l.st = dir_state::O;  // the owner keeps the (possibly dirty) data
      }
      l.tx = std::move(t);
      return;
    }
  }
}

void directory::on_get_m(const std::string& key, line& l, const std::string& from, const message& m) {
  const dir_row r = row(l);
  transaction t;
  t.kind = tx_kind::get_m;
  t.requester = from;
  t.txn = m.txn;
  t.wait_unblock = true;
  auto invalidate = [&](const std::vector<std::string>& targets) {
    for (const auto& s : targets) {
      message inv;
      inv.kind = msg_kind::inv;
      inv.key = key;
      inv.txn = m.txn;
      inv.node = from;
      send(s, l.epoch, std::move(inv));
      ++stats_.invalidations;
    }
  };
  std::vector<std::string> others;
  for (const auto& s : l.sharers)
    if (s != from) others.push_back(s);
  switch (l.st) {
    case dir_state::I:
    case dir_state::S: {
      record(r, dir_event::get_m);
      invalidate(others);
      mem_job read;
      read.kind = memory_kind::read;
      read.action = then::data;
      read.to = from;
      read.txn = m.txn;
      read.acks = others;
      t.inv_targets = others;
      l.sharers.clear();
      l.owner = from;
      l.st = dir_state::M;
      l.tx = std::move(t);
      add_job(key, l, std::move(read));
      return;
    }
    case dir_state::E:
    case dir_state::M:
    case dir_state::O: {
      if (from == l.owner) {
        if (l.st != dir_state::O) {  // an E/M owner never asks
          ++stats_.unexpected_messages;
          return;
        }
        record(r, dir_event::get_m_owner);
        message c;
        c.kind = msg_kind::ack_count;
        c.key = key;
        c.txn = m.txn;
        c.acks = others;
        send(from, l.epoch, std::move(c));
        invalidate(others);
        t.kind = tx_kind::upgrade;
      } else {
        record(r, dir_event::get_m);
        message f;
        f.kind = msg_kind::fwd_get_m;
        f.key = key;
        f.txn = m.txn;
        f.node = from;
        f.acks = others;
        send(l.owner, l.epoch, std::move(f));
        ++stats_.forwards;
        invalidate(others);
        t.forwarded_to = l.owner;
      }
      t.inv_targets = others;
      l.sharers.clear();
      l.owner = from;
      l.st = dir_state::M;
      l.tx = std::move(t);
      return;
    }
  }
}

void directory::on_put(const std::string& key, line& l, const std::string& from, const message& m) {
  const dir_row r = row(l);
  auto ack = [&] {
    message a;
    a.kind = msg_kind::put_ack;
    a.key = key;
    send(from, l.epoch, std::move(a));
  };
  if (m.kind == msg_kind::put_s) {
    if (l.sharers.erase(from)) {
      const bool last = l.sharers.empty();
      record(r, last ? dir_event::put_s_last : dir_event::put_s);
      if (last && l.st == dir_state::S) l.st = dir_state::I;
    } else {
      record(r, dir_event::put_non_owner);  // it lost its copy to an Inv meanwhile
    }
    ack();
    return;
  }
  if (from != l.owner) {
    // Its data went to a requester (Fwd-GetM) or home (MESI Fwd-GetS) meanwhile.
    record(r, dir_event::put_non_owner);
    if (l.sharers.erase(from) && l.sharers.empty() && l.st == dir_state::S) l.st = dir_state::I;
    ack();
    return;
  }
  record(r, dir_event::put_owner);
  l.owner.clear();
  l.st = l.sharers.empty() ? dir_state::I : dir_state::S;
  if (m.has_data && m.dirty) {
    mem_job w;
    w.kind = memory_kind::write;
    w.val = m.val;
    w.action = then::put_ack;
    w.to = from;
    add_job(key, l, std::move(w));  // Put-Ack once memory has it
  } else {
    ack();
  }
}

void directory::on_del_or_inval(const std::string& key, line& l, const std::string& from, const message& m) {
  const bool del = m.kind == msg_kind::del;
  record(row(l), del ? dir_event::del : dir_event::inval);
  std::set<std::string> holders = l.sharers;
  if (!l.owner.empty()) holders.insert(l.owner);
  if (holders.empty()) {
    if (del) {
      mem_job e;
      e.kind = memory_kind::erase;
      e.action = then::done;
      e.to = from;
      e.txn = m.txn;
      add_job(key, l, std::move(e));
    } else {
      message d;
      d.kind = msg_kind::done;
      d.key = key;
      d.txn = m.txn;
      send(from, l.epoch, std::move(d));
    }
    return;
  }
  transaction t;
  t.kind = del ? tx_kind::del : tx_kind::inval;
  t.requester = from;
  t.txn = m.txn;
  l.tx = std::move(t);
  start_recall(key, l, *l.tx, holders);
}

void directory::start_recall(const std::string& key, line& l, transaction& t, const std::set<std::string>& targets) {
  t.recall_id = ++next_recall_id_;
  for (const auto& n : targets) {
    if (dead_.count(n)) continue;
    t.recall.insert(n);
    message r;
    r.kind = msg_kind::recall;
    r.key = key;
    r.txn = t.recall_id;
    send(n, l.epoch, std::move(r));
    ++stats_.invalidations;
  }
  if (t.recall.empty()) recall_done(key, l);
}

void directory::on_response(const std::string& key, line& l, const std::string& from, const message& m) {
  transaction* t = l.tx ? &*l.tx : nullptr;
  switch (m.kind) {
    case msg_kind::unblock:
      if (t && t->wait_unblock && t->requester == from && t->txn == m.txn) {
        record(dir_row::busy, dir_event::unblock);
        t->wait_unblock = false;
      } else {
        ++stats_.duplicate_messages;
      }
      return;
    case msg_kind::owner_data:
      if (t && t->wait_data && t->forwarded_to == from) {
        record(dir_row::busy, dir_event::owner_data);
        t->wait_data = false;
        if (m.dirty) {
          mem_job w;
          w.kind = memory_kind::write;
          w.val = m.val;
          add_job(key, l, std::move(w));
        }
      } else {
        ++stats_.unexpected_messages;
      }
      return;
    case msg_kind::recall_ack:
      if (t && t->recall_id == m.txn && t->recall.erase(from)) {
        record(dir_row::busy, t->recall.empty() ? dir_event::last_recall_ack : dir_event::recall_ack);
        if (m.has_data && m.dirty) {
          t->recalled_dirty = true;
          t->recalled_val = m.val;
        }
        if (t->recall.empty()) recall_done(key, l);
      } else {
        ++stats_.duplicate_messages;
      }
      return;
    case msg_kind::write_through: {
      // The writer stalls every forward and recall until our WT-Ack, so it is still the
      // owner, or the one a transaction is waiting on: no newer value can exist yet.
      const bool legit = from == l.owner || (t && (t->forwarded_to == from || t->recall.count(from)));
      if (!legit) {
        ++stats_.unexpected_messages;
        return;
      }
      record(row(l), dir_event::write_through);
      mem_job w;
      w.kind = memory_kind::write;
      w.val = m.val;
      w.action = then::wt_ack;
      w.to = from;
      w.txn = m.txn;
      add_job(key, l, std::move(w));
      return;
    }
    default: ++stats_.unexpected_messages; return;
  }
}

void directory::recall_done(const std::string& key, line& l) {
  transaction& t = *l.tx;
  switch (t.kind) {
    case tx_kind::del: {
      l.st = dir_state::I;
      l.owner.clear();
      l.sharers.clear();
      mem_job e;
      e.kind = memory_kind::erase;  // dirty data of a deleted key is dropped
      e.action = then::done;
      e.to = t.requester;
      e.txn = t.txn;
      l.tx.reset();
      add_job(key, l, std::move(e));
      return;
    }
    case tx_kind::inval:
    case tx_kind::close: {
      l.st = dir_state::I;
      l.owner.clear();
      l.sharers.clear();
      const bool reply = t.kind == tx_kind::inval;
      const std::string to = t.requester;
      const uint64_t txn = t.txn;
      const bool dirty = t.recalled_dirty;
      value v = std::move(t.recalled_val);
      l.tx.reset();
      if (dirty) {
        mem_job w;
        w.kind = memory_kind::write;
        w.val = std::move(v);
        w.action = reply ? then::done : then::nothing;
        w.to = to;
        w.txn = txn;
        add_job(key, l, std::move(w));
      } else if (reply) {
        message d;
        d.kind = msg_kind::done;
        d.key = key;
        d.txn = txn;
        send(to, l.epoch, std::move(d));
      }
      return;
    }
    case tx_kind::recover:
      // Every copy of the dead node's data is gone: memory's value stands.
      l.st = dir_state::I;
      l.owner.clear();
      l.sharers.clear();
      l.tx.reset();
      return;
    default:
      if (t.revert_after_recall) {
        t.revert_after_recall = false;
        mem_job read;
        read.kind = memory_kind::read;
        read.action = then::revert;
        read.to = t.requester;
        read.txn = t.txn;
        add_job(key, l, std::move(read));
      }
      return;
  }
}

// --- deaths -------------------------------------------------------------------------

void directory::node_down_line(const std::string& key, line& l, const std::string& x) {
  const dir_row r = row(l);
  l.queue.erase(std::remove_if(l.queue.begin(), l.queue.end(), [&](const auto& q) { return q.first == x; }),
                l.queue.end());
  if (l.tx && l.tx->recall.erase(x)) {  // its copy died with it
    record(r, dir_event::down_recalled);
    if (l.tx->recall.empty()) recall_done(key, l);
  }
  if (l.tx) {
    transaction& t = *l.tx;
    if (t.requester == x) {
      record(r, dir_event::down_requester);
      ++stats_.recoveries;
      switch (t.kind) {
        case tx_kind::get_s:
          t.wait_unblock = false;
          l.sharers.erase(x);
          if (l.owner == x) {  // granted E
            l.owner.clear();
            l.st = l.sharers.empty() ? dir_state::I : dir_state::S;
          }
          break;  // MESI S^D still waits for the (live) old owner's data
        case tx_kind::get_m:
        case tx_kind::upgrade: {
          // The line may have reached x and died with it. Copies may linger where the
          // invalidations (acknowledged to x) or the forward have not arrived yet.
          std::set<std::string> linger(t.inv_targets.begin(), t.inv_targets.end());
          if (!t.forwarded_to.empty()) linger.insert(t.forwarded_to);
          t.kind = tx_kind::recover;
          t.wait_unblock = false;
          t.inv_targets.clear();
          t.forwarded_to.clear();
          l.owner.clear();
          l.sharers.clear();
          l.st = dir_state::I;
          start_recall(key, l, t, linger);
          break;
        }
        default: break;  // del / inval / recover / close go on; the answer to x is dropped
      }
    } else {
      if (std::find(t.inv_targets.begin(), t.inv_targets.end(), x) != t.inv_targets.end() &&
          t.wait_unblock) {
        // The requester counts acknowledgements by node: this one will never come.
        record(r, dir_event::down_invalidated);
        message a;
        a.kind = msg_kind::inv_ack;
        a.key = key;
        a.txn = t.txn;
        a.node = x;
        send(t.requester, l.epoch, std::move(a));
      }
      if (l.tx && t.forwarded_to == x) {
        record(r, dir_event::down_forwarded);
        ++stats_.recoveries;
        t.forwarded_to.clear();
        if (t.kind == tx_kind::get_s) {
          t.wait_data = false;
          l.sharers.erase(x);
          std::set<std::string> others;
          if (l.owner == x) {
            // x owned the line in O: the other sharers may hold its data, which memory
            // lacks. Take those copies first, then give the requester memory's value.
            l.owner.clear();
            for (const auto& s : l.sharers)
              if (s != t.requester) others.insert(s);
            l.sharers = {t.requester};
          }
          l.st = dir_state::S;
          t.revert_after_recall = true;
          start_recall(key, l, t, others);
        } else if (t.kind == tx_kind::get_m) {
          // The requester keeps x's data if it got it (a duplicate is ignored).
          mem_job read;
          read.kind = memory_kind::read;
          read.action = then::data;
          read.to = t.requester;
          read.txn = t.txn;
          read.acks = t.inv_targets;
          add_job(key, l, std::move(read));
        }
      }
    }
  }
  if (l.sharers.erase(x)) {
    record(r, dir_event::down_sharer);
    if (l.st == dir_state::S && l.sharers.empty() && !l.tx) l.st = dir_state::I;
  }
  if (l.owner == x) {
    record(r, dir_event::down_owner);
    ++stats_.recoveries;
    l.owner.clear();
    if (l.st == dir_state::O && !l.sharers.empty() && !l.tx) {
      // The sharers may hold x's dirty data: recall them so the line reverts to memory.
      transaction t;
      t.kind = tx_kind::recover;
      l.tx = std::move(t);
      auto holders = l.sharers;
      l.sharers.clear();
      l.st = dir_state::I;
      start_recall(key, l, *l.tx, holders);
    } else if (!l.tx) {
      l.st = l.sharers.empty() ? dir_state::I : dir_state::S;
    }
  }
}

// --- the line's progress ------------------------------------------------------------------

void directory::advance(table& t, const std::string& key) {
  auto it = t.find(key);
  if (it == t.end()) return;
  line& l = it->second;
  const bool closing = &t == &closing_;
  for (;;) {
    if (l.tx) {
      const transaction& x = *l.tx;
      if (!x.wait_unblock && !x.wait_data && x.recall.empty() && !x.revert_after_recall) l.tx.reset();
    }
    // A line nobody holds is I, whatever path (deaths, recalls) emptied it.
    if (!l.tx && l.owner.empty() && l.sharers.empty()) l.st = dir_state::I;
    if (busy(l) || l.queue.empty()) break;
    auto [from, m] = std::move(l.queue.front());
    l.queue.pop_front();
    if (closing && !is_put(m.kind)) refuse(from, m);
    else process_request(key, l, from, m);
  }
  if (closing && !busy(l) && l.queue.empty() && (!l.owner.empty() || !l.sharers.empty())) {
    // Closing the epoch: every copy comes home, dirty data goes to memory.
    record(row(l), dir_event::close);
    std::set<std::string> holders = l.sharers;
    if (!l.owner.empty()) holders.insert(l.owner);
    transaction c;
    c.kind = tx_kind::close;
    l.tx = std::move(c);
    start_recall(key, l, *l.tx, holders);
  }
  if (!busy(l) && l.queue.empty() && l.st == dir_state::I) {
    t.erase(it);
    if (closing && closing_.empty()) maybe_send_flushed();
  }
}

void directory::start_closing() {
  closing_ = std::move(lines_);
  lines_.clear();
  closing_epoch_ = epoch_;
  closing_members_ = members_;
  std::vector<std::string> keys;
  for (auto& [k, l] : closing_) {
    keys.push_back(k);
    // Requests waiting for this epoch will not be served in it.
    std::deque<std::pair<std::string, message>> puts;
    for (auto& [from, m] : l.queue) {
      if (is_put(m.kind)) puts.emplace_back(from, m);
      else refuse(from, m);
    }
    l.queue = std::move(puts);
  }
  for (const auto& k : keys) advance(closing_, k);
}

void directory::add_job(const std::string& key, line& l, mem_job job) {
  l.mem.push_back(std::move(job));
  issue(key, l);
}

void directory::issue(const std::string& key, line& l) {
  if (l.mem.empty() || l.mem.front().id != 0) return;
  mem_job& j = l.mem.front();
  j.id = ++next_mem_id_;
  memory_op op;
  op.id = j.id;
  op.key = key;
  op.kind = j.kind;
  if (j.kind == memory_kind::write && !j.val) op.kind = memory_kind::erase;  // writing "absent"
  if (op.kind == memory_kind::write) op.value = *j.val;
  switch (op.kind) {
    case memory_kind::read: ++stats_.mem_reads; break;
    case memory_kind::write: ++stats_.mem_writes; break;
    case memory_kind::erase: ++stats_.mem_erases; break;
  }
  issued_.emplace(j.id, std::make_pair(key, l.epoch));
  fx_.memory.push_back(std::move(op));
}

void directory::check_barrier() {
  if (serving_) return;
  for (const auto& n : members_.members) {
    if (dead_.count(n)) continue;
    for (bool d : {false, true}) {
      auto it = flushed_.find({n, d});
      if (it == flushed_.end() || it->second < epoch_) return;
    }
  }
  serving_ = true;
  auto queued = std::move(waiting_);
  waiting_.clear();
  for (auto& [from, m] : queued) deliver(from, m);
}

void directory::maybe_send_flushed() {
  if (!flushed_due_ || !closing_.empty()) return;
  flushed_due_ = false;
  for (const auto& n : members_.members) {
    message f;
    f.kind = msg_kind::flushed;
    f.from_directory = true;
    send(n, epoch_, std::move(f));
  }
}

void directory::send(const std::string& to, uint64_t epoch, message m) {
  if (dead_.count(to)) return;
  m.epoch = epoch;
  fx_.messages.push_back(envelope{to, std::move(m)});
}

}  // namespace dsync::cache
