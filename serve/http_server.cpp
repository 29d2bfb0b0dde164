// The event loop, connections and worker pool of kiln serve's HTTP server (design in
// http_server.h). Level-triggered epoll; a connection is read only while it has no request in
// progress (pipelined bytes wait in the socket), and watched for hang-up while it has one, so a
// client that goes away cancels its work. Deadlines are checked every 100 ms.
#include "kiln/serve/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kiln/core/error.h"

namespace kiln::serve {

namespace {

using Clock = std::chrono::steady_clock;

// A fixed set of threads running posted tasks in order; shutdown() finishes what was posted.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { work(); });
  }
  ~Pool() { shutdown(); }
  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shut_) return;
      shut_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !tasks_.empty() || shut_; });
      if (tasks_.empty()) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  bool shut_ = false;
};

enum class State { reading, processing, writing, lingering };

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  std::string remote;
  RequestParser parser;
  State state = State::reading;
  std::string pending;  // bytes read after a complete request (the next, pipelined, request)
  std::string out;
  size_t out_sent = 0;
  bool close_after_write = false;
  bool discarding = false;                 // reading a refused request's body, to answer after it
  std::optional<HttpResponse> refusal;     // ... with this
  Clock::time_point accepted, request_start, deadline;
  Reservation body_mem;
  std::shared_ptr<std::atomic<bool>> cancelled;
  uint32_t events = 0;
  size_t lingered = 0;

  Conn(HttpLimits limits, MemoryBudget* budget) : parser(limits), body_mem(budget) {}
};

struct Completion {
  uint64_t id;
  std::string bytes;
  bool close;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions o;
  HttpHandlers h;
  HttpServer* self = nullptr;
  int listen_fd = -1, epoll_fd = -1, wake_fd = -1;
  std::unique_ptr<Pool> pool;
  std::atomic<bool> stopping{false};
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  uint64_t next_id = 1;
  std::mutex done_mu;
  std::vector<Completion> done;
  std::atomic<bool> wake_pending{false};
  Clock::time_point accept_paused_until{};
  bool listening_in_epoll = false;

