// The SageMaker multi-host launch for real: each "instance" is `kiln train` in a network, UTS
// and mount namespace of its own (unshare), with its own hostname (algo-N), /etc/hosts and /opt/ml
// tree (bind mounts in its mount namespace), joined by a veth pair; kiln starts sshd on each,
// algo-1 runs mpirun over ssh. Checked: the job completes (algo-1 writes the model, algo-2 exits
// 0 and writes nothing); algo-2 killed mid-job ends the job with a failure file on algo-1; a
// host that never comes up, a name that does not resolve and a leader that never starts the job
// each end in a clear failure within seconds; with a ShardedByS3Key training channel each host
// holds different parts (of different sizes) and the job still completes, every rank taking the
// steps the smaller host allows. Root only (namespaces, mounts, sshd).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "kiln/data/dataset.h"
#include "kiln/data/parts.h"
#include "kiln/data/synth.h"
#include "tests/support/support.h"

namespace fs = std::filesystem;
using kiln::test::quote;

namespace {

using Clock = std::chrono::steady_clock;

bool can_run() {
  if (geteuid() != 0) {
    MESSAGE("skipped: the namespaces test needs root");
    return false;
  }
  for (const char* p : {"/usr/sbin/sshd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/ssh-keygen"})
    if (!fs::exists(p)) {
      MESSAGE("skipped: " << p << " missing (scripts/install-deps --test installs it)");
      return false;
    }
  return true;
}

std::string net_ns(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/net", ec).string();
}

// A cluster of namespaced hosts sharing this machine's file system and process table.
struct Cluster {
  fs::path dir;
  std::vector<std::string> hosts;  // resourceconfig.json's
  std::map<std::string, pid_t> pid;
  std::map<std::string, int> status;
  std::string hyperparameters;
  // ShardedByS3Key: host h's training channel is dir/shards/h, the test channel dir/shards/test.
  bool sharded = false;

  fs::path root_of(const std::string& h) const { return dir / h / "opt-ml"; }
  fs::path log_of(const std::string& h) const { return dir / h / "log"; }
  std::string log(const std::string& h) const { return kiln::test::read_text(log_of(h)); }

