#include "actors/http/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/log.hpp"

namespace dsync::http {

namespace {

using steady = std::chrono::steady_clock;

constexpr uint64_t listener_key = 0;  // epoll keys; connections count up from first_connection
constexpr uint64_t wake_key = 1;
constexpr uint64_t first_connection = 2;
constexpr size_t max_drained_bytes = 64 << 20;   // read and dropped after a closing answer, at most
constexpr size_t max_unsent_bytes = 4 << 20;     // a client that does not read its answers waits
constexpr auto sweep_interval = std::chrono::milliseconds(250);
constexpr auto linger_timeout = std::chrono::seconds(2);  // a lingering client that sends nothing more is cut

std::string answer_bytes(int status, std::string_view content_type, std::string_view body, bool close) {
  std::string out;
  out.reserve(body.size() + 128);
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n";
  out += body;
  return out;
}

std::string error_body(const char* code, const std::string& message) {
  return nlohmann::json{{"error", code}, {"message", message}}.dump(-1, ' ', false,
                                                                   nlohmann::json::error_handler_t::replace);
}

const char* refusal_code(int status) {
  switch (status) {
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 505: return "http_version_not_supported";
    case 411: return "length_required";
    case 431: return "headers_too_large";
    default: return "bad_request";
  }
}

struct connection {
  int fd = -1;
  std::string in;              // bytes received and not yet parsed
  std::string out;             // bytes to send, from `sent` on
  size_t sent = 0;
  bool busy = false;           // a request is being answered; the next ones wait in `in`
  bool serving = false;        // serve() is running for this connection
  bool continue_sent = false;  // "100 Continue" went out for the request being received
  bool close_when_sent = false;
  bool watching_writes = false;  // EPOLLOUT is armed: `out` did not fit the socket
  bool read_closed = false;      // the client shut its side: answer what it sent, then close
  bool flush_due = false;        // in `unflushed`
  // The answer is out and our side shut: what the client still sends is read and dropped
  // until it closes, so that unread bytes do not make the kernel reset the connection
  // (and the client lose the answer) -- a lingering close.
  bool lingering = false;
  size_t drained = 0;
  steady::time_point last_activity;
};

struct answer {
  uint64_t connection;
  std::string bytes;
  bool close;
};

}  // namespace

struct server::impl {
  server_settings settings;
  request_handler on_request;
  refusal_handler on_refusal;

  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  int spare_fd = -1;  // closed to accept (and shed) a connection when out of descriptors
  std::thread loop;
  std::thread::id loop_id;
  std::atomic<bool> stopping{false};

  // Loop state: touched only on the loop thread.
  std::unordered_map<uint64_t, connection> conns;
  size_t lingering = 0;  // of conns; they do not count against max_connections
  // While the loop handles a batch of events, answers wait here and go out together at its
  // end, as Redis does: the client wakes once for several answers, not once for each.
  bool in_batch = false;
  std::vector<uint64_t> unflushed;
  uint64_t next_id = first_connection;
  steady::time_point last_sweep;
  steady::time_point now;  // read once per wake-up: activity times need no finer clock
  std::array<char, 64 * 1024> read_buffer;

  // Answers from other threads, handed to the loop.
  std::mutex outbox_mutex;
  std::vector<answer> outbox;

  impl(server_settings s, request_handler h, refusal_handler r)
    : settings(std::move(s)), on_request(std::move(h)), on_refusal(std::move(r)) {}

  ~impl() {
    close_all();
    if (wake_fd >= 0) ::close(wake_fd);
  }

  // Everything but the wake-up descriptor, which an answer from another thread may still
  // write to after stop().
  void close_all() {
    for (auto& [id, c] : conns) ::close(c.fd);
    conns.clear();
    for (int* fd : {&listen_fd, &epoll_fd, &spare_fd})
      if (*fd >= 0) {
        ::close(*fd);
        *fd = -1;
      }
  }

