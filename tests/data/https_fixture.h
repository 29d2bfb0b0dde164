// A local HTTPS server for the download tests: cpp-httplib's SSLServer on 127.0.0.1:<free port>
// with a self-signed certificate made here with the openssl CLI (ca_file() trusts it). Routes
// are added before start(); stopped by the destructor.
#pragma once

#include <doctest/doctest.h>
#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

#include "tests/support/support.h"

namespace kiln::test {

struct HttpsServer {
  TempDir dir{"https"};
  std::unique_ptr<httplib::SSLServer> server;
  std::thread thread;
  int port = 0;

  HttpsServer() {
    std::string out;
    const std::string cert = ca_file(), key = (dir.path / "key.pem").string();
    const std::string req = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                            "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                            quote(key) + " -out " + quote(cert);
    REQUIRE_MESSAGE(run(req, &out) == 0, out);
    server = std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str());
    REQUIRE(server->is_valid());
  }
  void start() {
    port = server->bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    thread = std::thread([this] { server->listen_after_bind(); });
    for (int i = 0; i < 500 && !server->is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(server->is_running());
  }
  ~HttpsServer() {
    server->stop();
    if (thread.joinable()) thread.join();
  }
  std::string ca_file() const { return (dir.path / "cert.pem").string(); }
  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port) + path; }
};

}  // namespace kiln::test
