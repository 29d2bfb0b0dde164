// The routes of kiln serve over its HTTP server (serve/http_server.h). /ping and /metrics are
// answered on the event loop (they read a flag and counters), so they answer whatever the model,
// the pool or other clients are doing. POST /invocations: the body is decoded on the worker pool
// with its memory reserved from the budget, the images go to the Batcher's single worker thread
// (which owns the model), and the answer is encoded back on the pool.
#include "kiln/serve/server.h"

#include <signal.h>

#include <chrono>
#include <ctime>

#include "kiln/core/error.h"

namespace kiln::serve {

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

namespace {

using Clock = std::chrono::steady_clock;
const char* const kAttrs = "X-Amzn-SageMaker-Custom-Attributes";
constexpr size_t kInlineNpyBytes = 64 << 10;  // 5 float32 images

std::string utc_now() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count()));
  return buf;
}

}  // namespace

// One /invocations request between decoding and its answer.
struct Server::Invocation {
  explicit Invocation(MemoryBudget* budget) : mem(budget) {}
  Reservation mem;
  Images images;
  std::vector<float> log_probs;
  ResponseType type = ResponseType::npy;
  int64_t k = 0;
  std::string attrs;
  ExchangePtr ex;
};

Server::Server(ServerOptions options)
    : options_(std::move(options)),
      budget_(options_.memory_budget_bytes),
      batcher_(BatcherOptions{options_.max_batch,
                              std::chrono::microseconds(options_.max_wait_ms * 1000)},
               &metrics_) {
  HttpServerOptions h;
  h.host = options_.host;
  h.port = options_.port;
  h.max_connections = options_.max_connections;
  h.worker_threads = options_.http_threads > 0
                         ? options_.http_threads
                         : std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  h.limits.max_body_bytes = options_.max_body_bytes;
  h.idle_timeout = std::chrono::seconds(options_.keep_alive_seconds);
  h.header_timeout = std::chrono::milliseconds(options_.header_timeout_ms);
  h.request_timeout = std::chrono::milliseconds(options_.request_timeout_ms);
  h.budget = &budget_;
  http_ = std::make_unique<HttpServer>(h, handlers());
}

Server::~Server() {
  stop();
  batcher_.stop();  // when run() was never called, the worker may still be waiting for work
  if (worker_.joinable()) worker_.join();
}

int Server::bind() {
  port_ = http_->bind();
  return port_;
}

void Server::start(ModelLoader loader) {
  worker_ = std::thread([this, loader = std::move(loader)] {
    Model model;
    try {
      model = loader();
      KILN_ASSERT(!model.class_names.empty() && model.predict, "the loader returned no model");
      input_ = model.input;
      class_names_ = model.class_names;
    } catch (const std::exception& e) {
      const kiln::Error* ke = dynamic_cast<const kiln::Error*>(&e);
      {
        std::lock_guard<std::mutex> lock(load_mu_);
        load_error_ = ke ? ke->full_message() : e.what();
      }
      stop();
      return;
    }
    metrics_.set_model_ready(true);
    ready_ = true;
    const int64_t S = input_.image_size;
    batcher_.run(model.predict, 3 * S * S, static_cast<int64_t>(class_names_.size()));
  });
}

void Server::run() {
  http_->run();  // returns once every request in flight has been answered
  batcher_.stop();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(load_mu_);
  if (!load_error_.empty()) throw Error("loading the model failed: " + load_error_);
}

void Server::stop() {
  stopping_ = true;
  http_->stop();
}

void Server::log_line(const std::string& line) {
  if (!options_.access_log) return;
  std::lock_guard<std::mutex> lock(log_mu_);
  std::fputs(line.c_str(), options_.access_log);
  std::fflush(options_.access_log);
}

std::optional<HttpResponse> Server::check_head(const HttpRequest& req) const {
  const std::string& p = req.path;
  const bool get = req.method == "GET" || req.method == "HEAD";
  std::optional<HttpResponse> r;
  if (p == "/ping" || p == "/metrics") {
    if (!get) r = HttpResponse::error(405, "method " + req.method + " not allowed on " + p);
  } else if (p == "/invocations") {
    if (req.method != "POST")
      r = HttpResponse::error(405, "method " + req.method + " not allowed on " + p);
    else if (!ready_)
      r = HttpResponse::error(503, "model is loading");
  } else {
    r = HttpResponse::error(404, "not found: use GET /ping, POST /invocations or GET /metrics");
  }
  if (r && p == "/invocations" && req.has_header(kAttrs))
    r->headers.emplace_back(kAttrs, req.header(kAttrs));
  return r;
}