  void wake() {
    if (wake_pending.exchange(true)) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd, &one, sizeof one);
  }

  void set_events(Conn& c, uint32_t ev) {
    if (c.events == ev) return;
    epoll_event e{};
    e.events = ev;
    e.data.u64 = c.id;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &e);
    c.events = ev;
  }

  void close_conn(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (c.cancelled) c.cancelled->store(true);
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    conns.erase(it);
    self->open_connections_.fetch_sub(1);
  }

  double seconds_since(Clock::time_point t) const {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  // A response the loop makes itself (refusals, timeouts): written now, connection closed after.
  void answer_now(Conn& c, HttpResponse r, const std::string& method, const std::string& path) {
    r.close = true;
    if (h.observe)
      h.observe(method, path, r, c.remote,
                seconds_since(c.parser.started() ? c.request_start : c.accepted));
    c.state = State::writing;
    c.out = serialize_response(r, method == "HEAD");
    c.out_sent = 0;
    c.close_after_write = true;
    c.deadline = Clock::now() + o.write_timeout;
    flush(c);
  }

  void answer_error(Conn& c, int status, const std::string& reason) {
    HttpResponse r = HttpResponse::error(status, reason);
    if (status == 503) r.headers.emplace_back("Retry-After", "1");
    for (const std::string& name : h.echo_headers)
      if (c.parser.request().has_header(name))
        r.headers.emplace_back(name, c.parser.request().header(name));
    answer_now(c, std::move(r), c.parser.request().method, c.parser.request().path);
  }

  // Writes what it can; finishes the exchange when everything is out.
  void flush(Conn& c) {
    while (c.out_sent < c.out.size()) {
      ssize_t w = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
      if (w > 0) {
        c.out_sent += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_events(c, EPOLLOUT);  // (not RDHUP: level-triggered, it would fire until the end)
        return;
      }
      close_conn(c.id);
      return;
    }
    after_write(c);
  }

  void after_write(Conn& c) {
    c.out.clear();
    c.out.shrink_to_fit();
    c.body_mem.release();
    if (c.close_after_write || stopping) {
      // Lingering close: stop sending, read and discard what the client still sends (a body we
      // refused) so our answer is not lost to a reset; bounded in time and bytes.
      ::shutdown(c.fd, SHUT_WR);
      c.state = State::lingering;
      c.deadline = Clock::now() + std::chrono::seconds(2);
      set_events(c, EPOLLIN | EPOLLRDHUP);
      return;
    }
    c.parser.reset();
    c.state = State::reading;
    c.discarding = false;
    c.refusal.reset();
    c.cancelled.reset();
    c.deadline = Clock::now() + o.idle_timeout;
    set_events(c, EPOLLIN | EPOLLRDHUP);
    if (!c.pending.empty()) {
      std::string bytes = std::move(c.pending);
      c.pending.clear();
      consume(c, bytes.data(), bytes.size());
    }
  }

  // Feeds bytes to the connection's parser and acts on what it finds. May close the connection.
  void consume(Conn& c, const char* data, size_t n) {
    const uint64_t id = c.id;
    while (n > 0) {
      if (c.state != State::reading) {
        if (c.state == State::processing || c.state == State::writing) c.pending.append(data, n);
        return;
      }
      const bool was_started = c.parser.started();
      const size_t used = c.parser.feed(data, n);
      data += used;
      n -= used;
      if (!was_started && c.parser.started()) {
        c.request_start = Clock::now();
        c.deadline = c.request_start + o.header_timeout;
      }
      if (!step(c)) {
        // A complete request: what follows it is the next (pipelined) one, read after the answer.
        if (n > 0 && conns.count(id) && (c.state == State::processing || c.state == State::writing))
          c.pending.append(data, n);
        return;
      }
      if (!conns.count(id)) return;
      if (used == 0 && n > 0 && c.state == State::reading &&
          c.parser.status() == RequestParser::Status::need_more)
        return;  // cannot happen: the parser takes bytes while it needs them
    }
  }

  // Acts on the parser's status after a feed; false when the connection stopped reading.
  bool step(Conn& c) {
    using S = RequestParser::Status;
    switch (c.parser.status()) {
      case S::need_more:
        return true;
      case S::error:
        answer_error(c, c.parser.error_status(), c.parser.error_reason());
        return false;
      case S::head_done: {
        HttpRequest& req = c.parser.request();
        c.deadline = c.request_start + o.request_timeout;
        std::optional<HttpResponse> refusal = h.check_head ? h.check_head(req) : std::nullopt;
        if (refusal && refusal->close) {
          answer_now(c, std::move(*refusal), req.method, req.path);
          return false;
        }
        if (!refusal && req.content_length > 0 && !c.body_mem.try_add(req.content_length)) {
          answer_error(c, 503, "server busy: the memory budget for requests in flight is spent; retry later");
          return false;
        }
        if (req.expect_continue) {
          static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          [[maybe_unused]] ssize_t w = ::send(c.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL);
        }
        c.discarding = refusal.has_value();
        c.refusal = std::move(refusal);
        c.parser.read_body(!c.discarding);
        return step(c);
      }
      case S::body: {
        // Chunked bodies are reserved as they grow (the string's capacity is what it holds).
        const size_t held = c.parser.request().body.capacity();
        if (!c.discarding && held > c.body_mem.bytes() &&
            !c.body_mem.try_add(std::max<size_t>(held - c.body_mem.bytes(), 256 << 10))) {
          answer_error(c, 503, "server busy: the memory budget for requests in flight is spent; retry later");
          return false;
        }
        return true;
      }
      case S::complete:
        dispatch(c);
        return false;
    }
    return false;
  }

  void dispatch(Conn& c) {
    HttpRequest req = std::move(c.parser.request());
    c.state = State::processing;
    set_events(c, EPOLLRDHUP);  // hang-ups only: pipelined bytes wait until the answer is out
    auto ex = std::make_shared<Exchange>();
    ex->server_ = self;
    ex->conn_id_ = c.id;
    ex->head_only_ = req.method == "HEAD";
    ex->keep_alive_ = req.keep_alive && !stopping;
    ex->remote_ = c.remote;
    ex->method_ = req.method;
    ex->path_ = req.path;
    ex->started_ = c.request_start;
    c.cancelled = ex->cancelled_;
    if (c.refusal) {
      HttpResponse r = std::move(*c.refusal);
      c.refusal.reset();
      ex->respond(std::move(r));
      return;
    }
    if (h.on_pool && h.on_pool(req)) {
      pool->post([this, req = std::move(req), ex]() mutable { run_handler(req, ex); });
    } else {
      run_handler(req, ex);
    }
  }

  void run_handler(HttpRequest& req, const ExchangePtr& ex) {
    try {
      h.handle(req, ex);
    } catch (const std::exception& e) {
      ex->respond(HttpResponse::error(500, std::string("internal error: ") + e.what()));
    }
  }

  void on_readable(Conn& c) {
    char buf[64 << 10];
    const uint64_t id = c.id;
    for (int round = 0; round < 4; ++round) {
      ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r > 0) {
        if (c.state == State::lingering) {
          c.lingered += static_cast<size_t>(r);
          if (c.lingered > (size_t{64} << 20)) return close_conn(id);
          continue;
        }
        consume(c, buf, static_cast<size_t>(r));
        if (!conns.count(id) || c.state != State::reading) return;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      return close_conn(id);  // EOF or error
    }
  }

  void on_event(uint64_t id, uint32_t ev) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (c.state == State::processing) {
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) close_conn(id);  // the client has gone
      return;
    }
    if (c.state == State::writing) {
      if (ev & (EPOLLHUP | EPOLLERR)) return close_conn(id);
      if (ev & EPOLLOUT) flush(c);
      return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
  }

  // At the connection bound: closes the connection that has waited longest without a request
  // being worked on (idle, or still sending its request). False if every one is busy.
  bool evict_one() {
    Conn* oldest = nullptr;
    for (auto& [id, c] : conns) {
      if (c->state != State::reading && c->state != State::lingering) continue;
      if (!oldest || c->accepted < oldest->accepted) oldest = c.get();
    }
    if (!oldest) return false;
    close_conn(oldest->id);
    return true;
  }

  void accept_some() {
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          if (!evict_one()) pause_accepting();
        }
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char host[INET6_ADDRSTRLEN] = "?";
      if (addr.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, host, sizeof host);
      else if (addr.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, host, sizeof host);
      if (conns.size() >= o.max_connections && !evict_one()) {
        // Every connection has a request in progress: refuse this one.
        static const std::string kBusy = serialize_response(
            [] {
              HttpResponse r = HttpResponse::error(503, "server busy: too many connections; retry later");
              r.headers.emplace_back("Retry-After", "1");
              r.close = true;
              return r;
            }(),
            false);
        [[maybe_unused]] ssize_t w = ::send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL);
        ::close(fd);
        continue;
      }
      auto c = std::make_unique<Conn>(o.limits, o.budget);
      c->fd = fd;
      c->id = next_id++;
      c->remote = host;
      c->accepted = Clock::now();
      c->deadline = c->accepted + o.idle_timeout;
      epoll_event e{};
      e.events = EPOLLIN | EPOLLRDHUP;
      e.data.u64 = c->id;
      ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &e);
      c->events = e.events;
      conns.emplace(c->id, std::move(c));
      self->open_connections_.fetch_add(1);
    }
  }

  void pause_accepting() {
    if (!listening_in_epoll) return;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
    listening_in_epoll = false;
    accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
  }

  void listen_in_epoll() {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = 0;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &e);
    listening_in_epoll = true;
  }

  void check_deadlines(Clock::time_point now) {
    std::vector<uint64_t> expired;
    for (auto& [id, c] : conns)
      if (c->state != State::processing && now >= c->deadline) expired.push_back(id);
    for (uint64_t id : expired) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      if (c.state == State::reading && c.parser.started()) {
        const bool head = c.parser.status() == RequestParser::Status::need_more;
        answer_error(c, 408, std::string("request ") + (head ? "head" : "body") +
                                 " not received within " +
                                 std::to_string((head ? o.header_timeout : o.request_timeout).count()) +
                                 " ms");
      } else {
        close_conn(id);
      }
    }
  }

  void take_completions() {
    // Read the eventfd before clearing the flag: a wake() between the two then either sees the
    // flag still set (its completion is already queued, and taken below) or writes again.
    uint64_t counter;
    [[maybe_unused]] ssize_t r = ::read(wake_fd, &counter, sizeof counter);
    wake_pending = false;
    std::vector<Completion> batch;
    {
      std::lock_guard<std::mutex> lock(done_mu);
      batch.swap(done);
    }
    for (Completion& d : batch) {
      auto it = conns.find(d.id);
      if (it == conns.end()) continue;  // the client has gone
      Conn& c = *it->second;
      c.state = State::writing;
      c.out = std::move(d.bytes);
      c.out_sent = 0;
      c.close_after_write = d.close;
      c.deadline = Clock::now() + o.write_timeout;
      flush(c);
    }
  }

  // After stop(): no new connections; idle ones and half-read requests are closed, the others
  // finish (bounded by drain_timeout).
  void begin_drain() {
    if (listen_fd >= 0) {
      if (listening_in_epoll) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
      listening_in_epoll = false;
      ::close(listen_fd);
      listen_fd = -1;
    }
    std::vector<uint64_t> idle;
    for (auto& [id, c] : conns)
      if (c->state == State::reading) idle.push_back(id);
    for (uint64_t id : idle) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      if (c.parser.started())
        answer_error(c, 503, "server is shutting down");
      else
        close_conn(id);
    }
  }

  void loop() {
    if (stopping) return;
    listen_in_epoll();
    std::vector<epoll_event> events(256);
    bool draining = false;
    Clock::time_point drain_deadline{}, next_check = Clock::now();
    for (;;) {
      if (stopping && !draining) {
        draining = true;
        drain_deadline = Clock::now() + o.drain_timeout;
        begin_drain();
      }
      if (draining && (conns.empty() || Clock::now() > drain_deadline)) break;
      const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 100);
      if (n > 0 && h.on_burst) h.on_burst(true);
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[static_cast<size_t>(i)].data.u64;
        const uint32_t ev = events[static_cast<size_t>(i)].events;
        if (id == 0) {
          if (!stopping) accept_some();
        } else if (id == UINT64_MAX) {
          take_completions();
        } else {
          on_event(id, ev);
        }
      }
      if (n > 0 && h.on_burst) h.on_burst(false);
      const auto now = Clock::now();
      if (!listening_in_epoll && !stopping && listen_fd >= 0 && now >= accept_paused_until)
        listen_in_epoll();
      if (now >= next_check) {
        check_deadlines(now);
        next_check = now + std::chrono::milliseconds(100);
      }
    }
    std::vector<uint64_t> left;
    for (auto& [id, c] : conns) left.push_back(id);
    for (uint64_t id : left) close_conn(id);
  }
};

