// The HTTP side of kiln serve, over cpp-httplib 0.11.4 (Debian's libcpp-httplib). httplib runs one
// task per connection; our task queue grows a thread per open connection (up to a bound) so that
// /ping never waits behind busy keep-alive connections. Request threads decode bodies in parallel
// and hand the images to the Batcher's single worker thread, which owns the model.
#include "serve/server.h"

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <httplib.h>

#include "core/error.h"

namespace kiln::serve {

namespace {

using Clock = std::chrono::steady_clock;

// A TaskQueue that starts a thread whenever every existing one is busy (up to max_threads);
// httplib keeps a connection's thread for as long as the connection stays open.
class ElasticPool : public httplib::TaskQueue {
 public:
  ElasticPool(size_t max_threads, std::function<void()> on_idle)
      : max_threads_(std::max<size_t>(1, max_threads)), on_idle_(std::move(on_idle)) {}
  ~ElasticPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_threads_)
      threads_.emplace_back([this] { work(); });
    else
      cv_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shut_) return;
      shut_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();  // no enqueue() can race: the accept loop has ended
  }

  void on_idle() override {
    if (on_idle_) on_idle_();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return !jobs_.empty() || shut_; });
      --idle_;
      if (jobs_.empty()) return;
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  const size_t max_threads_;
  std::function<void()> on_idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool shut_ = false;
};

// When the request on this connection thread started (set before its body is read).
thread_local Clock::time_point t_request_start;
thread_local bool t_request_started = false;

void set_error(httplib::Response& res, int status, const std::string& reason) {
  res.status = status;
  res.set_content(reason + "\n", "text/plain");
}

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

