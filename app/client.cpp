#include "dsync/client.hpp"

#include <algorithm>

namespace dsync {

namespace {
struct client_config : caf::actor_system_config {
  client_config() {
    register_types(*this);
    load<caf::io::middleman>();
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", 1);
  }
};
}  // namespace

struct client::impl {
  client_config cfg;
  caf::actor_system sys{cfg};
  node_api node;
  caf::duration timeout;

  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    return ask_within<T>(timeout, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> ask_within(caf::duration within, Ts&&... xs) {
    caf::scoped_actor self{sys};
    caf::expected<T> out{caf::sec::request_timeout};
    self->request(node, within, std::forward<Ts>(xs)...)
      .receive([&](T& value) { out = std::move(value); }, [&](caf::error& err) { out = std::move(err); });
    return out;
  }
};

client::client(std::unique_ptr<impl> d) : impl_(std::move(d)) {}

client::~client() = default;

caf::expected<std::unique_ptr<client>> client::connect(const std::string& host, uint16_t port,
                                                       std::chrono::milliseconds timeout) {
  auto d = std::make_unique<impl>();
  d->timeout = caf::duration{timeout};
  // Through the middleman actor rather than remote_actor(): that one has no timeout and
  // hangs on a stopped (SIGSTOP) node.
  caf::error failure;
  {
    caf::scoped_actor self{d->sys};
    self->request(d->sys.middleman().actor_handle(), d->timeout, caf::connect_atom::value, host, port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>& ifs) {
          if (!ptr || !d->sys.assignable<node_api>(ifs))
            failure = make_error(errc::bad_request, "no dsync node API at " + host + ":" + std::to_string(port));
          else
            d->node = caf::actor_cast<node_api>(std::move(ptr));
        },
        [&](caf::error& err) { failure = std::move(err); });
  }
  if (failure) return failure;
  return std::unique_ptr<client>(new client(std::move(d)));
}

caf::expected<health_status> client::health() { return impl_->ask<health_status>(health_atom::value); }

caf::expected<cluster_status> client::cluster() { return impl_->ask<cluster_status>(cluster_atom::value); }

caf::expected<uint64_t> client::put(const std::string& key, const std::string& value) {
  return impl_->ask<uint64_t>(kv_put_atom::value, key, value, false);
}

caf::expected<kv_entry> client::get(const std::string& key, bool linearizable) {
  return impl_->ask<kv_entry>(kv_get_atom::value, key, linearizable, false);
}

caf::expected<uint64_t> client::del(const std::string& key) { return impl_->ask<uint64_t>(kv_del_atom::value, key, false); }

caf::expected<group_status> client::add_member(const std::string& node_id) {
  return impl_->ask_within<group_status>(caf::duration{std::chrono::seconds(40)}, member_add_atom::value, node_id, false);
}

caf::expected<group_status> client::remove_member(const std::string& node_id) {
  return impl_->ask_within<group_status>(caf::duration{std::chrono::seconds(40)}, member_remove_atom::value, node_id,
                                         false);
}

caf::expected<lock_grant> client::acquire_lock(const std::string& resource, const std::string& client,
                                               const std::string& type, std::chrono::milliseconds wait,
                                               std::chrono::milliseconds ttl) {
  lock_request r{resource, client, type, static_cast<uint64_t>(std::max<int64_t>(wait.count(), 0)),
                 static_cast<uint64_t>(std::max<int64_t>(ttl.count(), 0))};
  // The node answers within wait plus its own request budget.
  auto within = caf::duration{wait + std::chrono::seconds(6)};
  return impl_->ask_within<lock_grant>(within, lock_acquire_atom::value, r, false);
}

caf::expected<bool> client::release_lock(const std::string& resource, const std::string& client) {
  return impl_->ask<bool>(lock_release_atom::value, resource, client, false);
}

caf::expected<lock_grant> client::refresh_lock(const std::string& resource, const std::string& client) {
  return impl_->ask<lock_grant>(lock_refresh_atom::value, resource, client, false);
}

caf::expected<lock_info> client::lock_status(const std::string& resource, bool linearizable) {
  return impl_->ask<lock_info>(lock_status_atom::value, resource, linearizable, false);
}

caf::expected<std::string> client::enqueue(const std::string& queue, const std::string& payload) {
  return impl_->ask<std::string>(queue_enqueue_atom::value, queue, payload, false);
}

caf::expected<std::vector<queue_message>> client::dequeue(const std::string& queue, const std::string& consumer,
                                                          uint64_t max, std::chrono::milliseconds visibility,
                                                          std::chrono::milliseconds wait) {
  queue_pull pull{queue, consumer, max, static_cast<uint64_t>(std::max<int64_t>(visibility.count(), 0)),
                  static_cast<uint64_t>(std::max<int64_t>(wait.count(), 0))};
  return impl_->ask_within<std::vector<queue_message>>(caf::duration{wait + std::chrono::seconds(6)},
                                                       queue_dequeue_atom::value, pull, false);
}

caf::expected<bool> client::acknowledge(const std::string& queue, const std::string& message_id, uint64_t receipt) {
  return impl_->ask<bool>(queue_ack_atom::value, queue, message_id, receipt, false);
}

caf::expected<bool> client::nack(const std::string& queue, const std::string& message_id, uint64_t receipt,
                                 std::chrono::milliseconds delay) {
  return impl_->ask<bool>(queue_nack_atom::value, queue, message_id, receipt,
                          static_cast<uint64_t>(std::max<int64_t>(delay.count(), 0)), false);
}

caf::expected<queue_info> client::queue_stats(const std::string& queue) {
  return impl_->ask<queue_info>(queue_stats_atom::value, queue, false);
}

caf::expected<dead_letters> client::dead_letters_of(const std::string& queue, uint64_t cursor, uint64_t limit) {
  return impl_->ask<dead_letters>(queue_dlq_atom::value, queue, cursor, limit, false);
}

caf::expected<uint64_t> client::redrive(const std::string& queue, uint64_t max) {
  return impl_->ask<uint64_t>(queue_redrive_atom::value, queue, max, false);
}

caf::expected<uint64_t> client::delete_queue(const std::string& queue) {
  return impl_->ask<uint64_t>(queue_delete_atom::value, queue, false);
}

caf::expected<queue_info> client::configure_queue(const std::string& queue, uint64_t max_deliveries) {
  return impl_->ask<queue_info>(queue_config_atom::value, queue, max_deliveries, false);
}

caf::expected<std::vector<std::string>> client::list_queues() {
  return impl_->ask<std::vector<std::string>>(queue_list_atom::value, all_shards, false);
}

caf::expected<cache_entry> client::cache_get(const std::string& key) {
  return impl_->ask<cache_entry>(cache_get_atom::value, key);
}

caf::expected<bool> client::cache_put(const std::string& key, const std::string& value) {
  return impl_->ask<bool>(cache_put_atom::value, key, value);
}

caf::expected<bool> client::cache_del(const std::string& key) { return impl_->ask<bool>(cache_del_atom::value, key); }

caf::expected<bool> client::invalidate(const std::string& key) { return impl_->ask<bool>(cache_inval_atom::value, key); }

caf::expected<cache_stats> client::cache_statistics() { return impl_->ask<cache_stats>(cache_stats_atom::value); }

std::string client::describe(const caf::error& err) const {
  if (err.category() == caf::atom("dsync")) return error_reason(err);
  return impl_->sys.render(err);
}

}  // namespace dsync