void Exchange::respond(HttpResponse r) {
  if (responded_.exchange(true)) return;
  if (!keep_alive_ || server_->impl_->stopping) r.close = true;
  if (r.status == 503 &&
      std::none_of(r.headers.begin(), r.headers.end(), [](const auto& kv) { return kv.first == "Retry-After"; }))
    r.headers.emplace_back("Retry-After", "1");
  auto& h = server_->impl_->h;
  if (h.observe)
    h.observe(method_, path_, r, remote_,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  server_->complete(conn_id_, serialize_response(r, head_only_), r.close);
}

HttpServer::HttpServer(HttpServerOptions options, HttpHandlers handlers)
    : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(options);
  impl_->h = std::move(handlers);
  impl_->self = this;
  impl_->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  impl_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  KILN_ASSERT(impl_->epoll_fd >= 0 && impl_->wake_fd >= 0, "epoll/eventfd: " + std::string(std::strerror(errno)));
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = UINT64_MAX;
  ::epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, impl_->wake_fd, &e);
  impl_->pool = std::make_unique<Pool>(impl_->o.worker_threads);
}

HttpServer::~HttpServer() {
  impl_->pool->shutdown();
  for (auto& [id, c] : impl_->conns) ::close(c->fd);
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  ::close(impl_->epoll_fd);
  ::close(impl_->wake_fd);
}

int HttpServer::bind() {
  Impl& m = *impl_;
  // Each connection is a descriptor: allow as many as the hard limit permits.
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  const std::string port = std::to_string(m.o.port);
  const std::string where = m.o.host + ":" + port;
  if (::getaddrinfo(m.o.host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
    throw Error("kiln serve: cannot resolve the address " + where, "use an IP address for --host");
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 4096) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0)
    throw Error("kiln serve: cannot listen on " + where,
                "is another server using the port? choose another with --port");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  m.listen_fd = fd;
  return bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void HttpServer::run() {
  impl_->loop();
  impl_->pool->shutdown();
}

void HttpServer::stop() {
  impl_->stopping = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(impl_->wake_fd, &one, sizeof one);
}

void HttpServer::post(std::function<void()> task) { impl_->pool->post(std::move(task)); }

void HttpServer::complete(uint64_t conn_id, std::string bytes, bool close) {
  {
    std::lock_guard<std::mutex> lock(impl_->done_mu);
    impl_->done.push_back({conn_id, std::move(bytes), close});
  }
  impl_->wake();
}

}  // namespace kiln::serve
