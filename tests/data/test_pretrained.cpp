// torchvision's ImageNet weights (`kiln download ARCH-imagenet`, `kiln train --pretrained
// imagenet`): a local HTTPS server serves a file torchvision wrote, under torchvision's naming
// (NAME-<sha256 prefix>.pth); a corrupted copy; nothing (offline). The cache is torch hub's
// ($TORCH_HOME/hub/checkpoints), so a second run downloads nothing; training starts from the
// file with the head replaced; the container's `pretrained` channel needs no network at all.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/pretrained.h"
#include "tests/support/support.h"
#include "tests/data/https_fixture.h"

using namespace kiln::data;
namespace kt = kiln::test;
namespace fs = std::filesystem;

namespace {

// A resnet18 state_dict written by torch.save, named as torchvision names its files.
struct TorchvisionFile {
  kt::TempDir dir{"tvfile"};
  std::string name, bytes;
  TorchvisionFile() {
    std::string out;
    const std::string py =
        "import hashlib, os, sys, torch, torchvision\n"
        "torch.manual_seed(0)\n"
        "p = os.path.join(sys.argv[1], 'w.pth')\n"
        "torch.save(torchvision.models.resnet18().state_dict(), p)\n"
        "h = hashlib.sha256(open(p, 'rb').read()).hexdigest()\n"
        "n = 'resnet18-' + h[:8] + '.pth'\n"
        "os.rename(p, os.path.join(sys.argv[1], n))\n"
        "print(n)\n";
    kiln::write_file_atomic(dir.path / "make.py", py);
    REQUIRE_MESSAGE(kt::run(kt::quote(kt::python()) + " " + kt::quote((dir.path / "make.py").string()) + " " +
                                kt::quote(dir.path.string()),
                            &out) == 0,
                    out);
    name = out.substr(0, out.find('\n'));
    bytes = kiln::read_file(dir.path / name);
  }
};

const TorchvisionFile& tv_file() {
  static TorchvisionFile f;
  return f;
}

int refused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Server {
  kt::HttpsServer https;
  std::string good, bad;
  int hits = 0;
  Server() {
    good = tv_file().bytes;
    bad = good;
    bad[bad.size() / 3] = static_cast<char>(bad[bad.size() / 3] ^ 1);
    https.server->Get("/models/(.*)", [this](const httplib::Request& q, httplib::Response& r) {
      ++hits;
      if (q.matches[1] != tv_file().name) {
        r.status = 404;
        return;
      }
      r.set_content(good, "application/octet-stream");
    });
    https.server->Get("/damaged/(.*)", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(bad, "application/octet-stream");
    });
    https.start();
  }
  std::string env(const fs::path& torch_home) const {
    return "TORCH_HOME=" + kt::quote(torch_home.string()) + " KILN_CA_BUNDLE=" + kt::quote(https.ca_file()) + " ";
  }
};

}  // namespace

TEST_CASE("pretrained: torchvision's published files, hash prefixes, torch hub's cache directory") {
  CHECK(imagenet_weights("resnet34").url == "https://download.pytorch.org/models/resnet34-b627a593.pth");
  CHECK(imagenet_weights("resnet34").sha256_prefix() == "b627a593");
  CHECK(imagenet_weights("resnet18").file_name() == "resnet18-f37072fd.pth");
  CHECK(hash_prefix_of("resnet50-0676ba61.pth") == "0676ba61");
  CHECK(hash_prefix_of("weights.pth").empty());
  CHECK(hash_prefix_of("my-model-v2-abc123.pth") == "abc123");
  CHECK_THROWS_WITH_AS(imagenet_weights("vgg16"), doctest::Contains("one of resnet18, resnet34, resnet50"), kiln::Error);
  std::string th = kt::env_or("TORCH_HOME", ""), xdg = kt::env_or("XDG_CACHE_HOME", "");
  setenv("TORCH_HOME", "/t/h", 1);
  CHECK(torch_hub_checkpoints() == fs::path("/t/h/hub/checkpoints"));
  unsetenv("TORCH_HOME");
  setenv("XDG_CACHE_HOME", "/x", 1);
  CHECK(torch_hub_checkpoints() == fs::path("/x/torch/hub/checkpoints"));
  if (th.empty()) unsetenv("TORCH_HOME"); else setenv("TORCH_HOME", th.c_str(), 1);
  if (xdg.empty()) unsetenv("XDG_CACHE_HOME"); else setenv("XDG_CACHE_HOME", xdg.c_str(), 1);
}