  std::optional<std::string> bind_and_listen() {
    auto where = settings.host + ":" + std::to_string(settings.port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    auto port = std::to_string(settings.port);
    if (int rc = ::getaddrinfo(settings.host.empty() ? nullptr : settings.host.c_str(), port.c_str(), &hints, &found))
      return "cannot listen for HTTP on " + where + ": " + ::gai_strerror(rc);
    std::string why = "no address";
    for (auto* a = found; a != nullptr; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        why = std::strerror(errno);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) {
        listen_fd = fd;
        break;
      }
      why = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(found);
    if (listen_fd < 0) return "cannot listen for HTTP on " + where + ": " + why;
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (epoll_fd < 0 || wake_fd < 0) return "cannot listen for HTTP on " + where + ": " + std::strerror(errno);
    if (!watch(listen_fd, listener_key, EPOLLIN) || !watch(wake_fd, wake_key, EPOLLIN))
      return "cannot listen for HTTP on " + where + ": epoll: " + std::strerror(errno);
    return std::nullopt;
  }

  // The readiness a connection waits for: reads until the client shuts its side, writes
  // while an answer did not fit the socket.
  void rewatch(uint64_t id, const connection& c) {
    watch(c.fd, id, (c.read_closed ? 0u : uint32_t{EPOLLIN | EPOLLRDHUP}) | (c.watching_writes ? uint32_t{EPOLLOUT} : 0u),
          EPOLL_CTL_MOD);
  }

  bool watch(int fd, uint64_t key, uint32_t events, int op = EPOLL_CTL_ADD) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    return ::epoll_ctl(epoll_fd, op, fd, &ev) == 0;
  }

  // ---- the loop -----------------------------------------------------------------------

  void run() {
    loop_id = std::this_thread::get_id();
    last_sweep = steady::now();
    std::array<epoll_event, 256> events;
    while (!stopping.load(std::memory_order_acquire)) {
      int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                           static_cast<int>(sweep_interval.count()));
      now = steady::now();
      if (n < 0 && errno != EINTR) {
        log::error("http", "epoll_wait failed: {}", std::strerror(errno));
        break;
      }
      in_batch = true;
      for (int i = 0; i < n; ++i) {
        auto key = events[static_cast<size_t>(i)].data.u64;
        auto what = events[static_cast<size_t>(i)].events;
        if (key == listener_key) accept_all();
        else if (key == wake_key) deliver_outbox();
        else on_ready(key, what);
      }
      in_batch = false;
      flush_batch();
      if (now - last_sweep >= sweep_interval) {
        last_sweep = now;
        expire_connections(now);
      }
    }
  }

