// kiln serve's HTTP/1.1 server: one event-loop thread (epoll) reads every connection, so a slow
// or idle client costs a socket and a bounded buffer, never a thread; complete requests run on a
// small worker pool (or, for cheap routes such as /ping, on the loop itself, so they answer
// whatever the pool is doing). Every request has a deadline for its head and for head plus body;
// bodies are reserved from a MemoryBudget as they arrive; the connections held are bounded, and
// at the bound the longest-waiting connection that has no request in progress is closed to make
// room. Responses may come from any thread, later (Exchange::respond).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/serve/budget.h"
#include "kiln/serve/http.h"

namespace kiln::serve {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8080;  // 0: any free port
  size_t max_connections = 512;
  int worker_threads = 4;
  HttpLimits limits;
  std::chrono::milliseconds idle_timeout{5000};      // keep-alive connection between requests
  std::chrono::milliseconds header_timeout{10000};   // a request's head, from its first byte
  std::chrono::milliseconds request_timeout{30000};  // head and body, from the first byte
  std::chrono::milliseconds write_timeout{30000};    // a response's bytes
  std::chrono::milliseconds drain_timeout{25000};    // after stop(): in-flight requests
  MemoryBudget* budget = nullptr;                     // request bodies are reserved from it
};

class HttpServer;

// One request being answered. respond() may be called once, from any thread, at any time (also
// after the client has gone: the answer is then dropped).
class Exchange {
 public:
  void respond(HttpResponse r);
  // Set when the client closes its connection before the answer is written.
  bool cancelled() const { return cancelled_->load(); }
  std::shared_ptr<const std::atomic<bool>> cancel_flag() const { return cancelled_; }
  const std::string& remote() const { return remote_; }
  std::chrono::steady_clock::time_point started() const { return started_; }

 private:
  friend class HttpServer;
  HttpServer* server_ = nullptr;
  uint64_t conn_id_ = 0;
  bool head_only_ = false;
  bool keep_alive_ = true;
  std::string remote_;
  std::string method_, path_;
  std::chrono::steady_clock::time_point started_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
  std::atomic<bool> responded_{false};
};
using ExchangePtr = std::shared_ptr<Exchange>;

struct HttpHandlers {
  // On the loop thread, once a request's head has arrived and before its body is read: a
  // response refuses the request. Without `close` the body is still read (and discarded) and the
  // connection kept; with it the answer goes out at once and the connection is closed.
  std::function<std::optional<HttpResponse>(const HttpRequest&)> check_head;
  // Whether a complete request is handled on the worker pool (else on the loop: keep it cheap).
  std::function<bool(const HttpRequest&)> on_pool;
  // Handles a complete request; must see to it that ex->respond() is called once.
  std::function<void(HttpRequest& req, const ExchangePtr& ex)> handle;
  // Every response just before it is written, those the server makes itself included (408, 413,
  // 503 at the connection bound, ...): method and path are empty when no request line was read.
  std::function<void(const std::string& method, const std::string& path, const HttpResponse& res,
                     const std::string& remote, double seconds)>
      observe;
  // Called with true before the loop handles a wake-up's events and with false after: requests
  // read in between arrive together (the batcher waits for them).
  std::function<void(bool)> on_burst;
  // Request headers copied into the responses the server makes itself (when it has read them).
  std::vector<std::string> echo_headers;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; returns the port. Throws kiln::Error when the address cannot be bound.
  int bind();
  // Serves until stop(); then answers the requests in flight (at most drain_timeout), closes
  // every connection, finishes the pool's tasks and returns.
  void run();
  // Thread-safe; also before run() (which then returns at once).
  void stop();
  // Runs `task` on the worker pool.
  void post(std::function<void()> task);
  size_t open_connections() const { return open_connections_.load(); }

 private:
  friend class Exchange;
  struct Impl;
  void complete(uint64_t conn_id, std::string bytes, bool close);
  std::unique_ptr<Impl> impl_;
  std::atomic<size_t> open_connections_{0};
};

}  // namespace kiln::serve