TEST_CASE("kiln download ARCH-imagenet: verified, cached in TORCH_HOME, not fetched twice; damage writes nothing") {
  Server s;
  kt::TempDir home("torchhome");
  const fs::path cached = home.path / "hub" / "checkpoints" / tv_file().name;
  std::string out;
  const std::string url = s.https.url("/models/" + tv_file().name);
  int rc = kt::run(s.env(home.path) + kt::kiln_bin() + " download resnet18-imagenet --url " + kt::quote(url) + " 2>&1", &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find(cached.string()) != std::string::npos);
  CHECK(kiln::read_file(cached) == tv_file().bytes);
  CHECK(s.hits == 1);
  // Already there: nothing is fetched.
  rc = kt::run(s.env(home.path) + kt::kiln_bin() + " download resnet18-imagenet --url " + kt::quote(url) + " 2>&1", &out);
  CHECK(rc == 0);
  CHECK(s.hits == 1);
  CHECK(out.find("downloading") == std::string::npos);

  kt::TempDir other("torchhome2");
  rc = kt::run(s.env(other.path) + kt::kiln_bin() + " download resnet18-imagenet --url " +
                   kt::quote(s.https.url("/damaged/" + tv_file().name)) + " 2>&1",
               &out);
  CHECK(rc != 0);
  CHECK(out.find("SHA-256 starting with " + tv_file().name.substr(9, 8)) != std::string::npos);
  CHECK_FALSE(fs::exists(other.path / "hub" / "checkpoints" / tv_file().name));

  // A file name without its hash cannot be checked, so it is refused.
  rc = kt::run(s.env(other.path) + kt::kiln_bin() + " download resnet18-imagenet --url " +
                   kt::quote(s.https.url("/models/resnet18.pth")) + " 2>&1",
               &out);
  CHECK(rc != 0);
  CHECK(out.find("carrying its SHA-256 prefix") != std::string::npos);
}

TEST_CASE("pretrained offline: a clear message naming the URL and where to put the file") {
  kt::TempDir home("offline");
  PretrainedOptions o;
  o.cache_dir = home.path / "cache";
  o.quiet = true;
  o.timeout_s = 5;
  std::string e;
  try {
    fetch_pretrained("resnet34", [&] {
      o.url = "https://127.0.0.1:" + std::to_string(refused_port()) + "/models/resnet34-b627a593.pth";
      return o;
    }());
  } catch (const kiln::Error& err) {
    e = err.full_message();
  }
  CHECK(e.find("looks offline") != std::string::npos);
  CHECK(e.find((home.path / "cache" / "resnet34-b627a593.pth").string()) != std::string::npos);
  CHECK(e.find("TORCH_HOME") != std::string::npos);
}

TEST_CASE("kiln train --pretrained imagenet starts from torchvision's weights with the head replaced") {
  Server s;
  kt::TempDir t("pretrain");
  std::string out;
  REQUIRE(kt::run(kt::kiln_bin() + " synth --dir " + kt::quote((t.path / "syn").string()) +
                      " --classes 5 --train 40 --test 8 2>&1",
                  &out) == 0);
  const std::string url = s.https.url("/models/" + tv_file().name);
  // lr 0: one step changes no weight, so the model written is the pretrained one with a new head.
  int rc = kt::run(s.env(t.path / "th") + kt::kiln_bin() + " train --data " + kt::quote((t.path / "syn").string()) +
                       " --arch resnet18 --pretrained imagenet --pretrained-url " + kt::quote(url) +
                       " --epochs 1 --max-steps 1 --batch-size 8 --lr 0 --val-size 8 --test-size 0 --threads 2"
                       " --no-augment --model-dir " + kt::quote((t.path / "model").string()) + " 2>&1",
                   &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("pretrained: " + (t.path / "th" / "hub" / "checkpoints" / tv_file().name).string()) != std::string::npos);
  const std::string cmp =
      "import sys, torch\n"
      "a = torch.load(sys.argv[1]); b = torch.load(sys.argv[2])\n"
      "assert torch.equal(a['conv1.weight'], b['conv1.weight'])\n"
      "assert torch.equal(a['layer4.1.conv2.weight'], b['layer4.1.conv2.weight'])\n"
      "assert tuple(b['fc.weight'].shape) == (5, 512), b['fc.weight'].shape\n"
      "print('same')\n";
  kiln::write_file_atomic(t.path / "cmp.py", cmp);
  rc = kt::run(kt::quote(kt::python()) + " " + kt::quote((t.path / "cmp.py").string()) + " " +
                   kt::quote((t.path / "th" / "hub" / "checkpoints" / tv_file().name).string()) + " " +
                   kt::quote((t.path / "model" / "model.pth").string()) + " 2>&1",
               &out);
  CHECK_MESSAGE(rc == 0, out);
}

TEST_CASE("container: the pretrained channel supplies the weights with no network and implies --pretrained imagenet") {
  kt::TempDir t("prechan");
  const fs::path root = t.path / "opt" / "ml";
  std::string out;
  REQUIRE(kt::run(kt::kiln_bin() + " synth --dir " + kt::quote((root / "input/data/training").string()) +
                      " --classes 5 --train 40 --test 8 2>&1",
                  &out) == 0);
  fs::create_directories(root / "input/data/pretrained");
  kiln::write_file_atomic(root / "input/data/pretrained" / tv_file().name, tv_file().bytes);
  const std::string url = "https://127.0.0.1:" + std::to_string(refused_port()) + "/models/" + tv_file().name;
  kiln::write_file_atomic(root / "input/config/hyperparameters.json",
                 "{\"arch\": \"resnet18\", \"epochs\": \"1\", \"max-steps\": \"1\", \"batch_size\": \"8\", "
                 "\"val-size\": \"8\", \"test-size\": \"0\", \"threads\": \"2\", \"pretrained-url\": \"" + url + "\"}");
  const int rc = kt::run("TORCH_HOME=" + kt::quote((t.path / "empty").string()) + " KILN_OPT_ML=" +
                             kt::quote(root.string()) + " " + kt::kiln_bin() + " train 2>&1",
                         &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("pretrained = imagenet (from the pretrained channel") != std::string::npos);
  CHECK(out.find("pretrained: " + (root / "input/data/pretrained" / tv_file().name).string()) != std::string::npos);
}
