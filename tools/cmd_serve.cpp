// `kiln serve`: SageMaker's inference container contract on top of serve/ (the HTTP server, which
// knows nothing of the engine) and models::Classifier. It listens at once, loads the model
// directory on the batch worker thread (which then owns the model; /ping is 503 until then), and
// on SIGTERM/SIGINT stops accepting, finishes what is in flight and exits 0.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/models/classifier.h"
#include "kiln/serve/server.h"
#include "tools/args.h"
#include "tools/command.h"
#include "kiln/models/model_dir.h"

namespace {

using Clock = std::chrono::steady_clock;

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

// Runs on the batch worker thread: OpenMP's thread count is a per-thread setting, so it is set
// here, where every forward pass will run.
kiln::serve::Model load_model(const std::string& dir, int threads, int64_t max_batch) {
  const auto t0 = Clock::now();
  kiln::set_num_threads(threads);
  // Built without random initialisation and loaded in one call: every weight comes from the
  // directory (a missing one is an error, never a random value).
  kiln::models::LoadedResNet loaded = kiln::models::load_resnet(dir);
  const kiln::models::ModelConfig& cfg = loaded.config;
  auto clf = std::make_shared<kiln::models::Classifier>(std::move(loaded.net));
  clf->set_image_size(cfg.image_size);
  const auto t_loaded = Clock::now();

  kiln::serve::Model m;
  m.input.image_size = cfg.image_size;
  m.input.mean = cfg.mean;
  m.input.std = cfg.std;
  m.class_names = cfg.class_names;
  for (int64_t c = static_cast<int64_t>(m.class_names.size()); c < cfg.num_classes; ++c)
    m.class_names.push_back(std::to_string(c));
  m.class_names.resize(static_cast<size_t>(cfg.num_classes));
  m.predict = [clf](const float* images, int64_t n, float* log_probs) {
    clf->predict_log_probs(images, n, log_probs);
  };
  // Warm up (oneDNN builds its primitives on first use) for a lone image and a full batch, so
  // neither the first request nor the first batch pays for it.
  const int64_t plane = 3 * cfg.image_size * cfg.image_size;
  for (int64_t n : {int64_t{1}, max_batch}) {
    std::vector<float> x(static_cast<size_t>(n * plane), 0.f), y(static_cast<size_t>(n * cfg.num_classes));
    m.predict(x.data(), n, y.data());
  }
  auto secs = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t_end = Clock::now();
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "kiln serve: model %s (%lld classes, %s data) from %s ready in %.2f s (load %.2f, "
                "warm-up %.2f); isa %s, %d threads",
                cfg.arch.c_str(), static_cast<long long>(cfg.num_classes), cfg.dataset.c_str(),
                loaded.weights_file.string().c_str(), secs(t0, t_end), secs(t0, t_loaded),
                secs(t_loaded, t_end), kiln::isa_name(kiln::active_isa()),
                kiln::num_threads());
  say(buf);
  return m;
}

