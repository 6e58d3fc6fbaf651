#include "protocols/cache/lease.hpp"

#include <algorithm>
#include <stdexcept>

#include "protocols/cache/directory.hpp"
#include "protocols/codec.hpp"

namespace dsync::cache {

std::string encode_rejoin(const rejoin_message& m) {
  std::string out;
  codec::put_u8(out, m.ack ? 'A' : 'R');
  codec::put_u64(out, m.epoch);
  codec::put_u64(out, m.incarnation);
  codec::put_u64(out, m.current);
  return out;
}

bool decode_rejoin(std::string_view bytes, rejoin_message& out) {
  codec::reader r{bytes};
  uint8_t tag = 0;
  if (!r.get_u8(tag) || (tag != 'R' && tag != 'A') || !r.get_u64(out.epoch) || !r.get_u64(out.incarnation) ||
      !r.get_u64(out.current) || !r.at_end())
    return false;
  out.ack = tag == 'A';
  return true;
}

std::string membership_lease::config::validate() const {
  if (self.empty() || self.size() > max_node_id_bytes)
    return "lease: self must be a node id of 1.." + std::to_string(max_node_id_bytes) + " bytes";
  if (freeze_limit_ms == 0) return "lease: freeze_limit_ms must be at least 1";
  return {};
}

membership_lease::membership_lease(config cfg, uint64_t now_ms)
    : cfg_(std::move(cfg)), last_input_ms_(now_ms), incarnation_(cfg_.first_incarnation) {
  if (auto why = cfg_.validate(); !why.empty()) throw std::invalid_argument(why);
}

bool membership_lease::on_input(uint64_t now_ms) {
  const bool gap = now_ms >= last_input_ms_ && now_ms - last_input_ms_ >= cfg_.freeze_limit_ms;
  last_input_ms_ = std::max(last_input_ms_, now_ms);
  return gap;
}

void membership_lease::fence(uint64_t epoch, uint64_t now_ms) {
  ++incarnation_;
  fenced_at_ms_ = now_ms;
  acks_.clear();
  if (fenced_) return;
  fenced_ = true;
  fenced_epoch_ = epoch;
}

void membership_lease::on_ack(const std::string& peer, const rejoin_message& ack) {
  if (fenced_ && ack.incarnation == incarnation_) acks_[peer] = ack.current;
}

uint64_t membership_lease::acked_epoch() const {
  uint64_t out = 0;
  for (const auto& [peer, e] : acks_) out = std::max(out, e);
  return out;
}

membership_lease::verdict membership_lease::screen(const std::string& from, const message& m) const {
  if (!fenced_) return verdict::deliver;
  const bool after_ack = acks_.count(from) > 0;
  // Of the old incarnation's epochs: nobody may act on them any more. A request sent before
  // the peer forgot the old incarnation needs no answer (forgetting ends its transaction);
  // one sent after it (by a peer that knows no newer epoch yet) is refused.
  if (m.epoch <= fenced_epoch_) return after_ack && refusal(m) ? verdict::refuse : verdict::drop;
  // Sent after the peer forgot the old incarnation, or a fact about the peer alone.
  if (after_ack || m.kind == msg_kind::flushed) return verdict::hold;
  return verdict::drop;
}

std::vector<std::string> membership_lease::waiting_for(const std::vector<std::string>& members,
                                                       const std::vector<std::string>& linked,
                                                       const std::set<std::string>& down) const {
  std::vector<std::string> out;
  if (!fenced_) return out;
  std::set<std::string> peers(linked.begin(), linked.end());
  peers.insert(members.begin(), members.end());
  peers.erase(cfg_.self);
  const std::set<std::string> member_set(members.begin(), members.end());
  for (const auto& p : peers)
    if (!acks_.count(p) || (member_set.count(p) && down.count(p))) out.push_back(p);
  return out;
}

bool membership_lease::may_rejoin(uint64_t epoch, const std::vector<std::string>& members,
                                  const std::vector<std::string>& linked, const std::set<std::string>& down,
                                  uint64_t now_ms) const {
  if (!fenced_) return false;
  return epoch > fenced_epoch_ && epoch >= acked_epoch() && now_ms >= fenced_at_ms_ + cfg_.settle_ms &&
         waiting_for(members, linked, down).empty();
}

void membership_lease::rejoined() {
  fenced_ = false;
  acks_.clear();
}

bool membership_lease::on_rejoin(const std::string& node, const rejoin_message& r) {
  auto [it, fresh] = rejoined_.try_emplace(node, r.incarnation);
  if (fresh) return true;
  if (r.incarnation <= it->second) return false;
  it->second = r.incarnation;
  return true;
}

// --- read lease -------------------------------------------------------------------------

std::string encode_probe(const probe_message& m) {
  std::string out;
  codec::put_u8(out, m.echo ? 'E' : 'P');
  codec::put_u8(out, m.dead ? 1 : 0);
  codec::put_u64(out, m.stamp);
  codec::put_u64(out, m.boot);
  return out;
}

bool decode_probe(std::string_view bytes, probe_message& out) {
  codec::reader r{bytes};
  uint8_t tag = 0, dead = 0;
  if (!r.get_u8(tag) || (tag != 'P' && tag != 'E') || !r.get_u8(dead) || dead > 1 || (tag == 'P' && dead) ||
      !r.get_u64(out.stamp) || !r.get_u64(out.boot) || !r.at_end())
    return false;
  out.echo = tag == 'E';
  out.dead = dead == 1;
  return true;
}

void read_lease::on_echo(const std::string& peer, uint64_t stamp) {
  auto& last = last_[peer];
  last = std::max(last, stamp);
}

uint64_t read_lease::last_round_trip(const std::string& peer) const {
  auto it = last_.find(peer);
  return it == last_.end() ? 0 : it->second;
}

uint64_t read_lease::serving_until(const std::vector<std::string>& peers) const {
  uint64_t until = UINT64_MAX;
  for (const auto& p : peers) {
    auto it = last_.find(p);
    if (it == last_.end()) return 0;
    until = std::min(until, it->second + limit_);
  }
  return until;
}

probe_message read_lease::answer(const std::string& node, const probe_message& probe) {
  boot_[node] = std::max(boot_[node], probe.boot);
  return {true, thinks_dead(node, probe.boot), probe.stamp, probe.boot};
}

void read_lease::declared_dead(const std::string& node) {
  // Never probed by it: every boot it may have had is dead (a restarted process, whose
  // boot is newer than any seen, fences once more than it needs to).
  auto it = boot_.find(node);
  auto& dead = dead_boot_[node];
  dead = std::max(dead, it == boot_.end() ? UINT64_MAX : it->second);
}

bool read_lease::thinks_dead(const std::string& node, uint64_t boot) const {
  auto it = dead_boot_.find(node);
  return it != dead_boot_.end() && boot <= it->second;
}

}  // namespace dsync::cache
