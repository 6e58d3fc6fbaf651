#include "protocols/ring/hash_ring.hpp"

#include <algorithm>
#include <stdexcept>

namespace dsync::ring {

uint64_t fnv1a_64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t hash64(std::string_view data) { return mix64(fnv1a_64(data)); }

uint32_t jump_consistent_hash(uint64_t key, uint32_t buckets) {
  if (buckets == 0) throw std::invalid_argument("jump_consistent_hash: buckets must be > 0");
  // The LCG constant and the 2^31 scale are part of the algorithm. b + 1 <= 2^32 - 1, so
  // (b + 1) * 2^31 < 2^63 fits in int64_t.
  int64_t b = -1;
  int64_t j = 0;
  while (j < static_cast<int64_t>(buckets)) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) *
                             (static_cast<double>(int64_t{1} << 31) / static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<uint32_t>(b);
}

uint32_t shard_of(std::string_view queue_name, uint32_t shard_count) {
  if (shard_count == 0) throw std::invalid_argument("shard_of: shard_count must be > 0");
  return jump_consistent_hash(hash64(queue_name), shard_count);
}

hash_ring::hash_ring(std::vector<std::string> members, uint32_t vnodes_per_member)
    : members_(std::move(members)), vnodes_per_member_(vnodes_per_member) {
  std::sort(members_.begin(), members_.end());
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].empty()) throw std::invalid_argument("hash_ring: empty member name");
    if (i > 0 && members_[i - 1] == members_[i]) {
      throw std::invalid_argument("hash_ring: member '" + members_[i] + "' given twice");
    }
  }
  if (!members_.empty() && (vnodes_per_member == 0 || vnodes_per_member > max_vnodes_per_member)) {
    throw std::invalid_argument("hash_ring: vnodes_per_member must be in [1, " +
                                std::to_string(max_vnodes_per_member) + "], got " +
                                std::to_string(vnodes_per_member));
  }
  if (members_.size() > UINT32_MAX) throw std::invalid_argument("hash_ring: too many members");

  ring_.reserve(members_.size() * vnodes_per_member);
  std::string label;
  for (uint32_t m = 0; m < members_.size(); ++m) {
    for (uint32_t i = 0; i < vnodes_per_member; ++i) {
      label.assign(members_[m]).append("#").append(std::to_string(i));
      ring_.push_back({hash64(label), m, i});
    }
  }
  // members_ is sorted, so comparing indices compares names.
  std::sort(ring_.begin(), ring_.end(), [](const vnode& a, const vnode& b) {
    if (a.position != b.position) return a.position < b.position;
    if (a.member != b.member) return a.member < b.member;
    return a.index < b.index;
  });
}

size_t hash_ring::first_vnode(std::string_view key) const {
  const uint64_t h = hash64(key);
  const auto it = std::lower_bound(ring_.begin(), ring_.end(), h,
                                   [](const vnode& v, uint64_t pos) { return v.position < pos; });
  return it == ring_.end() ? 0 : static_cast<size_t>(it - ring_.begin());
}

const std::string& hash_ring::owner(std::string_view key) const {
  if (ring_.empty()) throw std::logic_error("hash_ring::owner: the ring has no members");
  return members_[ring_[first_vnode(key)].member];
}

std::vector<std::string> hash_ring::replicas(std::string_view key, size_t r) const {
  std::vector<std::string> out;
  if (ring_.empty() || r == 0) return out;
  const size_t wanted = std::min(r, members_.size());
  out.reserve(wanted);
  std::vector<bool> taken(members_.size(), false);
  const size_t start = first_vnode(key);
  for (size_t step = 0; step < ring_.size() && out.size() < wanted; ++step) {
    const uint32_t m = ring_[(start + step) % ring_.size()].member;
    if (!taken[m]) {
      taken[m] = true;
      out.push_back(members_[m]);
    }
  }
  return out;
}

std::vector<std::string> hash_ring::shard_replicas(uint32_t shard, size_t r) const {
  return replicas("shard-" + std::to_string(shard), r);
}

}  // namespace dsync::ring
