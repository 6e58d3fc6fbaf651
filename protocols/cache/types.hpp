// Shared vocabulary of the coherence protocols: settings, line states, membership (who is
// home of which key, per directory epoch), client operations and the effects that the
// cache controller and the directory hand back to their caller.
//
// Everything here is plain data. Time, I/O and randomness never enter protocols/cache/:
// memory (Redis) is reached through memory_op effects completed later by an input, and
// messages between nodes are envelope effects that the caller delivers in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsync::ring {
class hash_ring;
}

namespace dsync::cache {

// Chosen per cluster (CACHE_COHERENCE_PROTOCOL); every node must run the same one.
enum class protocol : uint8_t { mesi, mosi, moesi };
// write_back: a dirty line reaches memory when it is evicted, downgraded without an O
// state, invalidated or flushed. write_through: a put completes only once memory holds it.
enum class write_policy : uint8_t { write_back, write_through };
enum class replacement_kind : uint8_t { lru, lfu };

std::string_view to_string(protocol p);
std::string_view to_string(write_policy p);
std::string_view to_string(replacement_kind r);
// Case-insensitive ("MESI", "moesi", "write-back", "write_through", "LFU"). False if unknown.
bool parse(std::string_view text, protocol& out);
bool parse(std::string_view text, write_policy& out);
bool parse(std::string_view text, replacement_kind& out);

inline bool has_exclusive(protocol p) { return p != protocol::mosi; }
inline bool has_owned(protocol p) { return p != protocol::mesi; }

// Limits (bytes). Keys and values over them are refused with an error, never truncated.
constexpr size_t max_key_bytes = 512;
constexpr size_t max_value_bytes = 1024 * 1024;
constexpr size_t max_node_id_bytes = 255;
constexpr size_t max_members = 1024;

// A value in the cache or in memory; nullopt means "absent" (the key does not exist).
// Absence is cached like any value, so a get of a missing key can hit.
using value = std::optional<std::string>;

// States of a line in a cache controller, with the Primer's names (Sorin, Hill & Wood,
// "A Primer on Memory Consistency and Cache Coherence", ch. 8): XY^Z is "was X, going to
// Y, waiting for Z" (A: acknowledgements, D: data, C: the ack count).
// MW^A is ours: M holding a write-through that memory has not acknowledged yet.
enum class cache_state : uint8_t {
  I, S, E, O, M,
  IS_D, IM_AD, IM_A, SM_AD, SM_A, OM_AC, OM_A,
  MI_A, EI_A, OI_A, SI_A, II_A,
  MW_A,
};
constexpr size_t cache_state_count = 18;
std::string_view to_string(cache_state s);  // "IS^D", ...
bool parse(std::string_view text, cache_state& out);
// A load is served from the line in these states.
inline bool readable(cache_state s) {
  return s == cache_state::S || s == cache_state::E || s == cache_state::O || s == cache_state::M;
}

// Who is home of which key in one directory epoch. Every node must be given the same
// (epoch, members, home) — normally from_ring() over the same member list. `home` must
// return a member for every key. A membership change is a new epoch; epochs only grow.
struct membership {
  uint64_t epoch = 0;
  std::vector<std::string> members;
  std::function<std::string(std::string_view key)> home;

  // home(key) = ring->owner(key); members = ring->members().
  static membership from_ring(uint64_t epoch, std::shared_ptr<const ring::hash_ring> ring);
  // Empty if usable, else what is wrong (no members, empty or duplicate id, no home function).
  std::string validate() const;
};

enum class op_kind : uint8_t { get, put, del, invalidate };
std::string_view to_string(op_kind k);

// A client request at one node. `request` is chosen by the caller and must be unique
// among the node's pending requests; `value` is used by put only.
struct client_op {
  uint64_t request = 0;
  op_kind kind = op_kind::get;
  std::string key;
  std::string value;
};

enum class status : uint8_t { ok, not_found, error };
std::string_view to_string(status s);

// Error codes of failed client operations (completion::error).
namespace errc {
// The request was refused before doing anything (empty/oversized key or value).
inline constexpr std::string_view invalid = "invalid";
// Too many requests pending on this node (controller::config::max_pending_ops).
inline constexpr std::string_view overloaded = "overloaded";
// A request with this id is already pending.
inline constexpr std::string_view duplicate_request = "duplicate_request";
// The caller gave up (controller::expire); the operation may still take effect.
inline constexpr std::string_view expired = "expired";
// The key's home died while a write-through put or a delete was in flight there; it
// may or may not have taken effect. Other requests wait for the next epoch instead.
inline constexpr std::string_view home_down = "home_down";
}  // namespace errc

// The answer to one client_op. get: ok with the value, or not_found; `state` is the
// state of the line on this node that served it (M, O, E or S). put: ok, state M.
// del / invalidate: ok, state I. error: `error` holds one of errc, and `maybe_applied`
// says whether the put or delete may still have taken (or take) effect; if false it
// had none and a retry is safe.
struct completion {
  uint64_t request = 0;
  op_kind kind = op_kind::get;
  std::string key;
  status result = status::ok;
  value val;
  cache_state state = cache_state::I;
  std::string error;
  bool maybe_applied = false;
};

enum class memory_kind : uint8_t { read, write, erase };
std::string_view to_string(memory_kind k);

// One operation on the backing store (Redis), issued by a directory (or, for a dirty
// line whose home died, by a controller). The caller runs it and reports on_memory_done(
// id, value) to the component that issued it, exactly once (value: what a read found;
// ignored otherwise). Ids are unique per component. No two operations on one key that
// could conflict are ever in flight together, so their order at Redis does not matter.
// A failed Redis call must be retried by the caller (all three kinds are idempotent):
// the component waits until it succeeds.
struct memory_op {
  uint64_t id = 0;
  memory_kind kind = memory_kind::read;
  std::string key;
  std::string value;  // write only
};

}  // namespace dsync::cache