  // Lays out host h's /opt/ml tree and hosts file, and starts it up to its barrier.
  void boot(const std::string& h, double host_wait_s, double job_wait_s) {
    const fs::path r = root_of(h);
    kiln::test::write_text(r / "input/config/hyperparameters.json", hyperparameters);
    std::string list;
    for (const auto& x : hosts) list += (list.empty() ? "\"" : ", \"") + x + "\"";
    kiln::test::write_text(r / "input/config/resourceconfig.json",
                           "{\"current_host\": \"" + h + "\", \"hosts\": [" + list +
                               "], \"network_interface_name\": \"eth0\"}");
    kiln::test::write_text(r / "input/config/inputdataconfig.json",
                           sharded ? R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"},
                                        "test": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}})"
                                   : R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}})");
    fs::create_directories(r / "input/data");
    if (sharded) {
      fs::copy(dir / "shards" / h, r / "input/data/training", fs::copy_options::recursive);
      fs::copy(dir / "shards" / "test", r / "input/data/test", fs::copy_options::recursive);
    } else {
      fs::copy(dir / "syn", r / "input/data/training", fs::copy_options::recursive);
    }
    kiln::test::write_text(dir / h / "hosts", "127.0.0.1 localhost\n10.99.0.1 algo-1\n10.99.0.2 algo-2\n");
    fs::create_directories(dir / "opt-ml");
    const std::string d = (dir / h).string();
    kiln::test::write_text(dir / h / "boot.sh",
                           "set -e\nhostname " + h + "\nmount --bind " + quote(d + "/hosts") + " /etc/hosts\n" +
                               "mount --bind " + quote(r.string()) + " " + quote((dir / "opt-ml").string()) +
                               "\nip link set lo up\ntouch " + quote(d + "/ready") +
                               "\ni=0\nwhile [ ! -e " + quote(d + "/go") +
                               " ]; do i=$((i+1)); [ $i -lt 300 ] || exit 99; sleep 0.1; done\n"
                               "exec " + quote(kiln::test::kiln_bin()) + " train\n");
    const std::map<std::string, std::string> env = {
        {"KILN_OPT_ML", (dir / "opt-ml").string()}, {"KILN_SSH_DIR", (dir / "ssh").string()},
        {"KILN_HOST_WAIT", std::to_string(host_wait_s)}, {"KILN_JOB_START_WAIT", std::to_string(job_wait_s)}};
    std::fflush(stdout);
    const pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) {
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      FILE* f = std::freopen(log_of(h).c_str(), "w", stdout);
      if (f) dup2(1, 2);
      execl("/usr/bin/unshare", "unshare", "--net", "--uts", "--mount", "--propagation", "private", "sh",
            (dir / h / "boot.sh").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pid[h] = p;
    const auto t0 = Clock::now();
    while (!fs::exists(dir / h / "ready")) {
      REQUIRE_MESSAGE(std::chrono::duration<double>(Clock::now() - t0).count() < 20, h << " did not boot: " << log(h));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // A veth pair between algo-1 and algo-2, each end named eth0 in its namespace.
  void wire() {
    const std::string a = "kv" + std::to_string(getpid() % 100000) + "a", b = a.substr(0, a.size() - 1) + "b";
    auto sh = [](const std::string& cmd) {
      auto r = kiln::test::run_command(cmd);
      REQUIRE_MESSAGE(r.status == 0, cmd << ": " << r.output);
    };
    sh("ip link add " + a + " type veth peer name " + b);
    sh("ip link set " + a + " netns " + std::to_string(pid["algo-1"]));
    sh("ip link set " + b + " netns " + std::to_string(pid["algo-2"]));
    int n = 1;
    for (const auto& [end, host] : {std::pair{a, "algo-1"}, std::pair{b, "algo-2"}})
      sh("nsenter -t " + std::to_string(pid[host]) + " -n sh -c 'ip link set " + end + " name eth0 && ip addr add 10.99.0." +
         std::to_string(n++) + "/24 dev eth0 && ip link set eth0 up'");
  }

  void go(const std::string& h) { kiln::test::write_text(dir / h / "go", ""); }

  // Waits for host h's launcher to exit (at most `seconds`); its exit code, or -1.
  int wait(const std::string& h, double seconds) {
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
      int st = 0;
      if (waitpid(pid[h], &st, WNOHANG) == pid[h]) {
        status[h] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return status[h];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

  // SIGKILL to every process in host h's network namespace: the instance is gone.
  void kill_host(const std::string& h) {
    const std::string ns = net_ns(pid[h]);
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const pid_t p = static_cast<pid_t>(std::stol(name));
      if (p != getpid() && net_ns(p) == ns) kill(p, SIGKILL);
    }
  }

  ~Cluster() {
    for (const auto& [h, p] : pid)
      if (!status.count(h)) {
        kill_host(h);
        int st;
        waitpid(p, &st, 0);
      }
  }
};

void make_cluster(Cluster& c, const fs::path& dir, std::vector<std::string> hosts, int epochs) {
  c.dir = dir;
  c.hosts = std::move(hosts);
  c.hyperparameters = R"({"arch": "resnet18", "epochs": ")" + std::to_string(epochs) +
                      R"(", "batch-size": "4", "val-size": "0", "test-size": "0", "threads": "1",
                         "loader-workers": "0", "replica-check-steps": "2"})";
  kiln::data::write_synthetic(dir / "syn", {4, 16, 4, 1});
  fs::create_directories(dir / "ssh");
  auto r = kiln::test::run_command("ssh-keygen -q -t ed25519 -N '' -f " + quote((dir / "ssh/id_ed25519").string()) +
                                   " </dev/null");
  REQUIRE_MESSAGE(r.status == 0, r.output);
}

}  // namespace