int run_serve(const std::vector<std::string>& argv) {
  kiln::cli::Args a("kiln serve",
                    "Serve a model directory over HTTP with SageMaker's inference container "
                    "contract: GET /ping, POST /invocations, GET /metrics.");
  a.option("--model-dir", "DIR", "model directory (config.json + model.safetensors or model.pth)",
           "/opt/ml/model");
  a.option("--port", "PORT", "TCP port", "8080");
  a.option("--host", "HOST", "address to listen on", "0.0.0.0");
  a.option("--threads", "N", "threads for the model's forward pass (0 = all cores)", "0");
  a.option("--isa", "ISA", "cap kiln's kernels: scalar, avx2 or avx512 (default: the CPU's best)");
  a.option("--max-batch", "B", "most images in one forward pass of the dynamic batcher", "16");
  a.option("--max-wait-ms", "M",
           "longest a request waits for others to join its batch (only while more are arriving)",
           "2");
  a.option("--max-connections", "N",
           "most open HTTP connections held (at the bound the longest-idle one is closed)", "1024");
  a.option("--memory-budget-mb", "MB",
           "memory for requests in flight (bodies, decoded inputs); past it requests are 503",
           "512");
  a.option("--header-timeout-ms", "MS", "a request's head must arrive within this", "10000");
  a.option("--request-timeout-ms", "MS", "a request's head and body must arrive within this",
           "30000");
  a.option("--http-threads", "N", "threads decoding and encoding requests (0: max(2, cores))", "0");
  a.flag("--no-access-log", "do not print a line per request on stdout");
  if (!a.parse(argv)) return 0;

  kiln::serve::ServerOptions o;
  o.host = a.get("--host");
  o.port = static_cast<int>(a.get_int("--port"));
  o.max_batch = a.get_int("--max-batch");
  o.max_wait_ms = a.get_int("--max-wait-ms");
  o.max_connections = static_cast<size_t>(a.get_int("--max-connections"));
  const int64_t budget_mb = a.get_int("--memory-budget-mb");
  o.memory_budget_bytes = static_cast<size_t>(std::max<int64_t>(budget_mb, 0)) << 20;
  o.header_timeout_ms = static_cast<int>(a.get_int("--header-timeout-ms"));
  o.request_timeout_ms = static_cast<int>(a.get_int("--request-timeout-ms"));
  o.http_threads = static_cast<int>(a.get_int("--http-threads"));
  o.access_log = a.has("--no-access-log") ? nullptr : stdout;
  const int threads = static_cast<int>(a.get_int("--threads"));
  const std::string dir = a.get("--model-dir");
  if (o.port < 0 || o.port > 65535) kiln::fail("--port", "0..65535", a.get("--port"));
  if (o.max_batch < 1) kiln::fail("--max-batch", "at least 1", a.get("--max-batch"));
  if (o.max_wait_ms < 0) kiln::fail("--max-wait-ms", "0 or more", a.get("--max-wait-ms"));
  if (threads < 0) kiln::fail("--threads", "0 (all cores) or more", a.get("--threads"));
  if (o.max_connections < 1) kiln::fail("--max-connections", "at least 1", a.get("--max-connections"));
  if (budget_mb < 16) kiln::fail("--memory-budget-mb", "at least 16", a.get("--memory-budget-mb"));
  if (o.header_timeout_ms < 1)
    kiln::fail("--header-timeout-ms", "at least 1", a.get("--header-timeout-ms"));
  if (o.request_timeout_ms < o.header_timeout_ms)
    kiln::fail("--request-timeout-ms", "at least --header-timeout-ms", a.get("--request-timeout-ms"));
  if (o.http_threads < 0) kiln::fail("--http-threads", "0 (auto) or more", a.get("--http-threads"));
  if (a.has("--isa")) kiln::force_isa(kiln::parse_isa(a.get("--isa")));

  // SIGTERM/SIGINT are taken by one thread with sigwait(); every thread started from here on
  // inherits the blocked mask, so no handler runs in the middle of a request.
  const sigset_t signals = kiln::serve::block_stop_signals();

  kiln::serve::Server server(o);
  const int port = server.bind();
  say("kiln serve: listening on http://" + o.host + ":" + std::to_string(port) +
      ", loading the model from " + dir);
  const int64_t max_batch = o.max_batch;
  server.start([dir, threads, max_batch] { return load_model(dir, threads, max_batch); });

  std::atomic<bool> finished{false};
  std::thread signal_thread([&server, &finished, signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (finished) return;  // woken below after run() returned on its own
    say(std::string("kiln serve: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
        ": no new connections; finishing requests in flight");
    server.stop();
  });
  std::string error;
  try {
    server.run();
  } catch (const std::exception& e) {
    error = e.what();
  }
  finished = true;
  pthread_kill(signal_thread.native_handle(), SIGTERM);  // wakes sigwait if no signal came
  signal_thread.join();
  if (!error.empty()) throw kiln::Error(error);
  say("kiln serve: stopped");
  return 0;
}

}  // namespace

KILN_COMMAND("serve", "serve a model over HTTP (SageMaker inference contract)", run_serve);