HttpHandlers Server::handlers() {
  HttpHandlers h;
  h.check_head = [this](const HttpRequest& req) { return check_head(req); };
  // Small NPY bodies (the SageMaker SDK's usual request) are decoded on the loop itself: a copy
  // of a few images costs less than handing them to another thread. The rest goes to the pool.
  h.on_pool = [](const HttpRequest& req) {
    return req.path == "/invocations" &&
           (req.body.size() > kInlineNpyBytes || media_type(req.header("Content-Type")) != "application/x-npy");
  };
  h.on_burst = [this](bool begins) {
    if (begins && ready_) burst_ticket_.emplace(batcher_.announce());
    if (!begins) burst_ticket_.reset();
  };
  h.echo_headers = {kAttrs};
  h.handle = [this](HttpRequest& req, const ExchangePtr& ex) {
    if (req.path == "/invocations") return invoke(req, ex);
    HttpResponse r;
    if (req.path == "/metrics") {
      r.body = metrics_.render();
      r.content_type = "text/plain; version=0.0.4";
    } else if (ready_) {
      r.body = "ok\n";
    } else {
      std::lock_guard<std::mutex> lock(load_mu_);
      r = HttpResponse::error(503, load_error_.empty() ? "model is loading" : "model failed to load");
    }
    ex->respond(std::move(r));
  };
  // Counted just before the response is written, so a client that has its answer also finds it
  // in /metrics.
  h.observe = [this](const std::string& method, const std::string& path, const HttpResponse& res,
                     const std::string& remote, double seconds) {
    metrics_.record_request(path, res.status, seconds);
    if (!options_.access_log) return;
    char tail[96];
    std::snprintf(tail, sizeof tail, "\" %d %zu %.2fms\n", res.status, res.body.size(),
                  seconds * 1000.0);
    log_line(utc_now() + " " + remote + " \"" + (method.empty() ? "-" : printable(method, 256, true)) + " " +
             (path.empty() ? "-" : printable(path, 256, true)) + tail);
  };
  return h;
}

void Server::invoke(HttpRequest& req, const ExchangePtr& ex) {
  auto inv = std::make_shared<Invocation>(&budget_);
  inv->ex = ex;
  inv->attrs = req.header(kAttrs);
  try {
    if (!ready_) throw HttpError(503, "model is loading");
    auto ticket = batcher_.announce();
    const std::string content_type = req.header("Content-Type");
    check_content_type(content_type);
    inv->type = negotiate_accept(req.header("Accept"), default_response_type(content_type));
    const int64_t classes = static_cast<int64_t>(class_names_.size());
    if (inv->type == ResponseType::json) {
      const std::optional<std::string> k = req.param("k");
      inv->k = parse_top_k(k ? *k : req.header("X-Kiln-Top-K"), options_.default_top_k, classes);
    }
    inv->images = decode_request(content_type, req.body, input_, &inv->mem);
    req.body = std::string();
    const int64_t n = inv->images.n;
    inv->mem.add(static_cast<size_t>(n * classes) * sizeof(float) * 3, "the answer");
    inv->log_probs.resize(static_cast<size_t>(n * classes));
    batcher_.submit({inv->images.data.data(), n, inv->log_probs.data(), ex->cancel_flag(),
                     [this, inv](const std::string& error) {
                       // An NPY answer is a copy of the rows: made here. JSON's top-k and text
                       // go to the pool, off the model's thread.
                       if (inv->type == ResponseType::npy)
                         finish(inv, error);
                       else
                         http_->post([this, inv, error] { finish(inv, error); });
                     }},
                    &ticket);
  } catch (const HttpError& e) {
    HttpResponse r = HttpResponse::error(e.status(), e.what());
    if (!inv->attrs.empty()) r.headers.emplace_back(kAttrs, inv->attrs);
    ex->respond(std::move(r));
  }
}

void Server::finish(const std::shared_ptr<Invocation>& inv, const std::string& error) {
  HttpResponse r;
  if (!error.empty()) {
    r = HttpResponse::error(500, "inference failed: " + error);
  } else {
    try {
      const int64_t n = inv->images.n, classes = static_cast<int64_t>(class_names_.size());
      if (inv->type == ResponseType::npy) {
        r.body = encode_npy_response(inv->log_probs.data(), n, classes);
        r.content_type = "application/x-npy";
      } else {
        r.body = encode_json_response(inv->log_probs.data(), n, classes, class_names_, inv->k);
        r.content_type = "application/json";
      }
    } catch (const std::exception& e) {
      r = HttpResponse::error(500, std::string("internal error: ") + e.what());
    }
  }
  if (!inv->attrs.empty()) r.headers.emplace_back(kAttrs, inv->attrs);
  inv->ex->respond(std::move(r));
}

}  // namespace kiln::serve