TEST_CASE("sagemaker hosts: two namespaced instances train one job; algo-1 writes the model, algo-2 exits 0") {
  if (!can_run()) return;
  kiln::test::TempDir tmp("hosts");
  Cluster c;
  make_cluster(c, tmp.path, {"algo-1", "algo-2"}, 1);
  c.boot("algo-1", 60, 60);
  c.boot("algo-2", 60, 60);
  c.wire();
  c.go("algo-2");
  c.go("algo-1");
  const int s1 = c.wait("algo-1", 150);
  INFO("algo-1:\n" << c.log("algo-1") << "\nalgo-2:\n" << c.log("algo-2"));
  CHECK(s1 == 0);
  CHECK(c.wait("algo-2", 30) == 0);
  CHECK(fs::exists(c.root_of("algo-1") / "model/model.safetensors"));
  CHECK(fs::exists(c.root_of("algo-1") / "model/config.json"));
  CHECK_FALSE(fs::exists(c.root_of("algo-2") / "model/model.safetensors"));
  CHECK_FALSE(fs::exists(c.root_of("algo-1") / "output/failure"));
  CHECK_FALSE(fs::exists(c.root_of("algo-2") / "output/failure"));
  const std::string l1 = c.log("algo-1");
  CHECK(l1.find("data-parallel, rank 0 of 2") != std::string::npos);
  CHECK(l1.find("data-parallel: 2 ranks, 4 steps") != std::string::npos);  // 16 records, global batch 4
  CHECK(c.log("algo-2").find("this host's rank finished") != std::string::npos);
}

TEST_CASE("sagemaker hosts: ShardedByS3Key, algo-1 and algo-2 with different parts: the job completes") {
  if (!can_run()) return;
  kiln::test::TempDir tmp("hosts-sharded");
  Cluster c;
  make_cluster(c, tmp.path, {"algo-1", "algo-2"}, 1);
  c.sharded = true;
  // 30 records in 3 parts of 10, as SageMaker might hand them out: algo-1 two, algo-2 one.
  kiln::data::write_synthetic(tmp.path / "syn30", {4, 30, 4, 1});
  const auto rep = kiln::data::write_train_parts(kiln::data::load_cifar100(tmp.path / "syn30"), 3, tmp.path / "parts");
  fs::create_directories(tmp.path / "shards/algo-1");
  fs::create_directories(tmp.path / "shards/algo-2");
  for (const char* p : {"train-00000-of-00003.bin", "train-00001-of-00003.bin"})
    fs::copy_file(rep.training / p, tmp.path / "shards/algo-1" / p);
  fs::copy_file(rep.training / "train-00002-of-00003.bin", tmp.path / "shards/algo-2/train-00002-of-00003.bin");
  fs::copy(rep.test, tmp.path / "shards/test", fs::copy_options::recursive);
  c.boot("algo-1", 60, 60);
  c.boot("algo-2", 60, 60);
  c.wire();
  c.go("algo-2");
  c.go("algo-1");
  const int s1 = c.wait("algo-1", 150);
  INFO("algo-1:\n" << c.log("algo-1") << "\nalgo-2:\n" << c.log("algo-2"));
  CHECK(s1 == 0);
  CHECK(c.wait("algo-2", 30) == 0);
  CHECK(fs::exists(c.root_of("algo-1") / "model/model.safetensors"));
  CHECK_FALSE(fs::exists(c.root_of("algo-2") / "model/model.safetensors"));
  CHECK_FALSE(fs::exists(c.root_of("algo-1") / "output/failure"));
  CHECK_FALSE(fs::exists(c.root_of("algo-2") / "output/failure"));
  const std::string l1 = c.log("algo-1");  // mpirun on algo-1 forwards algo-2's rank too
  // Global batch 4: 2 records per rank a step; algo-2's 10 allow 5 steps, algo-1's 20 would allow 10.
  CHECK(l1.find("data: per host (ShardedByS3Key): 2 hosts, 2 ranks; 5 steps/epoch") != std::string::npos);
  CHECK(l1.find("host 2 of 2 (rank 1") != std::string::npos);
  CHECK(l1.find("20 train, 0 validation records; 5 steps/epoch of 2 records here (2 of the global batch of 4): "
                "10 records left unused per epoch") != std::string::npos);
  CHECK(l1.find("10 train, 0 validation records; 5 steps/epoch of 2 records here (2 of the global batch of 4): "
                "0 records left unused per epoch") != std::string::npos);
  CHECK(l1.find("data-parallel: 2 ranks, 5 steps") != std::string::npos);
  CHECK(c.log("algo-2").find("this host's rank finished") != std::string::npos);
}

