// The helpers every test suite shares (tests/support, one static library): temporary folders,
// the paths the test runner passes (KILN_SOURCE_ROOT, KILN_BUILD_ROOT, KILN_BIN, KILN_PYTHON),
// running a command, files as strings, a free port, and a child process (a server) started,
// waited for and stopped. Fixtures of one area (moto, the registry, the parity files) stay in
// that area and build on these.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/error.h"

namespace kiln::test {

// A fresh directory under the system's temporary folder, "kiln-<tag>-XXXXXX", removed with
// its contents by the destructor unless KILN_KEEP_TEMP is set (to look at a failure).
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }

  const std::filesystem::path path;
};

// A fresh directory like TempDir's, removed when the test program exits (for fixtures that
// outlive one test case).
std::filesystem::path make_temp_dir(const std::string& tag);

// $name, or `fallback` when unset or empty.
std::string env_or(const char* name, const std::string& fallback);
std::string python();                     // $KILN_PYTHON, else /usr/bin/python3 (Debian's, with torch)
std::filesystem::path source_root();      // $KILN_SOURCE_ROOT, else the current directory
std::filesystem::path build_root();       // $KILN_BUILD_ROOT, else the temporary folder
std::string kiln_bin();                   // $KILN_BIN, else "kiln" on PATH

// The string as one single-quoted shell word.
std::string quote(const std::string& s);

struct CommandResult {
  int status = -1;     // exit code, 128 + signal when killed, -1 when it could not run
  std::string output;  // stdout and stderr together
};
// Runs a shell command line and waits for it.
CommandResult run_command(const std::string& cmd);
// The same as an exit status, with the output stored in *output when given.
int run(const std::string& cmd, std::string* output = nullptr);
// Captures stdout only (stderr passes through to the test's own): for output that is parsed.
int run_capture(const std::string& cmd, std::string& out);

// A whole file. read_bytes throws std::runtime_error naming a file it cannot open (a fixture);
// read_text returns "" instead (a log polled before the program has written it).
std::string read_bytes(const std::filesystem::path& p);
std::string read_text(const std::filesystem::path& p);
// Creates the parent folders; throws std::runtime_error naming a file it cannot write.
void write_text(const std::filesystem::path& p, const std::string& text);

// The full message of the kiln::Error that fn() throws, or "(no error)" when it throws none
// (other exceptions pass through).
std::string error_of(const auto& fn) {
  try {
    fn();
  } catch (const kiln::Error& e) {
    return e.full_message();
  }
  return "(no error)";
}

// A TCP port on 127.0.0.1 that nothing listened on a moment ago (the kernel's choice).
int free_port();
// Whether something accepts connections on 127.0.0.1:port now.
bool port_open(int port);

// A program started in the background (a server), stdout and stderr to `log`; it is killed
// with the test program if that dies (PR_SET_PDEATHSIG), and stopped by the destructor.
class ChildProcess {
 public:
  // argv[0] is looked up on PATH; `env` is added to the test's own environment.
  ChildProcess(const std::vector<std::string>& argv, const std::filesystem::path& log,
               const std::vector<std::pair<std::string, std::string>>& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log() const { return log_; }
  bool running();  // not exited (reaps it when it has)
  // Polls `ready` every `poll` until it holds (true), the process exits or `timeout` passes
  // (false; exited() tells which).
  bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
                  std::chrono::milliseconds poll = std::chrono::milliseconds(100));
  // wait_until(port_open(port)).
  bool wait_for_port(int port, std::chrono::milliseconds timeout);
  bool exited() const { return pid_ <= 0; }
  // SIGTERM, then SIGKILL after `grace`; returns the exit status as run_command reports it.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::filesystem::path log_;
};

}  // namespace kiln::test
