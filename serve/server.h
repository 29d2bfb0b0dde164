// kiln's HTTP inference server (SageMaker's container contract): GET /ping, POST /invocations,
// GET /metrics, over serve/http_server.h. It knows nothing of the engine: the caller supplies a
// loader that returns the class names, the input normalization and a predictor callback. The
// loader runs on the batch worker thread, which then owns the model; /ping answers 503 until it
// has returned. /ping and /metrics are answered on the event loop, /invocations decoded on the
// worker pool, batched on the model's thread and encoded back on the pool.
// Lifecycle: bind() -> start(loader) -> run() (blocks) ... stop() from any thread (not from a
// signal handler): stop accepting, finish in-flight requests, stop the worker, return.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kiln/serve/batcher.h"
#include "kiln/serve/budget.h"
#include "kiln/serve/codec.h"
#include "kiln/serve/http_server.h"
#include "kiln/serve/metrics.h"

namespace kiln::serve {

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards, and
// returns that set for sigwait(): the way `kiln serve` takes its stop signals on one thread, so no
// handler runs in the middle of a request.
sigset_t block_stop_signals();

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 8080;                      // 0: any free port (bind() returns it)
  int64_t max_batch = 16;               // images per forward pass
  int64_t max_wait_ms = 2;              // longest a queued request waits for company
  size_t max_body_bytes = 6u << 20;     // SageMaker's 6 MiB; larger bodies are 413
  int64_t default_top_k = 5;            // JSON answers
  size_t max_connections = 1024;        // open connections held (the longest-idle one is closed
                                        // to make room for a new one)
  int http_threads = 0;                 // decode/encode threads; 0: max(2, cores)
  size_t memory_budget_bytes = size_t{512} << 20;  // bodies, decoded inputs and images in flight;
                                                   // past it requests are 503 + Retry-After
  int keep_alive_seconds = 5;           // idle keep-alive connections are closed after this
  int header_timeout_ms = 10000;        // a request's head must arrive within this
  int request_timeout_ms = 30000;       // ... and its head and body within this
  std::FILE* access_log = stdout;       // one line per request; nullptr: none
};

struct Model {
  InputSpec input;
  std::vector<std::string> class_names;  // one per class; their count is the number of classes
  Predictor predict;
};
using ModelLoader = std::function<Model()>;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts listening (connections queue in the kernel until run()).
  // Returns the port; throws kiln::Error if the address cannot be bound.
  int bind();
  // Starts the worker thread: loader(), then serving batches. A loader exception is logged,
  // stops the server and is rethrown by run().
  void start(ModelLoader loader);
  // Accepts and serves connections until stop(); then drains and joins everything.
  void run();
  void stop();

  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string metrics_text() const { return metrics_.render(); }
  size_t memory_in_use() const { return budget_.in_use(); }

 private:
  struct Invocation;
  HttpHandlers handlers();
  std::optional<HttpResponse> check_head(const HttpRequest& req) const;
  void invoke(HttpRequest& req, const ExchangePtr& ex);
  void finish(const std::shared_ptr<Invocation>& inv, const std::string& error);
  void log_line(const std::string& line);

  ServerOptions options_;
  Metrics metrics_;
  MemoryBudget budget_;
  Batcher batcher_;
  std::unique_ptr<HttpServer> http_;  // after batcher_: destroyed first, its pool may submit
  std::optional<Batcher::Ticket> burst_ticket_;  // event-loop thread only
  std::thread worker_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  int port_ = -1;
  // Set by the worker before ready_ becomes true; read-only afterwards.
  InputSpec input_;
  std::vector<std::string> class_names_;
  std::mutex load_mu_;
  std::string load_error_;
  std::mutex log_mu_;
};

}  // namespace kiln::serve
