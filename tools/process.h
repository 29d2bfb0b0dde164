// Child processes for `kiln pipeline --local`: start a program (normally this kiln binary) with
// extra environment variables, wait for it (optionally with a deadline), stop it politely
// (SIGTERM, then SIGKILL after a grace period). A Child that is destroyed while running is stopped.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kiln::cli {

std::filesystem::path self_exe();  // /proc/self/exe

class Child {
 public:
  Child() = default;
  // argv[0] is the program; stdout/stderr are inherited unless log_file is given.
  static Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                     const std::filesystem::path& log_file = {});
  ~Child();
  Child(Child&& o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running();                  // reaps it when it has exited
  int wait();                      // exit code, or 128+signal
  // SIGTERM, wait up to grace_s, then SIGKILL; returns the exit code.
  int stop(double grace_s = 30);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_local_port();

}  // namespace kiln::cli
