// Helpers of the aws tests (the image tests use them too): a local httplib server on 127.0.0.1
// (started and stopped by the test) and scoped environment variables. Temporary directories,
// files, running a command and free ports are tests/support's, named here for these suites.
#pragma once

#include <httplib.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/support.h"

namespace kiln_test {

// A server on 127.0.0.1:<free port>, serving from its own thread; stopped by the destructor.
class LocalServer {
 public:
  httplib::Server svr;
  int port = 0;

  LocalServer() {
    svr.set_read_timeout(5, 0);
    svr.set_write_timeout(5, 0);
  }
  void start() {
    port = svr.bind_to_any_port("127.0.0.1");
    if (port <= 0) throw std::runtime_error("cannot bind a port on 127.0.0.1");
    thread_ = std::thread([this] { svr.listen_after_bind(); });
    for (int i = 0; i < 200 && !svr.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  ~LocalServer() {
    svr.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

// Sets/unsets variables for a scope and restores them afterwards. Every AWS_* variable the
// code reads is cleared first so the developer's own settings cannot leak into a test.
class ScopedEnv {
 public:
  ScopedEnv() {
    for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                          "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
                          "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                          "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                          "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
                          "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_LOGS",
                          "AWS_MAX_ATTEMPTS", "AWS_CA_BUNDLE"})
      unset(v);
    // Nothing in a test may wait on 169.254.169.254, and no real ~/.aws file may be read.
    set("AWS_EC2_METADATA_DISABLED", "true");
    set("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kiln-test/credentials");
    set("AWS_CONFIG_FILE", "/nonexistent/kiln-test/config");
  }
  void set(const std::string& k, const std::string& v) {
    remember(k);
    setenv(k.c_str(), v.c_str(), 1);
  }
  void unset(const std::string& k) {
    remember(k);
    unsetenv(k.c_str());
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) setenv(k.c_str(), v->c_str(), 1);
      else unsetenv(k.c_str());
    }
  }

 private:
  void remember(const std::string& k) {
    if (saved_.count(k)) return;
    const char* v = std::getenv(k.c_str());
    saved_[k] = v ? std::optional<std::string>(v) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

// tests/support's TempDir with the path() accessor the aws and image tests are written against.
class TempDir : public kiln::test::TempDir {
 public:
  TempDir() : kiln::test::TempDir("aws-test") {}
  const std::filesystem::path& path() const { return kiln::test::TempDir::path; }
};

using kiln::test::free_port;
using kiln::test::kiln_bin;
using kiln::test::quote;
using kiln::test::run_capture;
using kiln::test::source_root;
using kiln::test::write_text;

// The region an Authorization header's credential scope names.
inline std::string scope_region(const httplib::Request& req) {
  std::string a = req.get_header_value("Authorization");
  auto p = a.find("Credential=");
  if (p == std::string::npos) return {};
  auto s1 = a.find('/', p), s2 = a.find('/', s1 + 1), s3 = a.find('/', s2 + 1);
  return a.substr(s2 + 1, s3 - s2 - 1);
}

}  // namespace kiln_test
