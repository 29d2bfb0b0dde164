// moto_server for the aws tests: started once per test program on 127.0.0.1:<free port> with
// signature checking on. INITIAL_NO_AUTH_ACTION_COUNT=3 lets exactly the set-up calls through
// (create an IAM user, give it an allow-all policy, create its access key: moto_helper.py setup);
// every later request must carry a valid SigV4 signature for that key. Stopped at exit (and
// killed with the test program if it dies: PR_SET_PDEATHSIG).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/client.h"
#include "test_util.h"

namespace kiln_test {

inline std::string helper_script() { return (source_root() / "tests/aws/moto_helper.py").string(); }

class MotoServer {
 public:
  std::string url, key, secret, log_path;

  static MotoServer& get() {
    static MotoServer m(true);
    return m;
  }
  // A second moto_server without signature checks, for requests moto 5 cannot verify although
  // they are right (a '/' in a query value, as in ListObjectsV2 prefix=data/).
  static MotoServer& unsigned_server() {
    static MotoServer m(false);
    return m;
  }

 private:
  explicit MotoServer(bool check_signatures) {
    int port = free_port();
    url = "http://127.0.0.1:" + std::to_string(port);
    log_path = (kiln::test::build_root() / ("moto_server_" + std::to_string(port) + ".log")).string();
    std::vector<std::pair<std::string, std::string>> env = {
        {"MOTO_IAM_LOAD_MANAGED_POLICIES", "true"}};  // AWS managed policies for setup-role
    if (check_signatures) env.emplace_back("INITIAL_NO_AUTH_ACTION_COUNT", "3");
    proc_ = std::make_unique<kiln::test::ChildProcess>(
        std::vector<std::string>{"moto_server", "-H", "127.0.0.1", "-p", std::to_string(port)},
        log_path, env);
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(0, 200000);
    // Any answer: the server is up. Up to 30 s.
    bool up = proc_->wait_until([&] { return static_cast<bool>(cli.Get("/moto-api/data.json")); },
                                std::chrono::seconds(30));
    if (!up && proc_->exited())
      throw std::runtime_error(
          "moto_server exited at start (is it on PATH? pyenv python with moto 5); log: " + log_path);
    if (!up) throw std::runtime_error("moto_server did not answer within 30 s; log: " + log_path);
    if (!check_signatures) {
      key = "AKIAUNSIGNED00000000";
      secret = "unsigned";
      return;
    }
    std::string out;
    int rc = run_capture("python3 " + helper_script() + " setup " + url, out);
    if (rc != 0) throw std::runtime_error("moto_helper.py setup failed (python3 with boto3 on PATH?): " + out);
    auto j = nlohmann::json::parse(out);
    key = j["key"];
    secret = j["secret"];
  }
  std::unique_ptr<kiln::test::ChildProcess> proc_;  // stopped at exit: SIGTERM, SIGKILL after 5 s
};

// A client configuration for `m` (us-east-1, fast retries); `url` overrides its endpoint (a proxy).
inline kiln::aws::ClientConfig moto_client_config(const MotoServer& m, const std::string& url = {}) {
  kiln::aws::ClientConfig cfg;
  cfg.region = "us-east-1";
  cfg.endpoint_url = url.empty() ? m.url : url;
  cfg.credentials = kiln::aws::CredentialChain::fixed({m.key, m.secret, "", {}, "moto"});
  cfg.retry.base_delay_s = 0.01;
  return cfg;
}

}  // namespace kiln_test
