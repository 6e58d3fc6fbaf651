// Consistent hashing with virtual nodes: places queue shards on replica sets and cache keys
// on their home nodes. Pure: no I/O, no clocks, no randomness.
//
// Every node must compute the same placement from the same member list, in every version
// of dsync, or nodes disagree about who owns what. So the hash and the ring construction
// below are part of the wire contract: changing either is a data migration, not a refactor.
// The test vectors in tests/unit/ring/hash_ring_test.cpp pin them down.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsync::ring {

// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3), over the bytes
// of `data` in order. Fast and simple, but the last bytes reach the high bits only through
// one multiplication by a sparse prime, so similar keys ("key-1", "key-2") land close
// together on the ring; hence `mix64` below.
uint64_t fnv1a_64(std::string_view data);

// The splitmix64 finalizer (Steele, Lea, Flood 2014; constants of Vigna's splitmix64.c):
//   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
//   z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
//   return z ^ (z >> 31);
// A bijection on 64-bit values with full avalanche.
uint64_t mix64(uint64_t z);

// The placement hash: mix64(fnv1a_64(data)). Stable across versions and platforms
// (byte-wise, no endianness or `std::hash` involved).
uint64_t hash64(std::string_view data);

// Jump consistent hash (Lamping & Veach 2014, "A Fast, Minimal Memory, Consistent Hash
// Algorithm", arXiv:1406.2294), exactly the paper's code: maps `key` into
// [0, buckets); raising buckets from n to n+1 moves ~1/(n+1) of the keys, all to bucket n.
// O(log buckets). Throws std::invalid_argument if buckets == 0.
uint32_t jump_consistent_hash(uint64_t key, uint32_t buckets);

// The shard of a queue: jump_consistent_hash(hash64(queue_name), shard_count).
// Throws std::invalid_argument if shard_count == 0.
uint32_t shard_of(std::string_view queue_name, uint32_t shard_count);

// An immutable ring of members. A membership change builds a new ring; keys whose owner
// changes are exactly those between a new vnode and its predecessor (for an addition) or
// those of the removed member (for a removal).
//
// Construction: member m contributes vnodes at positions hash64(m + "#" + decimal(i)) for
// i in [0, vnodes_per_member), e.g. "node-1#0", "node-1#1", .... The ring is sorted by
// (position, member name, i), so the result does not depend on the order of `members`.
// A key's owner is the member of the first vnode whose position is >= hash64(key),
// wrapping around past the largest position.
//
// An empty ring (no members) is valid: owner() throws, replicas() returns {}.
// Thread safety: const member functions may run concurrently.
class hash_ring {
 public:
  static constexpr uint32_t default_vnodes_per_member = 128;
  static constexpr uint32_t max_vnodes_per_member = 4096;

  // Throws std::invalid_argument if a member name is empty or appears twice, or if
  // vnodes_per_member is 0 (while there are members) or above max_vnodes_per_member.
  // O(M*V log(M*V)) for M members and V vnodes each; memory 16 bytes per vnode.
  explicit hash_ring(std::vector<std::string> members,
                     uint32_t vnodes_per_member = default_vnodes_per_member);

  // The member that owns `key`. Throws std::logic_error on an empty ring.
  // O(log(M*V)). The reference lives as long as the ring.
  const std::string& owner(std::string_view key) const;

  // The first `r` distinct members clockwise from hash64(key): element 0 is owner(key).
  // Returns min(r, members().size()) members; {} on an empty ring or for r == 0.
  // O(log(M*V) + vnodes walked); the walk stops after r distinct members or one lap.
  std::vector<std::string> replicas(std::string_view key, size_t r) const;

  // Replica set of queue shard `shard`: replicas("shard-" + decimal(shard), r). The
  // first element is the shard's preferred leader.
  std::vector<std::string> shard_replicas(uint32_t shard, size_t r) const;

  // The members, sorted by name (whatever order they were given in).
  const std::vector<std::string>& members() const { return members_; }
  bool empty() const { return members_.empty(); }
  uint32_t vnodes_per_member() const { return vnodes_per_member_; }

 private:
  struct vnode {
    uint64_t position;
    uint32_t member;  // index into members_
    uint32_t index;   // i in hash64(member + "#" + i)
  };

  // Index into ring_ of the first vnode clockwise from hash64(key). Precondition: !empty().
  size_t first_vnode(std::string_view key) const;

  std::vector<std::string> members_;  // sorted, distinct
  uint32_t vnodes_per_member_;
  std::vector<vnode> ring_;  // sorted by (position, member, index)
};

}  // namespace dsync::ring
