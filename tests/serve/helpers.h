// Shared fixtures for the serve tests: fixtures written by Python (numpy's np.save, PIL's
// PNG/JPEG), a deterministic predictor, a server run on 127.0.0.1 in a thread, and a raw-socket
// client for requests httplib's client would not send. Every wait is bounded. Temporary folders,
// files and running commands are tests/support's.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "kiln/serve/server.h"
#include "tests/support/support.h"

namespace kiln::test {

namespace fs = std::filesystem;

// Runs a Python script (written to dir/name) with cwd = dir; throws with its output on failure.
void run_python(const fs::path& dir, const std::string& name, const std::string& script);

// CIFAR-100's normalization, as kiln's model directories carry it.
serve::InputSpec cifar_spec();

// A deterministic stand-in for a model: 10 classes, per-image logits that depend on every input
// value, then log_softmax. The same image gives bit-identical output in any batch.
constexpr int64_t kTestClasses = 10;
void test_predict(const float* images, int64_t n, float* log_probs);
std::vector<std::string> test_class_names();

// A kiln::serve::Server on 127.0.0.1:<free port>, its run() on a thread; stopped and joined by
// the destructor (or by stop_and_join(), which returns run()'s error message, empty if none).
class TestServer {
 public:
  TestServer(serve::ServerOptions options, serve::ModelLoader loader);
  ~TestServer();
  int port() const { return port_; }
  serve::Server& server() { return *server_; }
  std::string stop_and_join();
  // Polls GET /ping until 200 (bounded by `timeout`); returns whether it became ready.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

 private:
  std::unique_ptr<serve::Server> server_;
  std::thread thread_;
  std::string run_error_;
  int port_ = -1;
};

// A loader that returns test_predict after an optional delay per batch.
serve::ModelLoader test_loader(std::chrono::milliseconds per_batch_delay = {});

// Sends raw bytes on a fresh connection and returns everything received until the peer closes
// or `timeout` passes.
std::string raw_request(int port, const std::string& bytes,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace kiln::test