  void accept_all() {
    for (;;) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
          // Out of descriptors: the listener would stay readable and spin the loop. Take
          // the pending connection with the spare descriptor and close it.
          log::warn("http", "out of file descriptors: refusing a connection");
          ::close(spare_fd);
          int shed = ::accept(listen_fd, nullptr, nullptr);
          if (shed >= 0) ::close(shed);
          spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        return;
      }
      bool over_limit = conns.size() - lingering >= settings.max_connections;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto id = next_id++;
      if (!watch(fd, id, EPOLLIN | EPOLLRDHUP)) {
        log::warn("http", "cannot watch a new connection: {}", std::strerror(errno));
        ::close(fd);
        continue;
      }
      auto& c = conns[id];
      c.fd = fd;
      c.last_activity = now;
      if (over_limit) {
        c.busy = true;
        c.close_when_sent = true;
        send_bytes(id, c,
                   answer_bytes(503, "application/json",
                                error_body("unavailable", "too many open HTTP connections (HTTP_MAX_CONNECTIONS is "
                                                            + std::to_string(settings.max_connections) + ")"),
                                true));
      }
    }
  }

  void on_ready(uint64_t id, uint32_t what) {
    auto i = conns.find(id);
    if (i == conns.end()) return;
    if (what & EPOLLOUT) {
      if (!flush(id, i->second)) return;
    }
    if (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_from(id);
  }

  // Reads what the socket has, once per readiness unless the buffer filled (epoll is
  // level-triggered: the rest is reported again).
  void read_from(uint64_t id) {
    for (int round = 0; round < 4; ++round) {
      auto i = conns.find(id);
      if (i == conns.end()) return;
      auto& c = i->second;
      if (c.read_closed) return drop(id);  // not watched for reads: a hang-up or an error
      auto n = ::recv(c.fd, read_buffer.data(), read_buffer.size(), 0);
      if (n == 0) return on_shut(id, c);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return drop(id);
      }
      on_data(id, c, std::string_view{read_buffer.data(), static_cast<size_t>(n)});
      if (static_cast<size_t>(n) < read_buffer.size()) return;
    }
  }

  // The client shut its sending side (HTTP/1.0 tools, `nc`): what it sent is still answered.
  void on_shut(uint64_t id, connection& c) {
    if (c.lingering || (!c.busy && c.in.empty() && c.out.size() == c.sent)) return drop(id);
    c.read_closed = true;
    rewatch(id, c);  // an end of stream stays readable: stop asking
    serve(id);
  }

  void on_data(uint64_t id, connection& c, std::string_view data) {
    c.last_activity = now;
    if (c.lingering) {
      c.drained += data.size();
      if (c.drained > max_drained_bytes) drop(id);
      return;
    }
    c.in.append(data);
    // Requests pipelined behind a slow one wait in `in`; a client must not pile up more.
    auto& lim = settings.parse;
    if (c.busy && c.in.size() > lim.max_body + lim.max_header_bytes + lim.max_request_line) {
      log::warn("http", "closing a connection that pipelined over {} bytes behind an unanswered request",
                c.in.size());
      return drop(id);
    }
    serve(id);
  }

  // Parses and hands over the next request of a connection, if one is complete and none
  // is being answered. A loop, not recursion: a request answered at once (an error, a
  // cache hit) frees its connection for the next one while this call is on the stack, and
  // a client may have pipelined thousands.
  void serve(uint64_t id) {
    if (auto i = conns.find(id); i == conns.end() || i->second.serving) return;
    conns[id].serving = true;
    for (;;) {
      auto i = conns.find(id);
      if (i == conns.end()) return;  // closed by what answered the last request
      auto& c = i->second;
      if (c.busy || c.in.empty() || c.out.size() - c.sent > max_unsent_bytes) {
        c.serving = false;
        if (c.read_closed && !c.busy && c.in.empty()) finish_and_close(id, c);
        return;
      }
      auto r = parse_request(c.in, settings.parse);
      if (r.outcome == parse_result::state::incomplete) {
        c.serving = false;
        if (c.read_closed) return finish_and_close(id, c);  // the rest will never come
        if (r.expects_continue && !c.continue_sent) {
          c.continue_sent = true;
          send_bytes(id, c, std::string{"HTTP/1.1 100 Continue\r\n\r\n"});
        }
        return;
      }
      if (r.outcome == parse_result::state::invalid) {
        if (on_refusal) on_refusal(r.status);
        c.serving = false;
        c.busy = true;  // nothing more is read from this connection as a request
        c.in.clear();
        c.close_when_sent = true;
        send_bytes(id, c, answer_bytes(r.status, "application/json", error_body(refusal_code(r.status), r.error), true));
        return;
      }
      c.in.erase(0, r.consumed);
      c.busy = true;
      c.continue_sent = false;
      bool keep_alive = r.req.keep_alive;
      try {
        on_request(id, std::move(r.req));
      } catch (const std::exception& e) {
        // A handler's bug costs its request a 500, never the loop (and with it the node).
        log::error("http", "a request handler failed: {}", e.what());
        respond_here(id, 500, error_body("internal", std::string{"the request failed: "} + e.what()), !keep_alive);
      }
    }
  }

  // ---- writing ------------------------------------------------------------------------

  void respond_here(uint64_t id, int status, const std::string& body, bool close) {
    deliver(answer{id, answer_bytes(status, "application/json", body, close), close});
  }

  void deliver(answer&& a) {
    auto i = conns.find(a.connection);
    if (i == conns.end() || !i->second.busy) return;  // the client went away
    auto& c = i->second;
    c.busy = false;
    c.last_activity = now;
    if (a.close) {
      c.in.clear();
      c.close_when_sent = true;
    }
    if (!send_bytes(a.connection, c, std::move(a.bytes))) return;
    serve(a.connection);  // requests the client pipelined behind this one
  }

  void deliver_outbox() {
    uint64_t ignored;
    (void)!::read(wake_fd, &ignored, sizeof ignored);
    std::vector<answer> ready;
    {
      std::lock_guard<std::mutex> guard{outbox_mutex};
      ready.swap(outbox);
    }
    for (auto& a : ready) deliver(std::move(a));
  }

  // Queues bytes and sends what the socket takes; false if the connection is gone.
  bool send_bytes(uint64_t id, connection& c, std::string&& bytes) {
    if (c.out.empty()) c.out = std::move(bytes);
    else c.out.append(bytes);
    if (!in_batch) return flush(id, c);
    if (!c.flush_due) {
      c.flush_due = true;
      unflushed.push_back(id);
    }
    return true;
  }

  void flush_batch() {
    // flush() may answer pipelined requests at once: those go out directly, not in here.
    auto ids = std::move(unflushed);
    unflushed.clear();
    for (auto id : ids) {
      auto i = conns.find(id);
      if (i == conns.end()) continue;
      i->second.flush_due = false;
      flush(id, i->second);
    }
  }

  bool flush(uint64_t id, connection& c) {
    while (c.sent < c.out.size()) {
      auto n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        c.last_activity = now;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.watching_writes) {
          c.watching_writes = true;
          rewatch(id, c);
        }
        return true;
      }
      drop(id);
      return false;
    }
    c.out.clear();
    c.sent = 0;
    if (c.watching_writes) {
      c.watching_writes = false;
      rewatch(id, c);
    }
    if (c.close_when_sent) {
      if (c.read_closed) drop(id);  // nothing more can come to linger for
      else linger(id, c);
      return false;
    }
    if (!c.busy) serve(id);  // requests held back while the client was not reading
    return true;
  }

  // Sends what is owed, then closes: nothing more will be answered on this connection.
  void finish_and_close(uint64_t id, connection& c) {
    c.close_when_sent = true;
    c.busy = true;
    flush(id, c);
  }

  void linger(uint64_t id, connection& c) {
    if (c.lingering) return;
    if (::shutdown(c.fd, SHUT_WR) != 0) return drop(id);
    c.lingering = true;
    ++lingering;
    c.busy = true;
    c.in.clear();
    c.last_activity = now;
  }

  void drop(uint64_t id) {
    auto i = conns.find(id);
    if (i == conns.end()) return;
    if (i->second.lingering) --lingering;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, i->second.fd, nullptr);
    ::close(i->second.fd);
    conns.erase(i);
  }

  // Closes connections whose request stalls (408) or that idled too long.
  void expire_connections(steady::time_point now) {
    std::vector<uint64_t> stale, stalled;
    for (auto& [id, c] : conns) {
      auto idle = now - c.last_activity;
      if (c.lingering) {
        if (idle > linger_timeout) stale.push_back(id);
      } else if (c.close_when_sent) {
        if (idle > settings.read_timeout) stale.push_back(id);  // not reading its last answer
      } else if (c.busy) {
        continue;  // the handler answers within its own deadline
      } else if (!c.in.empty() && idle > settings.read_timeout) {
        stalled.push_back(id);
      } else if (c.in.empty() && idle > settings.idle_timeout) {  // idle, or not reading its answers
        stale.push_back(id);
      }
    }
    for (auto id : stale) drop(id);
    for (auto id : stalled) {
      auto& c = conns[id];
      c.busy = true;
      c.in.clear();
      c.close_when_sent = true;
      c.last_activity = now;
      send_bytes(id, c, answer_bytes(408, "application/json",
                                     error_body("request_timeout", "the request did not arrive in time"), true));
    }
  }
};

