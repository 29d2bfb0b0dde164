// The model commands through the built binary (KILN_BIN): `kiln predict` reproduces PyTorch's
// eval-mode log_softmax from .pth, .safetensors and a model directory; `kiln summary` prints
// torchvision's parameter totals; `kiln bench` ends with the line scripts grep; bad inputs
// fail with a message naming the file and what was expected.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/io/npy.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/models/resnet.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "tests/models/fixtures.h"

namespace {

namespace fs = std::filesystem;

struct Run {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

std::string kiln_bin() {
  REQUIRE_MESSAGE(std::getenv("KILN_BIN") != nullptr, "KILN_BIN is not set: run through `meson test`");
  return kiln::test::kiln_bin();
}

Run run_shell(const std::string& cmd) {
  kiln::test::CommandResult r = kiln::test::run_command(cmd);
  REQUIRE_MESSAGE(r.status != -1, "cannot run ", cmd);
  return {r.status, r.output};
}

Run run_kiln(const std::string& args) { return run_shell(kiln_bin() + " " + args); }

std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of('\n');
  if (end == std::string::npos) return {};
  size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// kiln predict's output against PyTorch's float64 eval log_softmax (same rule as test_parity).
void check_predict_output(const kiln::test::Fixture& fx, const fs::path& y_path) {
  kiln::io::NamedArray y = kiln::io::read_npy(y_path);
  std::string msg = kiln::test::compare(
      fx.arch + " kiln predict output", std::vector<float>(y.f32(), y.f32() + y.numel()), y.shape,
      fx.ref("eval.log_softmax"), fx.err32("eval.log_softmax"), {});
  INFO(msg);
  CHECK(msg.empty());
}

}  // namespace

TEST_CASE("kiln predict computes PyTorch's eval log_softmax from a torch.save .pth") {
  const auto& fx = kiln::test::parity_fixture("resnet34");
  fs::path tmp = kiln::test::make_temp_dir("predict");
  Run r = run_kiln("predict --weights " + (fx.dir / "model.pth").string() + " --input " +
                   (fx.dir / "input.npy").string() + " --output " + (tmp / "y.npy").string() +
                   " --arch resnet34 --threads 2");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  check_predict_output(fx, tmp / "y.npy");
}

TEST_CASE("kiln predict reads .safetensors and a model directory, and detects resnet18") {
  const auto& fx = kiln::test::parity_fixture("resnet18");
  fs::path tmp = kiln::test::make_temp_dir("predict18");
  kiln::io::StateDict sd = kiln::io::read_pth(fx.dir / "model.pth");
  kiln::io::write_safetensors(tmp / "w.safetensors", sd);
  // No --arch: the block count in layer3 says resnet18; classes come from fc.weight.
  Run r = run_kiln("predict --weights " + (tmp / "w.safetensors").string() + " --input " +
                   (fx.dir / "input.npy").string() + " --output " + (tmp / "y.npy").string());
  INFO(r.out);
  REQUIRE(r.rc == 0);
  check_predict_output(fx, tmp / "y.npy");

  fs::create_directories(tmp / "model");
  kiln::io::write_safetensors(tmp / "model" / "model.safetensors", sd);
  std::string names;
  for (int i = 0; i < 100; ++i) names += std::string(i ? "," : "") + "\"c" + std::to_string(i) + "\"";
  std::ofstream(tmp / "model" / "config.json")
      << "{\"format\": \"kiln-model\", \"version\": 1, \"arch\": \"resnet18\", \"num_classes\": 100,"
         " \"class_names\": [" << names << "], \"mean\": [0.507, 0.487, 0.441],"
         " \"std\": [0.267, 0.256, 0.276], \"image_size\": 32, \"dataset\": \"synthetic\"}\n";
  r = run_kiln("predict --model-dir " + (tmp / "model").string() + " --input " +
               (fx.dir / "input.npy").string() + " --output " + (tmp / "y2.npy").string());
  INFO(r.out);
  REQUIRE(r.rc == 0);
  check_predict_output(fx, tmp / "y2.npy");
}

TEST_CASE("kiln predict names what is wrong with its inputs") {
  const auto& fx = kiln::test::parity_fixture("resnet18");
  fs::path tmp = kiln::test::make_temp_dir("predict-bad");
  const std::string w = " --weights " + (fx.dir / "model.pth").string();
  // Labels (int64, 1-D) given as images.
  Run r = run_kiln("predict" + w + " --input " + (fx.dir / "labels.npy").string() + " --output " +
                   (tmp / "y.npy").string());
  CHECK(r.rc == 1);
  CHECK_MESSAGE(r.out.find("float32") != std::string::npos, r.out);
  CHECK_MESSAGE(r.out.find("labels.npy") != std::string::npos, r.out);
  CHECK(!fs::exists(tmp / "y.npy"));
  // resnet18 weights forced into resnet34: the strict loader names the missing keys.
  r = run_kiln("predict" + w + " --arch resnet34 --input " + (fx.dir / "input.npy").string() +
               " --output " + (tmp / "y.npy").string());
  CHECK(r.rc == 1);
  CHECK_MESSAGE(r.out.find("layer3.2") != std::string::npos, r.out);
  // No such file.
  r = run_kiln("predict --weights " + (tmp / "nope.pth").string() + " --input x --output y");
  CHECK(r.rc == 1);
  CHECK_MESSAGE(r.out.find("nope.pth") != std::string::npos, r.out);
  r = run_kiln("predict --input x.npy --output y.npy");
  CHECK(r.rc == 1);
  CHECK_MESSAGE(r.out.find("--weights") != std::string::npos, r.out);
}

// predict builds its network without random initialisation (models::load_resnet): a weights
// file short of one tensor must be refused by name, never run with that tensor at a random (or
// zero) value; a head of another size is re-initialised only when --num-classes asks for it,
// seeded like the nn.Linear of a fresh ResNet(seed 0), while everything else is the file's.
TEST_CASE("kiln predict takes every weight from the file: a missing one is refused by name, only --num-classes re-initialises fc") {
  const auto& fx = kiln::test::parity_fixture("resnet18");
  fs::path tmp = kiln::test::make_temp_dir("predict-noinit");
  const kiln::io::StateDict sd = kiln::io::read_pth(fx.dir / "model.pth");
  const std::string io_args = " --input " + (fx.dir / "input.npy").string() + " --output " +
                              (tmp / "y.npy").string();
  for (const std::string key : {"layer3.1.conv2.weight", "layer2.0.bn1.running_var"}) {
    CAPTURE(key);
    kiln::io::StateDict partial;
    for (const auto& a : sd)
      if (a.name != key) partial.push_back(a);
    REQUIRE(partial.size() + 1 == sd.size());
    kiln::io::write_pth(tmp / "partial.pth", partial);
    Run r = run_kiln("predict --weights " + (tmp / "partial.pth").string() + io_args);
    CHECK(r.rc == 1);
    CHECK_MESSAGE(r.out.find("missing key " + key) != std::string::npos, r.out);
    CHECK_MESSAGE(r.out.find("partial.pth") != std::string::npos, r.out);
    CHECK(!fs::exists(tmp / "y.npy"));
  }

  Run r = run_kiln("predict --weights " + (fx.dir / "model.pth").string() + " --num-classes 7" + io_args);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("fc re-initialised like nn.Linear (seed 0)") != std::string::npos);
  // The reference: a seeded, initialised resnet18 with 7 classes, every tensor but fc's from the file.
  kiln::models::ResNet ref({"resnet18", 7}, /*seed=*/0);
  kiln::io::StateDict want = ref.state_dict();
  for (auto& w : want)
    if (w.name.rfind("fc.", 0) != 0)
      for (const auto& a : sd)
        if (a.name == w.name) w = a;
  ref.load_state_dict(want);
  ref.eval();
  kiln::NoGrad no_grad;
  std::vector<float> x = fx.input();
  const int64_t n = fx.batch(), s = fx.ref("input").shape[2];
  std::vector<float> expected = kiln::ops::log_softmax(
      ref.forward(kiln::Tensor::from_plain({n, 3, s, s}, x.data(), "input"))).to_plain_vector();
  kiln::io::NamedArray y = kiln::io::read_npy(tmp / "y.npy");
  REQUIRE(y.shape == std::vector<int64_t>{n, 7});
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs(y.f32()[i] - expected[i])));
  CHECK_MESSAGE(worst < 1e-4, "kiln predict --num-classes 7 differs from the seeded reference by ", worst);
}

