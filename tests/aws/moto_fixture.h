// moto_server for the aws tests: started once per test program on 127.0.0.1:<free port> with
// signature checking on. INITIAL_NO_AUTH_ACTION_COUNT=3 lets exactly the set-up calls through
// (create an IAM user, give it an allow-all policy, create its access key: moto_helper.py setup);
// every later request must carry a valid SigV4 signature for that key. Stopped at exit (and
// killed with the test program if it dies: PR_SET_PDEATHSIG).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "kiln/aws/client.h"
#include "test_util.h"

namespace kiln_test {

inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

inline std::string helper_script() { return source_root() + "/tests/aws/moto_helper.py"; }

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
  ~MotoServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 100; ++i) {  // up to 5 s, then SIGKILL
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
        usleep(50000);
      }
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

 private:
  explicit MotoServer(bool check_signatures) {
    int port = free_port();
    url = "http://127.0.0.1:" + std::to_string(port);
    const char* build = std::getenv("KILN_BUILD_ROOT");
    log_path = std::string(build ? build : "/tmp") + "/moto_server_" + std::to_string(port) + ".log";
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      if (check_signatures) setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3", 1);
      setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true", 1);  // AWS managed policies for setup-role
      std::string p = std::to_string(port);
      execlp("moto_server", "moto_server", "-H", "127.0.0.1", "-p", p.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(0, 200000);
    bool up = false;
    for (int i = 0; i < 300 && !up; ++i) {  // up to 30 s
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("moto_server exited at start (is it on PATH? pyenv python with moto 5); log: " + log_path);
      }
      auto r = cli.Get("/moto-api/data.json");
      up = static_cast<bool>(r);  // any answer: the server is up
      if (!up) usleep(100000);
    }
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
  pid_t pid_ = -1;
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
