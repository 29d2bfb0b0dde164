// The pushed image really runs: pulled back from the registry with skopeo (an independent
// client), its layers unpacked in order into a directory, and its entrypoint started there under
// chroot, in a private mount namespace with /proc and /dev as a container runtime provides them,
// with the config's Env and nothing from this machine's filesystem. `train` completes on a tiny
// /opt/ml tree; `serve` then answers /ping and an application/x-npy invocation with that model.
// Needs root (CI runs as root); elsewhere the test fails unless KILN_SKIP_ROOT_TESTS=1.
#include <doctest/doctest.h>

#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmath>
#include <cstring>
#include <sys/mount.h>

#include <nlohmann/json.hpp>

#include "kiln/core/atomic_file.h"
#include "kiln/image/archive.h"
#include "kiln/io/array.h"
#include "kiln/io/gzip.h"
#include "kiln/io/npy.h"
#include "kiln/io/tar.h"
#include "tests/image/registry_fixture.h"

namespace fs = std::filesystem;
using kiln_test::quote;
using nlohmann::json;

namespace {

// Unpacks layers in order (later files replace earlier ones), symlinks as they are.
void unpack(const std::string& gz, const fs::path& root) {
  for (const auto& e : kiln::io::parse_tar(kiln::io::gunzip(gz, "layer", size_t(1) << 31), "layer", true)) {
    fs::path p = root / e.name;
    std::error_code ec;
    if (e.is_dir) {
      fs::create_directories(p);
      fs::permissions(p, static_cast<fs::perms>(e.mode));
    } else if (e.is_symlink) {
      fs::remove(p, ec);
      fs::create_symlink(e.link_target, p);
    } else {
      fs::remove(p, ec);
      kiln::write_file_atomic(p, e.data);
      fs::permissions(p, static_cast<fs::perms>(e.mode));
    }
  }
}

// Starts ENTRYPOINT + args chrooted in `root`, as a container runtime would. Returns the pid.
pid_t start_in_image(const fs::path& root, const json& cfg, const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> argv = cfg["config"]["Entrypoint"].get<std::vector<std::string>>();
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env = cfg["config"]["Env"].get<std::vector<std::string>>();
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    auto die = [](const char* what) {
      std::fprintf(stderr, "container set-up: %s: %s\n", what, std::strerror(errno));
      _exit(126);
    };
    if (unshare(CLONE_NEWNS) != 0) die("unshare(CLONE_NEWNS)");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) die("make / private");
    fs::create_directories(root / "proc");
    fs::create_directories(root / "dev");
    if (mount("proc", (root / "proc").c_str(), "proc", 0, nullptr) != 0) die("mount proc");
    if (mount("/dev", (root / "dev").c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) die("bind /dev");
    if (chroot(root.c_str()) != 0 || chdir("/") != 0) die("chroot");
    std::vector<char*> a, e;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    for (auto& s : env) e.push_back(s.data());
    e.push_back(nullptr);
    execve(a[0], a.data(), e.data());
    die("execve");
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

TEST_CASE("the pushed image, pulled back with skopeo, runs under chroot: train, then serve /ping and x-npy") {
  if (geteuid() != 0) {
    const char* skip = std::getenv("KILN_SKIP_ROOT_TESTS");
    REQUIRE_MESSAGE((skip && std::string(skip) == "1"), "this test needs root (chroot, mount namespace); "
                                                        "KILN_SKIP_ROOT_TESTS=1 skips it");
    return;
  }
  kiln_test::Registry reg;
  kiln_test::TempDir tmp;
  std::string out;
  REQUIRE(kiln_test::run_capture(kiln_test::kiln_bin() + " image push " + quote(kiln_test::built_image().string()) + " " +
                                     reg.host + "/kiln:run 2>&1",
                                 out) == 0);
  fs::path pulled = tmp / "pulled";
  REQUIRE_MESSAGE(kiln_test::run_capture("skopeo copy --quiet --src-tls-verify=false docker://" + reg.host +
                                             "/kiln:run dir:" + quote(pulled.string()) + " 2>&1",
                                         out) == 0,
                  out);
  json manifest = json::parse(kiln::read_file(pulled / "manifest.json"));
  REQUIRE(manifest["mediaType"] == kiln::image::kManifestV2);
  auto blob = [&](const std::string& digest) { return kiln::read_file(pulled / digest.substr(7)); };
  json cfg = json::parse(blob(manifest["config"]["digest"]));
  fs::path root = tmp / "rootfs";
  fs::create_directories(root);
  for (const auto& l : manifest["layers"]) unpack(blob(l["digest"]), root);

  // A tiny /opt/ml tree, as SageMaker mounts it (written from outside, like the mount).
  fs::path ml = root / "opt/ml";
  REQUIRE(kiln_test::run_capture(kiln_test::kiln_bin() + " synth --dir " + quote((ml / "input/data/training").string()) +
                                     " --classes 5 --train 48 --test 8 2>&1",
                                 out) == 0);
  fs::create_directories(ml / "input/config");
  kiln_test::write_text(ml / "input/config/hyperparameters.json",
                        R"({"epochs": "1", "batch_size": "16", "arch": "\"resnet18\"", "val-size": "16", "threads": "2",
                            "no-augment": "\"true\""})");
  kiln_test::write_text(ml / "input/config/resourceconfig.json",
                        R"({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})");
  kiln_test::write_text(ml / "input/config/inputdataconfig.json",
                        R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}})");

  pid_t train = start_in_image(root, cfg, {"train"}, tmp / "train.log");
  int rc = wait_exit(train);
  std::string train_log = kiln::read_file(tmp / "train.log");
  INFO(train_log);
  REQUIRE(rc == 0);
  CHECK(train_log.find("epoch=1 train_loss=") != std::string::npos);
  CHECK(fs::exists(ml / "model/model.safetensors"));

  int port = kiln_test::free_port();
  pid_t serve = start_in_image(root, cfg, {"serve", "--port", std::to_string(port), "--host", "127.0.0.1", "--threads", "1"},
                               tmp / "serve.log");
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(0, 200000);
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    auto r = cli.Get("/ping");
    up = r && r->status == 200;
    if (!up) usleep(100000);
  }
  INFO(kiln::read_file(tmp / "serve.log"));
  CHECK(up);
  kiln::io::NamedArray x;
  x.shape = {2, 3, 32, 32};
  x.bytes.resize(2 * 3 * 32 * 32 * sizeof(float));
  float* f = x.f32();
  for (int64_t i = 0; i < x.numel(); ++i) f[i] = static_cast<float>((i * 37) % 255) / 255.0f;
  auto r = cli.Post("/invocations", httplib::Headers{{"Accept", "application/x-npy"}}, kiln::io::encode_npy(x),
                    "application/x-npy");
  REQUIRE(r);
  CHECK(r->status == 200);
  kiln::io::NamedArray pred = kiln::io::parse_npy(r->body, "the invocation's answer");
  CHECK(pred.shape == std::vector<int64_t>{2, 5});  // log-probabilities over the 5 classes
  double total = 0;
  for (int c = 0; c < 5; ++c) total += std::exp(double(pred.f32()[c]));
  CHECK(total == doctest::Approx(1.0).epsilon(1e-4));
  kill(serve, SIGTERM);
  CHECK(wait_exit(serve) == 0);
}
