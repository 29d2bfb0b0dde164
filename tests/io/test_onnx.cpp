// ONNX export (models/onnx.h, `kiln export ... --output X.onnx`), checked by independent tools:
// onnx.checker (full_check) and OpenCV's DNN module run by check_onnx.py, whose logits must
// equal kiln's own eval-mode logits for the same images to fp32 accuracy (1e-4 of the largest
// |logit|). Weights are seeded random, BN running statistics and affine terms too (non-trivial).
#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <string>

#include "kiln/engine/tensor.h"
#include "kiln/io/npy.h"
#include "kiln/io/weights.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"
#include "tests/support/support.h"

namespace {

namespace fs = std::filesystem;
using kiln::test::quote;

// A seeded ResNet whose BNs have running statistics and affine terms far from 1/0.
kiln::io::StateDict random_weights(const std::string& arch, int64_t classes, uint64_t seed) {
  kiln::models::ResNet net({arch, classes}, seed);
  kiln::io::StateDict sd = net.state_dict();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  auto fill = [&](kiln::io::NamedArray& a, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = u(rng);
  };
  const std::string rm = ".running_mean";
  for (auto& a : sd) {
    auto ends = [&](const std::string& s) { return a.name.size() > s.size() && a.name.compare(a.name.size() - s.size(), s.size(), s) == 0; };
    if (ends(rm)) fill(a, -0.2f, 0.2f);
    else if (ends(".running_var")) fill(a, 0.5f, 2.0f);
    else if (a.shape.size() == 1 && ends(".weight") && a.name.rfind("fc.", 0) != 0) fill(a, 0.5f, 1.5f);
    else if (a.shape.size() == 1 && ends(".bias") && a.name.rfind("fc.", 0) != 0) fill(a, -0.2f, 0.2f);
  }
  return sd;
}

// kiln's eval-mode logits for x (N,3,S,S).
kiln::io::NamedArray kiln_logits(const std::string& arch, int64_t classes, const kiln::io::StateDict& sd,
                                 const kiln::io::NamedArray& x) {
  kiln::models::ResNet net({arch, classes}, 0, false);
  net.load_state_dict(sd);
  net.eval();
  kiln::NoGrad no_grad;
  kiln::Tensor xt = kiln::Tensor::from_plain(x.shape, x.f32(), "input");
  kiln::io::NamedArray y;
  y.name = "logits";
  y.shape = {x.shape[0], classes};
  y.bytes.resize(static_cast<size_t>(x.shape[0] * classes) * sizeof(float));
  net.forward(xt).copy_to_plain(y.f32());
  return y;
}

kiln::io::NamedArray random_images(int64_t n, int64_t s, uint32_t seed) {
  kiln::io::NamedArray x;
  x.name = "x";
  x.shape = {n, 3, s, s};
  x.bytes.resize(static_cast<size_t>(x.numel()) * sizeof(float));
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = g(rng);
  return x;
}

// Exports `src` with `flags`, then checks the file with onnx.checker and OpenCV against kiln.
void export_and_check(const kiln::test::TempDir& dir, const std::string& src, const std::string& flags,
                      const std::string& arch, int64_t classes, const kiln::io::StateDict& sd, int64_t size) {
  fs::path onnx = dir / (arch + ".onnx");
  fs::remove(onnx);
  auto r = kiln::test::run_command(kiln::test::kiln_bin() + " export " + quote(src) + " --output " +
                                   quote(onnx.string()) + " " + flags);
  INFO(r.output);
  REQUIRE(r.status == 0);
  kiln::io::NamedArray x = random_images(3, size, 7);
  kiln::io::write_npy(dir / "x.npy", x);
  kiln::io::write_npy(dir / "y.npy", kiln_logits(arch, classes, sd, x));
  auto c = kiln::test::run_command(kiln::test::python() + " " +
                                   quote((kiln::test::source_root() / "tests/io/check_onnx.py").string()) + " " +
                                   quote(onnx.string()) + " " + quote((dir / "x.npy").string()) + " " +
                                   quote((dir / "y.npy").string()) + " " + arch + " " + std::to_string(classes));
  INFO(c.output);
  CHECK(c.status == 0);
}

}  // namespace

TEST_CASE("onnx: resnet18/34/50 from .safetensors pass onnx.checker and OpenCV gives kiln's logits") {
  kiln::test::TempDir dir("onnx");
  for (std::string arch : {"resnet18", "resnet34", "resnet50"}) {
    CAPTURE(arch);
    auto sd = random_weights(arch, 10, 11);
    std::string w = (dir / (arch + ".safetensors")).string();
    kiln::io::write_weights(w, sd);
    export_and_check(dir, w, "", arch, 10, sd, 32);
  }
}

TEST_CASE("onnx: folded BN, a .pth, a model directory, other image sizes") {
  kiln::test::TempDir dir("onnx");
  auto sd = random_weights("resnet18", 7, 5);
  std::string pth = (dir / "w.pth").string();
  kiln::io::write_weights(pth, sd);
  export_and_check(dir, pth, "--fold-bn", "resnet18", 7, sd, 32);
  export_and_check(dir, pth, "", "resnet18", 7, sd, 48);  // H, W symbolic
  kiln::models::ModelConfig cfg;
  cfg.arch = "resnet18";
  cfg.num_classes = 7;
  for (int i = 0; i < 7; ++i) cfg.class_names.push_back("c\"" + std::to_string(i));
  kiln::models::write_model_dir(dir / "model", cfg, sd);
  export_and_check(dir, (dir / "model").string(), "--fixed-size", "resnet18", 7, sd, 32);
}

TEST_CASE("onnx: errors are clear and leave no file") {
  kiln::test::TempDir dir("onnx");
  std::string w = (dir / "w.safetensors").string();
  kiln::io::write_weights(w, random_weights("resnet18", 5, 3));
  auto exp = [&](const std::string& out, const std::string& flags) {
    return kiln::test::run_command(kiln::test::kiln_bin() + " export " + quote(w) + " --output " + quote(out) + " " + flags);
  };
  auto r = exp((dir / "a.onnx").string(), "--arch resnet99");
  CHECK(r.status != 0);
  CHECK(r.output.find("resnet99") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "a.onnx"));
  r = exp((dir / "no/such/dir/a.onnx").string(), "");
  CHECK(r.status != 0);
  CHECK(r.output.find("does not exist") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "no"));
  // An existing directory as the output: the whole file is written, then the rename fails.
  fs::create_directories(dir / "d.onnx");
  r = exp((dir / "d.onnx").string(), "");
  CHECK(r.status != 0);
  CHECK(r.output.find("cannot write") != std::string::npos);
  int left = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) left += e.path().filename().string().find(".tmp.") != std::string::npos;
  CHECK(left == 0);
}