// httplib's Server with access to its listening socket, to raise the listen backlog from the
// library's compiled-in 5 (Linux applies a repeated listen() to an already-listening socket).
class Server::Http : public httplib::Server {
 public:
  void raise_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

Server::Server(ServerOptions options)
    : options_(std::move(options)),
      http_(std::make_unique<Http>()),
      batcher_(BatcherOptions{options_.max_batch,
                              std::chrono::microseconds(options_.max_wait_ms * 1000)},
               &metrics_) {
  setup_routes();
}

Server::~Server() {
  stop();
  batcher_.stop();  // when run() was never called, the worker may still be waiting for work
  if (worker_.joinable()) worker_.join();
}

int Server::bind() {
  const int port = options_.port == 0 ? http_->bind_to_any_port(options_.host)
                                      : (http_->bind_to_port(options_.host, options_.port)
                                             ? options_.port
                                             : -1);
  if (port < 0)
    throw Error("kiln serve: cannot listen on " + options_.host + ":" +
                    std::to_string(options_.port),
                "is another server using the port? choose another with --port");
  http_->raise_backlog(1024);
  port_ = port;
  return port;
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
  if (!stopping_) {
    http_->listen_after_bind();
  }
  // The accept loop has ended and every connection thread has finished its request.
  batcher_.stop();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(load_mu_);
  if (!load_error_.empty()) throw Error("loading the model failed: " + load_error_);
}

void Server::stop() {
  stopping_ = true;
  http_->stop();  // no effect before the accept loop runs; its idle hook then sees stopping_
}

void Server::log_line(const std::string& line) {
  if (!options_.access_log) return;
  std::lock_guard<std::mutex> lock(log_mu_);
  std::fputs(line.c_str(), options_.access_log);
  std::fflush(options_.access_log);
}

void Server::setup_routes() {
  Http& h = *http_;
  h.new_task_queue = [this] {
    return new ElasticPool(options_.max_connections, [this] {
      if (stopping_) http_->stop();
    });
  };
  h.set_idle_interval(0, 100000);  // the accept loop wakes every 100 ms to check stopping_
  h.set_keep_alive_max_count(100000);
  h.set_keep_alive_timeout(options_.keep_alive_seconds);
  h.set_read_timeout(30, 0);
  h.set_write_timeout(30, 0);
  h.set_tcp_nodelay(true);
  h.set_payload_max_length(options_.max_body_bytes);

  h.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request_start = Clock::now();
    t_request_started = true;
    return httplib::Server::HandlerResponse::Unhandled;
  });

  h.Get("/ping", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_) {
      res.set_content("ok\n", "text/plain");
      return;
    }
    std::lock_guard<std::mutex> lock(load_mu_);
    set_error(res, 503, load_error_.empty() ? "model is loading" : "model failed to load");
  });

  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });

  h.Post("/invocations", [this](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) {
    const char* kAttrs = "X-Amzn-SageMaker-Custom-Attributes";
    if (req.has_header(kAttrs)) res.set_header(kAttrs, req.get_header_value(kAttrs));
    // Read (or at least drain) the whole body so the connection stays usable after an error.
    std::string body;
    bool too_big = false;
    size_t drained = 0;
    auto sink = [&](const char* data, size_t n) {
      if (too_big || body.size() + n > options_.max_body_bytes) {
        too_big = true;
        body.clear();
        drained += n;
        return drained < (size_t{64} << 20);
      }
      body.append(data, n);
      return true;
    };
    bool ok = req.is_multipart_form_data()
                  ? reader([](const httplib::MultipartFormData&) { return true; }, sink)
                  : reader(sink);
    if (too_big || res.status == 413) {
      set_error(res, 413, "request body is larger than " +
                              std::to_string(options_.max_body_bytes) + " bytes");
      return;
    }
    if (!ok) {
      set_error(res, 400, "could not read the request body");
      return;
    }
    try {
      if (!ready_) throw HttpError(503, "model is loading");
      auto ticket = batcher_.announce();
      const std::string content_type = req.get_header_value("Content-Type");
      check_content_type(content_type);
      const ResponseType type =
          negotiate_accept(req.get_header_value("Accept"), default_response_type(content_type));
      const int64_t classes = static_cast<int64_t>(class_names_.size());
      int64_t k = options_.default_top_k;
      if (type == ResponseType::json) {
        std::string k_text = req.has_param("k") ? req.get_param_value("k")
                                                : req.get_header_value("X-Kiln-Top-K");
        k = parse_top_k(k_text, options_.default_top_k, classes);
      }
      Images images = decode_request(content_type, body, input_);
      std::vector<float> log_probs(static_cast<size_t>(images.n * classes));
      batcher_.infer(images.data.data(), images.n, log_probs.data(), &ticket);
      if (type == ResponseType::npy)
        res.set_content(encode_npy_response(log_probs.data(), images.n, classes),
                        "application/x-npy");
      else
        res.set_content(
            encode_json_response(log_probs.data(), images.n, classes, class_names_, k),
            "application/json");
    } catch (const HttpError& e) {
      set_error(res, e.status(), e.what());
    } catch (const std::exception& e) {
      set_error(res, 500, std::string("internal error: ") + e.what());
    }
  });

  // Errors httplib produces itself (404, 413 before the handler, malformed requests) get a
  // one-line body too; responses that already carry a reason keep it.
  h.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string reason;
    if (res.status == 404 &&
        (req.path == "/ping" || req.path == "/invocations" || req.path == "/metrics")) {
      res.status = 405;
      reason = "method " + req.method + " not allowed on " + req.path;
    } else if (res.status == 404) {
      reason = "not found: use GET /ping, POST /invocations or GET /metrics";
    } else if (res.status == 413) {
      reason = "request body is larger than " + std::to_string(options_.max_body_bytes) + " bytes";
    } else {
      reason = "bad request (HTTP status " + std::to_string(res.status) + ")";
    }
    set_error(res, res.status, reason);
    return httplib::Server::HandlerResponse::Handled;
  }));

  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    set_error(res, 500, "internal error: " + what);
  });

  // Metrics are recorded just before the response is written, so a client that has its answer
  // also finds it counted in /metrics; the access log line follows the write.
  h.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    double seconds =
        t_request_started ? std::chrono::duration<double>(Clock::now() - t_request_start).count()
                          : 0.0;
    metrics_.record_request(req.path, res.status, seconds);
  });

  h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    double seconds =
        t_request_started ? std::chrono::duration<double>(Clock::now() - t_request_start).count()
                          : 0.0;
    t_request_started = false;
    if (!options_.access_log) return;
    char tail[96];
    std::snprintf(tail, sizeof tail, "\" %d %zu %.2fms\n", res.status, res.body.size(),
                  seconds * 1000.0);
    log_line(utc_now() + " " + req.remote_addr + " \"" + req.method + " " + req.path + tail);
  });
}

}  // namespace kiln::serve
