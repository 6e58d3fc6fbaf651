#include "dsync/client.hpp"

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
    caf::scoped_actor self{sys};
    caf::expected<T> out{caf::sec::request_timeout};
    self->request(node, timeout, std::forward<Ts>(xs)...)
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
  auto saved = impl_->timeout;
  impl_->timeout = caf::duration{std::chrono::seconds(40)};
  auto r = impl_->ask<group_status>(member_add_atom::value, node_id, false);
  impl_->timeout = saved;
  return r;
}

caf::expected<group_status> client::remove_member(const std::string& node_id) {
  auto saved = impl_->timeout;
  impl_->timeout = caf::duration{std::chrono::seconds(40)};
  auto r = impl_->ask<group_status>(member_remove_atom::value, node_id, false);
  impl_->timeout = saved;
  return r;
}

std::string client::describe(const caf::error& err) const {
  if (err.category() == caf::atom("dsync")) return error_reason(err);
  return impl_->sys.render(err);
}

}  // namespace dsync
