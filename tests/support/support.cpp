// The shared test helpers (see support.h).
#include "tests/support/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace kiln::test {

namespace fs = std::filesystem;

namespace {

fs::path new_temp_dir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("kiln-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory " + tmpl);
  return tmpl;
}

void remove_dir(const fs::path& p) {
  if (p.empty() || std::getenv("KILN_KEEP_TEMP")) return;
  std::error_code ec;
  fs::remove_all(p, ec);
}

// Directories made by make_temp_dir, removed at exit.
struct ExitDirs {
  std::mutex mu;
  std::vector<fs::path> dirs;
  ~ExitDirs() {
    for (const auto& d : dirs) remove_dir(d);
  }
};
ExitDirs& exit_dirs() {
  static ExitDirs d;
  return d;
}

int exit_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

int popen_read(const std::string& cmd, std::string& out) {
  out.clear();
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  return exit_status(::pclose(p));
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

}  // namespace

TempDir::TempDir(const std::string& tag) : path(new_temp_dir(tag)) {}
TempDir::~TempDir() { remove_dir(path); }

fs::path make_temp_dir(const std::string& tag) {
  fs::path d = new_temp_dir(tag);
  std::lock_guard<std::mutex> lock(exit_dirs().mu);
  exit_dirs().dirs.push_back(d);
  return d;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string python() { return env_or("KILN_PYTHON", "/usr/bin/python3"); }
fs::path source_root() { return env_or("KILN_SOURCE_ROOT", fs::current_path().string()); }
fs::path build_root() { return env_or("KILN_BUILD_ROOT", fs::temp_directory_path().string()); }
std::string kiln_bin() { return env_or("KILN_BIN", "kiln"); }

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  r.status = popen_read(cmd + " 2>&1", r.output);
  return r;
}

int run(const std::string& cmd, std::string* output) {
  CommandResult r = run_command(cmd);
  if (output) *output = std::move(r.output);
  return r.status;
}

int run_capture(const std::string& cmd, std::string& out) { return popen_read(cmd, out); }

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string read_text(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) ? read_bytes(p) : std::string();
}

void write_text(const fs::path& p, const std::string& text) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a = loopback(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const fs::path& log,
                           const std::vector<std::pair<std::string, std::string>>& env)
    : log_(log) {
  if (argv.empty()) throw std::runtime_error("ChildProcess: no program");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execvp(args[0], args.data());
    _exit(127);
  }
}

ChildProcess::~ChildProcess() { stop(); }

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = exit_status(st);
    pid_ = -1;
    return false;
  }
  return true;
}

bool ChildProcess::wait_until(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
                              std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return false;
}

bool ChildProcess::wait_for_port(int port, std::chrono::milliseconds timeout) {
  return wait_until([port] { return port_open(port); }, timeout, std::chrono::milliseconds(50));
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return status_;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  status_ = exit_status(st);
  pid_ = -1;
  return status_;
}

}  // namespace kiln::test
