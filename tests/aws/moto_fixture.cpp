// moto_server's start (moto_fixture.h): the process, the wait for its first answer, and the
// IAM user moto_helper.py sets up. One object of each kind per test program.
#include "moto_fixture.h"

#include <nlohmann/json.hpp>

namespace kiln_test {

MotoServer& MotoServer::get() {
  static MotoServer m(true);
  return m;
}

MotoServer& MotoServer::unsigned_server() {
  static MotoServer m(false);
  return m;
}

MotoServer::MotoServer(bool check_signatures) {
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

}  // namespace kiln_test