server::server(server_settings settings, request_handler on_request, refusal_handler on_refusal)
  : impl_(std::make_unique<impl>(std::move(settings), std::move(on_request), std::move(on_refusal))) {}

server::~server() { stop(); }

std::optional<std::string> server::start() {
  if (auto err = impl_->bind_and_listen()) {
    impl_->close_all();
    return err;
  }
  impl_->loop = std::thread([d = impl_.get()] { d->run(); });
  return std::nullopt;
}

void server::stop() {
  if (!impl_->loop.joinable()) return;
  impl_->stopping.store(true, std::memory_order_release);
  uint64_t one = 1;
  (void)!::write(impl_->wake_fd, &one, sizeof one);
  impl_->loop.join();
  impl_->close_all();
  // Answers that arrive from now on are queued and never sent.
}

void server::respond(uint64_t connection, int status, std::string_view content_type, std::string_view body,
                     bool close) {
  answer a{connection, answer_bytes(status, content_type, body, close), close};
  if (std::this_thread::get_id() == impl_->loop_id) return impl_->deliver(std::move(a));
  bool was_empty;
  {
    std::lock_guard<std::mutex> guard{impl_->outbox_mutex};
    was_empty = impl_->outbox.empty();
    impl_->outbox.push_back(std::move(a));
  }
  // One wake-up per batch: the loop takes the whole outbox when it wakes.
  if (was_empty) {
    uint64_t one = 1;
    (void)!::write(impl_->wake_fd, &one, sizeof one);
  }
}

}  // namespace dsync::http
