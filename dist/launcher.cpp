// SageMaker multi-host launch (see launcher.h): sshd per host, the leader's wait for the others'
// ssh ports and its mpirun, the others' wait for Open MPI's daemon. Child processes are plain
// fork/exec: the launcher runs before anything else in the process starts threads.
#include "kiln/dist/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/core/parse.h"

namespace kiln::dist {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_launcher_signal(int sig) { g_signal = sig; }

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
void nap(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string tail_of(const std::string& s, size_t n) { return s.size() > n ? "..." + s.substr(s.size() - n) : s; }

std::string read_tail(const fs::path& p, size_t n) {
  try {
    return tail_of(read_file(p), n);
  } catch (...) {
    return "";
  }
}

// A child process; stdout and stderr go to `log` (a file), or to a pipe read with read_some().
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log) {
    int fds[2] = {-1, -1};
    if (log.empty() && pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
    pid_ = fork();
    if (pid_ < 0) throw Error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      int out = log.empty() ? fds[1] : open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
      }
      int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, 0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
      _exit(127);
    }
    if (log.empty()) {
      close(fds[1]);
      out_fd_ = fds[0];
    }
  }
  ~Child() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGTERM);
      if (wait_for(5) < 0) {
        kill(pid_, SIGKILL);
        wait_for(5);
      }
    }
    if (out_fd_ >= 0) close(out_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Exit code (128+signal when killed) once it has exited, else -1; waits up to timeout_s.
  int wait_for(double timeout_s) {
    const auto t0 = Clock::now();
    while (status_ < 0) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (r < 0 && errno != EINTR) {
        status_ = 127;
        break;
      }
      if (seconds_since(t0) >= timeout_s) break;
      nap(20);
    }
    return status_;
  }
  // What the child wrote since the last call, waiting up to timeout_ms; false at end of output.
  bool read_some(std::string& chunk, int timeout_ms) {
    chunk.clear();
    if (out_fd_ < 0) return false;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;
    char buf[4096];
    ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n > 0) {
      chunk.assign(buf, static_cast<size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) return true;
    close(out_fd_);
    out_fd_ = -1;
    return false;
  }
  void signal(int sig) {
    if (status_ < 0) kill(pid_, sig);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int status_ = -1;
};

// "" when host:port accepts a TCP connection (within 1 s), else why not.
std::string try_connect(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return std::string("does not resolve (") + gai_strerror(rc) + ")";
  std::string why;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char addr[INET6_ADDRSTRLEN] = "?";
    const void* in = a->ai_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                                             : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    inet_ntop(a->ai_family, in, addr, sizeof(addr));
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int err = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, 1000) == 1) {
          socklen_t len = sizeof(err);
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        } else {
          err = ETIMEDOUT;
        }
      }
    }
    close(fd);
    if (err == 0) {
      freeaddrinfo(res);
      return "";
    }
    why = std::string("resolves to ") + addr + " but port " + service + " does not answer (" + std::strerror(err) + ")";
  }
  freeaddrinfo(res);
  return why.empty() ? "has no usable address" : why;
}

// This host's ssh server for the job: a fresh host key, the image's public key authorised for
// root, and nothing else. Stopped (and its files removed) when destroyed.
class Sshd {
 public:
  explicit Sshd(const HostLaunchOptions& o) {
    const fs::path pub = o.ssh_dir / "id_ed25519.pub";
    if (!fs::is_regular_file(pub) || !fs::is_regular_file(o.ssh_dir / "id_ed25519"))
      throw Error("no ssh key pair in " + o.ssh_dir.string() + " (id_ed25519, id_ed25519.pub)",
                  "a multi-host job needs the image built with `kiln image build --mpi`, or KILN_SSH_DIR naming "
                  "a folder with the pair");
    char tmpl[] = "/tmp/kiln-sshd-XXXXXX";
    if (!mkdtemp(tmpl)) throw Error(std::string("mkdtemp: ") + std::strerror(errno));
    dir_ = tmpl;
    // sshd refuses to start without its privilege separation directory.
    std::error_code ec;
    fs::create_directories("/run/sshd", ec);
    const fs::path host_key = dir_ / "ssh_host_ed25519_key";
    {
      Child keygen({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key.string()}, dir_ / "keygen.log");
      if (keygen.wait_for(30) != 0)
        throw Error("ssh-keygen could not make sshd's host key: " + read_tail(dir_ / "keygen.log", 400),
                    "the image needs openssh-client (kiln image build --mpi adds it)");
    }
    write_file_atomic(dir_ / "sshd_config",
                      "Port " + std::to_string(o.ssh_port) +
                          "\n"
                          "ListenAddress 0.0.0.0\n"
                          "HostKey " + host_key.string() +
                          "\n"
                          "AuthorizedKeysFile " + pub.string() +
                          "\n"
                          "PermitRootLogin prohibit-password\n"
                          "PubkeyAuthentication yes\n"
                          "PasswordAuthentication no\n"
                          "KbdInteractiveAuthentication no\n"
                          "UsePAM no\n"
                          "StrictModes no\n"
                          "UseDNS no\n"
                          "PrintMotd no\n"
                          "MaxStartups 64\n"
                          "PidFile " + (dir_ / "sshd.pid").string() + "\n");
    const char* sshd = std::getenv("KILN_SSHD");
    child_ = std::make_unique<Child>(
        std::vector<std::string>{sshd && *sshd ? sshd : "/usr/sbin/sshd", "-D", "-e", "-f", (dir_ / "sshd_config").string()},
        dir_ / "sshd.log");
    const auto t0 = Clock::now();
    while (!try_connect("127.0.0.1", o.ssh_port).empty()) {
      if (child_->wait_for(0) >= 0)
        throw Error("sshd exited at start: " + read_tail(dir_ / "sshd.log", 600),
                    "the image needs openssh-server (kiln image build --mpi adds it); port " +
                        std::to_string(o.ssh_port) + " must be free");
      if (seconds_since(t0) > 20)
        throw Error("sshd did not listen on port " + std::to_string(o.ssh_port) + " within 20 s: " +
                    read_tail(dir_ / "sshd.log", 600));
      nap(50);
    }
  }
  ~Sshd() {
    child_.reset();
    std::error_code ec;
    if (!std::getenv("KILN_KEEP_TEMP")) fs::remove_all(dir_, ec);
  }
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;

