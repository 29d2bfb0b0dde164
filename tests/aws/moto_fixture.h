// moto_server for the aws tests: started once per test program on 127.0.0.1:<free port> with
// signature checking on. INITIAL_NO_AUTH_ACTION_COUNT=3 lets exactly the set-up calls through
// (create an IAM user, give it an allow-all policy, create its access key: moto_helper.py setup);
// every later request must carry a valid SigV4 signature for that key. Stopped at exit (and
// killed with the test program if it dies: PR_SET_PDEATHSIG). Started in moto_fixture.cpp, so that
// nlohmann/json and httplib's client are compiled once, not in every test file.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

  // The signature-checking server, started on first use (one per test program).
  static MotoServer& get();
  // A second moto_server without signature checks, for requests moto 5 cannot verify although
  // they are right (a '/' in a query value, as in ListObjectsV2 prefix=data/).
  static MotoServer& unsigned_server();

 private:
  explicit MotoServer(bool check_signatures);
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
