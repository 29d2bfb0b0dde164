// Debian's docker-registry (the reference registry, distribution 2.8) for the image tests:
// started on 127.0.0.1:<free port> with a throw-away config and storage directory, without auth
// or behind htpasswd basic auth (bcrypt hashes made with Python's crypt), stopped by the
// destructor (and killed with the test program if it dies).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/aws/moto_fixture.h"

namespace kiln_test {

class Registry {
 public:
  std::string host;  // 127.0.0.1:PORT
  std::filesystem::path dir;

  // users: "name:password" pairs for basic auth; empty: no auth.
  explicit Registry(const std::vector<std::string>& users = {}) {
    dir = tmp_.path();
    int port = free_port();
    host = "127.0.0.1:" + std::to_string(port);
    std::string auth;
    if (!users.empty()) {
      std::string htpasswd;
      for (const auto& u : users) {
        size_t c = u.find(':');
        std::string out;
        int rc = run_capture("/usr/bin/python3 -W ignore -c \"import crypt,sys; print(crypt.crypt(sys.argv[1], "
                             "crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))\" '" + u.substr(c + 1) + "'",
                             out);
        if (rc != 0 || out.rfind("$2", 0) != 0) throw std::runtime_error("cannot make a bcrypt hash with python3: " + out);
        htpasswd += u.substr(0, c) + ":" + out;
      }
      write_text(dir / "htpasswd", htpasswd);
      auth = "auth:\n  htpasswd:\n    realm: kiln-test\n    path: " + (dir / "htpasswd").string() + "\n";
    }
    write_text(dir / "config.yml", "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: " +
                                       (dir / "data").string() + "\n  delete:\n    enabled: true\nhttp:\n  addr: " + host +
                                       "\n" + auth);
    proc_ = std::make_unique<kiln::test::ChildProcess>(
        std::vector<std::string>{"docker-registry", "serve", (dir / "config.yml").string()},
        dir / "registry.log");
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(0, 200000);
    if (proc_->wait_until([&] { return static_cast<bool>(cli.Get("/v2/")); }, std::chrono::seconds(20)))
      return;
    if (proc_->exited())
      throw std::runtime_error("docker-registry exited at start (apt-get install docker-registry); log: " +
                               (dir / "registry.log").string());
    throw std::runtime_error("docker-registry did not answer within 20 s");
  }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

 private:
  TempDir tmp_;
  std::unique_ptr<kiln::test::ChildProcess> proc_;  // stopped by the destructor
};

// The image archive of this build's kiln, built once per test program (kiln image build).
inline const std::filesystem::path& built_image() {
  static TempDir dir;
  static std::filesystem::path p = [] {
    std::filesystem::path out = dir / "kiln-image.tar";
    std::string log;
    int rc = run_capture(kiln_bin() + " image build --binary " + quote(kiln_bin()) + " --output " + quote(out.string()) +
                             " 2>&1",
                         log);
    if (rc != 0) throw std::runtime_error("kiln image build failed: " + log);
    return out;
  }();
  return p;
}

}  // namespace kiln_test