 private:
  fs::path dir_;
  std::unique_ptr<Child> child_;
};

std::string ns_of(const std::string& pid) {
  char buf[128];
  ssize_t n = readlink(("/proc/" + pid + "/ns/net").c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Open MPI's daemon started by the leader through our sshd: an `orted` in our network namespace.
bool orted_running() {
  const std::string mine = ns_of("self");
  DIR* d = opendir("/proc");
  if (!d) return false;
  bool found = false;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string pid = e->d_name;
    std::FILE* f = std::fopen(("/proc/" + pid + "/comm").c_str(), "r");
    if (!f) continue;
    char comm[64] = {};
    const bool is_orted = std::fgets(comm, sizeof(comm), f) && std::strcmp(comm, "orted\n") == 0;
    std::fclose(f);
    if (is_orted && ns_of(pid) == mine) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

// The job's end on algo-1: mpirun's output passed through, its status the container's.
int lead(const train::ContainerInputs& in, const HostLaunchOptions& o) {
  const auto t0 = Clock::now();
  std::vector<std::string> waiting(in.hosts.begin() + 1, in.hosts.end()), why(waiting.size());
  std::printf("kiln: %s leads %zu hosts; waiting for ssh on %s\n", in.current_host.c_str(), in.hosts.size(),
              waiting.size() == 1 ? waiting[0].c_str() : "the others");
  std::fflush(stdout);
  while (!waiting.empty()) {
    for (size_t i = 0; i < waiting.size();) {
      why[i] = try_connect(waiting[i], o.ssh_port);
      if (why[i].empty()) {
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
        why.erase(why.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (waiting.empty()) break;
    if (g_signal) return 128 + g_signal;
    if (seconds_since(t0) > o.host_wait_s) {
      std::string list;
      for (size_t i = 0; i < waiting.size(); ++i) list += (i ? "; " : "") + waiting[i] + " " + why[i];
      throw Error("hosts not reachable within " + format_double(o.host_wait_s) + " s: " + list,
                  "every host in resourceconfig.json must run this image and answer on port " +
                      std::to_string(o.ssh_port) + "; KILN_HOST_WAIT sets the limit");
    }
    nap(250);
  }
  std::string host_list;
  for (const auto& h : in.hosts) host_list += (host_list.empty() ? "" : ",") + h + ":1";
  const std::string key = (o.ssh_dir / "id_ed25519").string();
  std::vector<std::string> argv = {"mpirun"};
  if (geteuid() == 0) argv.push_back("--allow-run-as-root");
  for (const std::string& a :
       {std::string("-np"), std::to_string(in.hosts.size()), std::string("--host"), host_list, std::string("--bind-to"),
        std::string("none"), std::string("--mca"), std::string("plm_rsh_agent"), std::string("ssh"), std::string("--mca"),
        std::string("plm_rsh_args"),
        "-p " + std::to_string(o.ssh_port) + " -i " + key +
            " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=20"
            " -o LogLevel=ERROR",
        std::string("--mca"), std::string("plm_rsh_no_tree_spawn"), std::string("1"), std::string("--mca"),
        std::string("btl"), std::string("self,tcp")})
    argv.push_back(a);
  if (!in.network_interface_name.empty())
    for (const char* p : {"btl_tcp_if_include", "oob_tcp_if_include"}) {
      argv.push_back("--mca");
      argv.push_back(p);
      argv.push_back(in.network_interface_name);
    }
  // Ranks started over ssh get sshd's environment, not ours: pass on the settings that change how
  // kiln runs (ISA caps, threads, the sanitizers' options in a sanitizer build).
  for (const char* name : {"KILN_ISA", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "KILN_CONV", "ASAN_OPTIONS",
                           "UBSAN_OPTIONS", "LSAN_OPTIONS"})
    if (std::getenv(name)) {
      argv.push_back("-x");
      argv.push_back(name);
    }
  argv.push_back(o.kiln.string());
  argv.push_back("train");
  argv.push_back("--opt-ml");
  argv.push_back(o.opt_ml.string());
  argv.insert(argv.end(), o.rank_args.begin(), o.rank_args.end());
  std::printf("kiln: every host answers; starting the job:");
  for (const auto& a : argv) std::printf(" %s", a.c_str());
  std::printf("\n");
  std::fflush(stdout);

  Child mpirun(argv, {});
  std::string chunk, tail;
  bool forwarded = false;
  while (mpirun.read_some(chunk, 200)) {
    if (!chunk.empty()) {
      std::fwrite(chunk.data(), 1, chunk.size(), stdout);
      std::fflush(stdout);
      tail = tail_of(tail + chunk, 1500);
    }
    if (g_signal && !forwarded) {
      mpirun.signal(SIGTERM);  // mpirun passes it to every rank: they checkpoint and stop
      forwarded = true;
    }
  }
  int status = mpirun.wait_for(60);
  if (status < 0) {
    mpirun.signal(SIGKILL);
    status = mpirun.wait_for(10);
  }
  if (status == 0) return 0;
  if (g_signal) return 128 + g_signal;
  train::write_failure(o.opt_ml, "kiln: the distributed job failed: mpirun exited with status " +
                                     std::to_string(status) + "; its last output:\n" + tail);
  std::fprintf(stderr, "kiln: mpirun exited with status %d\n", status);
  return 1;
}

// A host other than algo-1: wait for the job to come (orted or our rank's marker) and go.
int follow(const train::ContainerInputs& in, const HostLaunchOptions& o) {
  const fs::path marker = rank_done_marker(o.opt_ml);
  std::printf("kiln: %s waits for %s to start the job (at most %s s)\n", in.current_host.c_str(), in.hosts[0].c_str(),
              format_double(o.job_start_wait_s).c_str());
  std::fflush(stdout);
  const auto t0 = Clock::now();
  bool seen = false;
  for (;;) {
    if (g_signal) return 128 + g_signal;
    const bool running = orted_running();
    if (running && !seen) {
      seen = true;
      std::printf("kiln: the job runs on this host (Open MPI's orted); waiting for it to end\n");
      std::fflush(stdout);
    }
    if (!running && (seen || fs::exists(marker))) break;
    if (!seen && seconds_since(t0) > o.job_start_wait_s) {
      train::write_failure(o.opt_ml, "kiln: " + in.hosts[0] + " did not start the job on " + in.current_host +
                                         " within " + format_double(o.job_start_wait_s) +
                                         " s (see " + in.hosts[0] + "'s log; KILN_JOB_START_WAIT sets the limit)");
      return 1;
    }
    nap(100);
  }
  if (fs::exists(marker)) {
    std::printf("kiln: this host's rank finished; exiting\n");
    return 0;
  }
  train::write_failure(o.opt_ml, "kiln: the distributed job ended before this host's rank (on " + in.current_host +
                                     ") finished: another host failed or the connection to " + in.hosts[0] +
                                     " was lost; see " + in.hosts[0] + "'s log");
  return 1;
}

double env_seconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  const double x = parse_double(v, name);
  if (!(x > 0)) fail(name, "seconds > 0", v);
  return x;
}

}  // namespace

HostLaunchOptions HostLaunchOptions::from_env() {
  HostLaunchOptions o;
  const char* dir = std::getenv("KILN_SSH_DIR");
  o.ssh_dir = dir && *dir ? dir : "/etc/kiln/ssh";
  if (const char* p = std::getenv("KILN_SSH_PORT"); p && *p) {
    const int64_t port = parse_int(p, "KILN_SSH_PORT");
    if (port < 1 || port > 65535) fail("KILN_SSH_PORT", "a port in [1, 65535]", p);
    o.ssh_port = static_cast<int>(port);
  }
  o.host_wait_s = env_seconds("KILN_HOST_WAIT", o.host_wait_s);
  o.job_start_wait_s = env_seconds("KILN_JOB_START_WAIT", o.job_start_wait_s);
  return o;
}

fs::path rank_done_marker(const fs::path& opt_ml) { return opt_ml / "output" / ".kiln-rank-done"; }

int run_sagemaker_host(const train::ContainerInputs& in, const HostLaunchOptions& opt) {
  KILN_ASSERT(in.distributed(), "run_sagemaker_host for a single host");
  std::error_code ec;
  fs::remove(rank_done_marker(opt.opt_ml), ec);
  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    Sshd sshd(opt);
    std::printf("kiln: %s: sshd listens on port %d\n", in.current_host.c_str(), opt.ssh_port);
    std::fflush(stdout);
    return in.current_host == in.hosts[0] ? lead(in, opt) : follow(in, opt);
  } catch (const Error& e) {
    train::write_failure(opt.opt_ml, "kiln: " + in.current_host + ": " + e.full_message());
    std::fprintf(stderr, "kiln: %s: %s\n", in.current_host.c_str(), e.full_message().c_str());
    return 1;
  }
}

}  // namespace kiln::dist