TEST_CASE("sagemaker hosts: algo-2 killed mid-job ends the job with a failure file on algo-1") {
  if (!can_run()) return;
  kiln::test::TempDir tmp("hosts-kill");
  Cluster c;
  make_cluster(c, tmp.path, {"algo-1", "algo-2"}, 100);
  c.boot("algo-1", 60, 60);
  c.boot("algo-2", 60, 60);
  c.wire();
  c.go("algo-2");
  c.go("algo-1");
  const auto t0 = Clock::now();
  while (c.log("algo-1").find("step 2/") == std::string::npos) {
    REQUIRE_MESSAGE(std::chrono::duration<double>(Clock::now() - t0).count() < 120,
                    "training never reached step 2:\n" << c.log("algo-1") << "\nalgo-2:\n" << c.log("algo-2"));
    REQUIRE_MESSAGE(c.wait("algo-1", 0) < 0, "algo-1 ended early:\n" << c.log("algo-1"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  c.kill_host("algo-2");
  c.status["algo-2"] = 137;
  int st;
  waitpid(c.pid["algo-2"], &st, 0);
  const auto killed = Clock::now();
  const int s1 = c.wait("algo-1", 60);
  INFO("algo-1:\n" << c.log("algo-1"));
  CHECK(s1 == 1);
  CHECK(std::chrono::duration<double>(Clock::now() - killed).count() < 60);
  const std::string failure = kiln::test::read_text(c.root_of("algo-1") / "output/failure");
  CHECK(failure.find("the distributed job failed: mpirun exited with status") != std::string::npos);
  CHECK_FALSE(fs::exists(c.root_of("algo-1") / "model/model.safetensors"));
}

TEST_CASE("sagemaker hosts: a host that never comes up, a name that does not resolve, a leader that never starts") {
  if (!can_run()) return;
  kiln::test::TempDir tmp("hosts-missing");
  Cluster c;
  make_cluster(c, tmp.path, {"algo-1", "algo-2", "algo-9"}, 1);
  c.boot("algo-1", 3, 60);  // algo-2 never boots; algo-9 is in no hosts file
  c.go("algo-1");
  const auto t0 = Clock::now();
  CHECK(c.wait("algo-1", 30) == 1);
  CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 30);
  const std::string failure = kiln::test::read_text(c.root_of("algo-1") / "output/failure");
  INFO(failure << c.log("algo-1"));
  CHECK(failure.find("hosts not reachable within 3 s") != std::string::npos);
  CHECK(failure.find("algo-2 resolves to 10.99.0.2 but port 22 does not answer") != std::string::npos);
  CHECK(failure.find("algo-9 does not resolve") != std::string::npos);

  kiln::test::TempDir tmp2("hosts-noleader");
  Cluster w;
  make_cluster(w, tmp2.path, {"algo-1", "algo-2"}, 1);
  w.boot("algo-2", 60, 2);  // algo-1 never starts the job
  w.go("algo-2");
  CHECK(w.wait("algo-2", 30) == 1);
  const std::string f2 = kiln::test::read_text(w.root_of("algo-2") / "output/failure");
  INFO(f2 << w.log("algo-2"));
  CHECK(f2.find("algo-1 did not start the job on algo-2 within 2 s") != std::string::npos);
}