TEST_CASE("kiln summary prints every layer and torchvision's parameter totals") {
  Run r = run_kiln("summary --arch resnet34 --num-classes 100");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("21,335,972 Total params") != std::string::npos);
  CHECK(r.out.find("21,335,972 Trainable params") != std::string::npos);
  CHECK(std::regex_search(r.out, std::regex(R"(layer3\.5\.bn2\s*\|\s*BatchNorm2d\s*\|\s*512\s*\|\s*\(1, 256, 2, 2\))")));
  CHECK(std::regex_search(r.out, std::regex(R"(fc\s*\|\s*Linear\s*\|\s*51,300\s*\|\s*\(1, 100\))")));
  CHECK(std::regex_search(r.out, std::regex(R"(layer4\.0\.downsample\.0\s*\|\s*Conv2d\s*\|\s*131,072\s*\|\s*\(1, 512, 1, 1\))")));
  r = run_kiln("summary --arch resnet18 --num-classes 100");
  CHECK(r.out.find("11,227,812 Total params") != std::string::npos);
  r = run_kiln("summary --arch resnet50 --num-classes 1000");
  CHECK(r.out.find("25,557,032 Total params") != std::string::npos);
  r = run_kiln("summary --arch resnet99");
  CHECK(r.rc == 1);
  CHECK_MESSAGE(r.out.find("resnet99") != std::string::npos, r.out);
}

