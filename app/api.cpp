#include "dsync/api.hpp"

namespace dsync {

const char* const software_version = "0.1.0";

std::string to_string(errc x) {
  switch (x) {
    case errc::handshake_refused: return "handshake_refused";
    case errc::unavailable: return "unavailable";
    case errc::bad_request: return "bad_request";
    case errc::not_leader: return "not_leader";
    case errc::not_found: return "not_found";
    case errc::internal: return "internal";
    case errc::timeout: return "timeout";
    case errc::deadlock: return "deadlock";
    case errc::not_held: return "not_held";
    case errc::limit_exceeded: return "limit_exceeded";
    case errc::stale_receipt: return "stale_receipt";
  }
  return "unknown";
}

std::string error_reason(const caf::error& err) {
  if (err.category() == caf::atom("dsync")) {
    std::string text = to_string(static_cast<errc>(err.code()));
    if (err.context().match_elements<std::string>())
      text += ": " + err.context().get_as<std::string>(0);
    return text;
  }
  return caf::to_string(err);
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<node_info>("dsync::node_info");
  cfg.add_message_type<member_status>("dsync::member_status");
  cfg.add_message_type<cluster_status>("dsync::cluster_status");
  cfg.add_message_type<health_status>("dsync::health_status");
  cfg.add_message_type<group_status>("dsync::group_status");
  cfg.add_message_type<kv_entry>("dsync::kv_entry");
  cfg.add_message_type<lock_request>("dsync::lock_request");
  cfg.add_message_type<lock_grant>("dsync::lock_grant");
  cfg.add_message_type<lock_waiter>("dsync::lock_waiter");
  cfg.add_message_type<lock_info>("dsync::lock_info");
  cfg.add_message_type<queue_pull>("dsync::queue_pull");
  cfg.add_message_type<queue_message>("dsync::queue_message");
  cfg.add_message_type<queue_info>("dsync::queue_info");
  cfg.add_message_type<dead_letter>("dsync::dead_letter");
  cfg.add_message_type<dead_letters>("dsync::dead_letters");
  cfg.add_message_type<cache_entry>("dsync::cache_entry");
  cfg.add_message_type<cache_stats>("dsync::cache_stats");
  cfg.add_message_type<raft::message>("dsync::raft::message");
  cfg.add_message_type<std::vector<raft::message>>("std::vector<dsync::raft::message>");
  cfg.add_message_type<node_api>("dsync::node_api");
  cfg.add_message_type<membership_listener>("dsync::membership_listener");
  cfg.add_error_category(caf::atom("dsync"), [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    return "dsync_error(" + to_string(static_cast<errc>(code))
           + (ctx.empty() ? "" : ", " + caf::to_string(ctx)) + ")";
  });
}

}  // namespace dsync
