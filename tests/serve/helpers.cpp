// Shared fixtures for the serve tests (see helpers.h).
#include "helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <stdexcept>

namespace kiln::test {

void run_python(const fs::path& dir, const std::string& name, const std::string& script) {
  write_text(dir / name, script);
  std::string log = (dir / (name + ".log")).string();
  std::string cmd = "cd " + quote(dir.string()) + " && " + quote(python()) + " " + quote(name) +
                    " > " + quote(log) + " 2>&1";
  if (run(cmd) != 0) {
    const std::string out = read_text(log);
    throw std::runtime_error("python fixture " + name + " failed (" + python() +
                             ", needs numpy and PIL):\n" + out);
  }
}

serve::InputSpec cifar_spec() {
  serve::InputSpec s;
  s.image_size = 32;
  s.mean = {0.507f, 0.487f, 0.441f};
  s.std = {0.267f, 0.256f, 0.276f};
  return s;
}

void test_predict(const float* images, int64_t n, float* log_probs) {
  const int64_t F = 3 * 32 * 32, C = kTestClasses;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = images + i * F;
    float* out = log_probs + i * C;
    float mx = -1e30f;
    for (int64_t c = 0; c < C; ++c) {
      float z = 0;
      for (int64_t j = 0; j < F; ++j)
        z += x[j] * static_cast<float>(((c * 31 + j * 17) % 13) - 6) * 0.01f;
      out[c] = z;
      mx = std::max(mx, z);
    }
    float sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(out[c] - mx);
    const float lse = mx + std::log(sum);
    for (int64_t c = 0; c < C; ++c) out[c] -= lse;
  }
}

std::vector<std::string> test_class_names() {
  std::vector<std::string> names;
  for (int64_t c = 0; c < kTestClasses; ++c) names.push_back("class_" + std::to_string(c));
  return names;
}

serve::ModelLoader test_loader(std::chrono::milliseconds per_batch_delay) {
  return [per_batch_delay] {
    serve::Model m;
    m.input = cifar_spec();
    m.class_names = test_class_names();
    m.predict = [per_batch_delay](const float* x, int64_t n, float* out) {
      if (per_batch_delay.count() > 0) std::this_thread::sleep_for(per_batch_delay);
      test_predict(x, n, out);
    };
    return m;
  };
}

TestServer::TestServer(serve::ServerOptions options, serve::ModelLoader loader) {
  options.host = "127.0.0.1";
  options.port = 0;
  server_ = std::make_unique<serve::Server>(options);
  port_ = server_->bind();
  server_->start(std::move(loader));
  thread_ = std::thread([this] {
    try {
      server_->run();
    } catch (const std::exception& e) {
      run_error_ = e.what();
    }
  });
}

TestServer::~TestServer() { stop_and_join(); }

std::string TestServer::stop_and_join() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
  return run_error_;
}

bool TestServer::wait_ready(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  httplib::Client cli("127.0.0.1", port_);
  cli.set_connection_timeout(1, 0);
  cli.set_read_timeout(2, 0);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = cli.Get("/ping");
    if (r && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string raw_request(int port, const std::string& bytes, std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect() to port " + std::to_string(port) + " failed");
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t w = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (w <= 0) break;
    sent += static_cast<size_t>(w);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  deadline - std::chrono::steady_clock::now())
                                  .count());
    if (::poll(&p, 1, std::max(ms, 1)) <= 0) break;
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace kiln::test