TEST_CASE("kiln bench train and infer end with the line scripts grep") {
  Run r = run_kiln("bench train --arch resnet18 --batch-size 4 --steps 2 --warmup 1 --threads 2");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(std::regex_match(last_line(r.out), std::regex(R"(train_img_per_s=[0-9]+(\.[0-9]+)?)")));
  r = run_kiln("bench infer --arch resnet18 --batch-size 2 --steps 3 --warmup 1");
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(std::regex_match(last_line(r.out), std::regex(R"(infer_ms_median=[0-9]+(\.[0-9]+)?)")));
  // The steady state of a training step reorders nothing and creates no primitive.
  r = run_kiln("bench train --arch resnet18 --batch-size 4 --steps 2 --warmup 2");
  CHECK_MESSAGE(r.out.find("steady state per step: 0.0 reorders, 0.0 primitives created, 0.0 ref impls") !=
                    std::string::npos, r.out);
  r = run_kiln("bench sprint");
  CHECK(r.rc == 1);
}

TEST_CASE("the embedding example loads torchvision weights and trains: the loss falls") {
  const char* exe = std::getenv("KILN_EXAMPLE_EMBED");
  REQUIRE_MESSAGE(exe != nullptr, "KILN_EXAMPLE_EMBED is not set: tools/examples was not built");
  const auto& fx = kiln::test::parity_fixture("resnet34");
  Run r = run_shell(std::string(exe) + " " + (fx.dir / "model.pth").string() + " 3");
  const std::string& out = r.out;
  INFO(out);
  REQUIRE(r.rc == 0);
  std::smatch m;
  std::vector<double> losses;
  std::string rest = out;
  const std::regex line(R"(step (\d+): loss ([0-9.]+) grad_norm ([0-9.]+))");
  while (std::regex_search(rest, m, line)) {
    losses.push_back(std::stod(m[2].str()));
    CHECK(std::stod(m[3].str()) > 0);
    rest = m.suffix();
  }
  REQUIRE(losses.size() == 3);
  CHECK(losses[2] < losses[0]);
  // Eight classes of the 100-class head (argmax over the eval-mode logits).
  REQUIRE(std::regex_search(out, m, std::regex(R"(predictions:((?: \d+)+)\n)")));
  std::istringstream classes(m[1].str());
  int count = 0;
  for (int c; classes >> c; ++count) CHECK((c >= 0 && c < 100));
  CHECK(count == 8);

  // kiln's exception types reach the program: IoError (exit 2) for a file it cannot read,
  // another kiln::Error (exit 1) for a file that is not weights; both name the file.
  fs::path tmp = kiln::test::make_temp_dir("embed");
  r = run_shell(std::string(exe) + " " + (tmp / "absent.pth").string());
  CHECK(r.rc == 2);
  CHECK(r.out.find("embed_resnet: " + (tmp / "absent.pth").string()) != std::string::npos);
  kiln::test::write_text(tmp / "notes.pth", "not weights");
  r = run_shell(std::string(exe) + " " + (tmp / "notes.pth").string());
  CHECK(r.rc == 1);
  CHECK(r.out.find((tmp / "notes.pth").string()) != std::string::npos);
}

namespace {

int threads_in(const std::string& out) {
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(out, m, std::regex(", threads ([0-9]+),")), out);
  return std::stoi(m[1]);
}

}  // namespace

TEST_CASE("default thread count: one per physical core in the affinity mask; OMP_NUM_THREADS and --threads win") {
  const std::string bench = kiln_bin() + " bench infer --arch resnet18 --batch-size 1 --steps 1 --warmup 0";
  // The expectation, computed independently: Python's sched_getaffinity and the sysfs topology.
  Run py = run_shell(
      "python3 -c \"import os; print(len({(open('/sys/devices/system/cpu/cpu%d/topology/physical_package_id' % c).read(), "
      "open('/sys/devices/system/cpu/cpu%d/topology/core_id' % c).read()) for c in os.sched_getaffinity(0)}))\"");
  REQUIRE_MESSAGE(py.rc == 0, py.out);
  Run r = run_shell("env -u OMP_NUM_THREADS " + bench);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(threads_in(r.out) == std::stoi(py.out));
  r = run_shell("env -u OMP_NUM_THREADS taskset -c 0 " + bench);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(threads_in(r.out) == 1);
  r = run_shell("OMP_NUM_THREADS=3 " + bench);
  CHECK(threads_in(r.out) == 3);
  r = run_shell("OMP_NUM_THREADS=3 " + bench + " --threads 1");
  CHECK(threads_in(r.out) == 1);
}
