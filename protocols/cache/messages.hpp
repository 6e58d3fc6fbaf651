// Coherence messages between cache controllers and directories, their binary form, and
// the `effects` batch that every input of a controller or directory returns.
//
// Names follow the Primer (ch. 8): GetS, GetM, PutS/PutE/PutM/PutO, Fwd-GetS, Fwd-GetM,
// Inv, Inv-Ack, Data (with the list of acknowledgements the requester must collect),
// AckCount, Put-Ack. Ours: Unblock (the requester ends its transaction at the directory,
// which serialises one transaction per line), OwnerData (MESI's data to the directory on
// a downgrade), WriteThrough / WT-Ack, Recall / Recall-Ack (the directory takes copies
// back itself: delete, invalidate, closing an epoch, recovery from a node's death),
// Del / Inval / Done, Nack (a closing epoch refuses new requests), Flushed (a new
// directory epoch may start).
//
// Every message carries the epoch of the line it is about. Lines of an older epoch keep
// running the protocol of their epoch until their home recalls them.
//
// Ordering contract: messages from one component (controller or directory) of a node to
// one component of another node arrive in the order sent (per-pair FIFO, as CAF
// guarantees between two actors). Nothing else is assumed: messages may be delayed
// arbitrarily. A node's node_down must be delivered after every message that node sent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/cache/types.hpp"

namespace dsync::cache {

enum class msg_kind : uint8_t {
  // controller -> home directory
  get_s = 1,
  get_m = 2,
  put_s = 3,
  put_e = 4,        // evicting a clean E line: no data
  put_m = 5,        // data + dirty
  put_o = 6,        // data + dirty
  owner_data = 7,   // MESI: an E/M owner answering Fwd-GetS sends its data home too
  unblock = 8,      // the requester's transaction `txn` reached a stable state
  write_through = 9,
  recall_ack = 10,  // answer to recall; carries the data if the sender was the owner
  del = 11,
  inval = 12,
  flushed = 14,     // the sender holds no line of an epoch older than `epoch` any more
  // directory or owner -> controller
  data = 32,
  fwd_get_s = 33,
  fwd_get_m = 34,
  inv = 35,
  inv_ack = 36,
  ack_count = 37,   // to an O owner upgrading: the acknowledgements it must collect
  put_ack = 38,
  wt_ack = 39,
  recall = 40,
  done = 41,        // del / inval completed
  nack = 42,        // the request's epoch is closing at that home: retry in a newer epoch
};
std::string_view to_string(msg_kind k);
// True if the message is for the directory of the destination node, false if for its
// cache controller.
bool for_directory(msg_kind k);

// One message. Fields unused by a kind stay at their defaults (encode() checks nothing;
// decode() refuses bytes that set a field the kind does not use).
struct message {
  msg_kind kind = msg_kind::get_s;
  uint64_t epoch = 0;         // directory epoch of the sender
  std::string key;            // empty only for flushed
  // The requester's transaction id (GetS/GetM/Del/Inval/WriteThrough), echoed by every
  // message that answers it; for recall / recall_ack the directory's recall id.
  uint64_t txn = 0;
  // fwd_get_s, fwd_get_m, inv: the requester to answer. inv_ack: the node whose copy is
  // gone (the directory may acknowledge for a dead sharer).
  std::string node;
  bool has_data = false;      // `val` carries a line's value (which may be "absent")
  value val;
  bool dirty = false;         // the data is newer than memory
  bool exclusive = false;     // data: grant E (MESI/MOESI GetS with no other copy)
  bool revert = false;        // data: the directory's answer after the owner died (see README)
  bool from_directory = false;  // flushed: sent by the directory (else by the controller)
  std::vector<std::string> acks;  // data, fwd_get_m, ack_count: Inv-Acks to collect

  friend bool operator==(const message& a, const message& b);
  friend bool operator!=(const message& a, const message& b) { return !(a == b); }
};

// Compact one-line description for traces and test scripts, e.g.
// "data x txn=3 val=v1 acks=b,c dirty".
std::string describe(const message& m);

// Binary form (little-endian, protocols/codec.hpp): format byte 1, kind, epoch, key, txn,
// node, flags, [value], acks. decode() is total: false (and `out` unspecified) for
// truncated or trailing bytes, an unknown format/kind/flag, a field the kind does not
// use or lacks, or a key/value/node id/ack list over the limits of types.hpp.
std::string encode(const message& m);
bool decode(std::string_view bytes, message& out);

// A message to send to node `to` (the component is given by for_directory(msg.kind)).
struct envelope {
  std::string to;
  message msg;
};

// What one input produced, in order. The caller sends `messages` in order (never
// reordering two messages to the same destination), starts `memory` operations, and
// answers `completions` to its clients. A directory never produces completions; a
// controller produces memory writes only for dirty lines whose home died.
struct effects {
  std::vector<envelope> messages;
  std::vector<memory_op> memory;
  std::vector<completion> completions;

  bool empty() const { return messages.empty() && memory.empty() && completions.empty(); }
  void append(effects&& other);
};

}  // namespace dsync::cache
