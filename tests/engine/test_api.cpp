// The C++ API a program embedding kiln uses, as a libtorch user expects it: layer options
// objects, a loss that checks its labels, argmax over a tensor, a model loaded with its
// weights in one call, and kiln's own exception types (each error path is checked for its
// type and for naming what was wrong).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/layers/batch_norm.h"
#include "kiln/layers/conv2d.h"
#include "kiln/layers/init.h"
#include "kiln/layers/linear.h"
#include "kiln/models/argmax.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"
#include "tests/support/support.h"

using namespace kiln;
using kiln::test::TempDir;

namespace {

Tensor random_tensor(std::vector<int64_t> shape, uint64_t seed, const std::string& name = "x") {
  Tensor t = Tensor::zeros(std::move(shape), name);
  layers::Rng rng(seed);
  layers::fill_normal(t, rng, 0.0, 1.0);
  return t;
}

std::vector<std::string> names(const layers::NamedTensors& nt) {
  std::vector<std::string> out;
  for (const auto& [n, t] : nt) out.push_back(n);
  return out;
}

// The model's eval-mode logits on a fixed batch.
std::vector<float> eval_logits(models::ResNet& net) {
  net.eval();
  NoGrad no_grad;
  return net.forward(random_tensor({2, 3, 32, 32}, 5, "images")).to_plain_vector();
}

// doctest::Contains for a message built at run time (a temporary folder's path).
doctest::Contains contains(const std::string& s) { return doctest::Contains(s.c_str()); }

// Max |a - b| relative to max |b|. The same weights give the same logits up to summation order:
// a model whose first forward ran in eval mode may hold its conv weights in another layout.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return worst / (scale + 1e-30);
}

io::StateDict without(io::StateDict sd, const std::string& key) {
  std::erase_if(sd, [&](const io::NamedArray& a) { return a.name == key; });
  return sd;
}

}  // namespace

TEST_CASE("kiln's exception types: one base a caller catches, subclasses to tell failures apart") {
  CHECK_THROWS_WITH_AS(fail_argument("Conv2dOptions stride", "a positive value", "0"),
                       "Conv2dOptions stride: expected a positive value, found 0",
                       InvalidArgument);
  CHECK_THROWS_AS(fail_io("x.pth", "a readable file", "No such file or directory"), IoError);
  CHECK_THROWS_AS(fail_format("x.pth", "a zip", "garbage"), FormatError);
  // Every subclass is a kiln::Error (existing catch sites keep working) and keeps the hint.
  try {
    fail_format("config.json: field \"arch\"", "a string", "3", "rewrite it");
    FAIL("fail_format returned");
  } catch (const Error& e) {
    CHECK(dynamic_cast<const FormatError*>(&e) != nullptr);
    CHECK(dynamic_cast<const IoError*>(&e) == nullptr);
    CHECK(e.hint() == "rewrite it");
    CHECK(e.full_message() == "config.json: field \"arch\": expected a string, found 3\n---> HINT: rewrite it");
  }
  // Plain fail() still throws the base type, not a subclass.
  try {
    fail("a", "b", "c");
  } catch (const Error& e) {
    CHECK(dynamic_cast<const InvalidArgument*>(&e) == nullptr);
    CHECK(dynamic_cast<const FormatError*>(&e) == nullptr);
  }
}

TEST_CASE("Conv2dOptions: nn.Conv2d's defaults, and each option reaches the convolution") {
  layers::Conv2d plain(layers::Conv2dOptions(3, 8, 3));
  CHECK(plain.options.stride() == 1);
  CHECK(plain.options.padding() == 0);
  CHECK(names(plain.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(plain.weight.shape() == std::vector<int64_t>{8, 3, 3, 3});

  layers::Conv2d conv(layers::Conv2dOptions(3, 8, 3).stride(2).padding(1).bias(false));
  CHECK(names(conv.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK_FALSE(conv.bias.defined());
  layers::Rng rng(1);
  layers::kaiming_normal_fan_out(conv.weight, rng);
  Tensor x = random_tensor({1, 3, 9, 9}, 2);
  Tensor y = conv.forward(x);
  CHECK(y.shape() == std::vector<int64_t>{1, 8, 5, 5});  // (9 + 2 - 3) / 2 + 1
  CHECK(y.to_plain_vector() == ops::conv2d(x, conv.weight, Tensor(), 2, 1).to_plain_vector());
}

TEST_CASE("Conv2dOptions, BatchNorm2dOptions, LinearOptions: a bad option throws InvalidArgument naming it") {
  using layers::Conv2dOptions;
  CHECK_THROWS_WITH_AS(layers::Conv2d(Conv2dOptions(0, 8, 3)),
                       "Conv2dOptions in_channels: expected a positive value, found 0", InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::Conv2d(Conv2dOptions(3, 8, 3).stride(0)),
                       doctest::Contains("Conv2dOptions stride"), InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::Conv2d(Conv2dOptions(3, 8, 3).padding(-1)),
                       "Conv2dOptions padding: expected 0 or more, found -1", InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::BatchNorm2d(layers::BatchNorm2dOptions(8).eps(0)),
                       doctest::Contains("BatchNorm2dOptions eps"), InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::BatchNorm2d(layers::BatchNorm2dOptions(8).momentum(1.5)),
                       doctest::Contains("BatchNorm2dOptions momentum: expected a value in [0, 1]"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::BatchNorm2d(0), doctest::Contains("num_features"), InvalidArgument);
  CHECK_THROWS_WITH_AS(layers::Linear(layers::LinearOptions(512, 0)),
                       "LinearOptions out_features: expected a positive value, found 0", InvalidArgument);
}

TEST_CASE("BatchNorm2dOptions: eps and momentum reach the batch norm") {
  Tensor x = random_tensor({4, 2, 3, 3}, 3);
  std::vector<float> xv = x.to_plain_vector();

  // Eval with running stats 0 / 1: y = x / sqrt(1 + eps).
  layers::BatchNorm2d bn(layers::BatchNorm2dOptions(2).eps(1.0));
  bn.eval();
  std::vector<float> y = bn.forward(x).to_plain_vector();
  for (size_t i = 0; i < xv.size(); ++i) CHECK(y[i] == doctest::Approx(xv[i] / std::sqrt(2.0)).epsilon(1e-5));

  // Training: running_mean = (1 - momentum) * 0 + momentum * batch mean.
  layers::BatchNorm2d bn2(layers::BatchNorm2dOptions(2).momentum(0.5));
  bn2.forward(x);
  for (int c = 0; c < 2; ++c) {
    double mean = 0;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 9; ++i) mean += xv[static_cast<size_t>((n * 2 + c) * 9 + i)] / 36.0;
    CHECK(bn2.running_mean.plain_data()[c] == doctest::Approx(0.5 * mean).epsilon(1e-5));
  }
  CHECK(bn2.num_batches_tracked == 1);
  // The defaults are nn.BatchNorm2d's, and BatchNorm2d(64) still reads as in libtorch.
  layers::BatchNorm2d bn3(64);
  CHECK(bn3.options.eps() == 1e-5);
  CHECK(bn3.options.momentum() == 0.1);
  CHECK(bn3.weight.shape() == std::vector<int64_t>{64});
}

TEST_CASE("LinearOptions: weight (out, in) and bias (out), forward is x W^T + b") {
  layers::Linear fc(layers::LinearOptions(3, 2));
  CHECK(fc.weight.shape() == std::vector<int64_t>{2, 3});
  CHECK(fc.bias.shape() == std::vector<int64_t>{2});
  const float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5f, -1}, xv[3] = {1, 0, -1};
  fc.weight.copy_from_plain(w);
  fc.bias.copy_from_plain(b);
  std::vector<float> y = fc.forward(Tensor::from_plain({1, 3}, xv)).to_plain_vector();
  CHECK(y == std::vector<float>{1 - 3 + 0.5f, 4 - 6 - 1.0f});
}

TEST_CASE("nll_loss takes one int64 label per row and says so when the count is wrong") {
  const float lpv[6] = {-0.1f, -2.0f, -3.0f, -1.5f, -0.5f, -4.0f};
  Tensor lp = Tensor::from_plain({2, 3}, lpv, "log_probs");
  std::vector<int64_t> labels = {2, 1};
  CHECK(ops::nll_loss(lp, labels).item() == doctest::Approx((3.0 + 0.5) / 2));
  std::vector<int64_t> short_labels = {2};
  CHECK_THROWS_WITH_AS(ops::nll_loss(lp, short_labels),
                       "nll_loss labels: expected 2 labels (one per row of log_probs (2, 3)), found 1",
                       InvalidArgument);
  std::vector<int64_t> long_labels = {0, 1, 2};
  CHECK_THROWS_AS(ops::nll_loss(lp, long_labels), InvalidArgument);
  std::vector<int64_t> negative = {0, -1};
  CHECK_THROWS_WITH_AS(ops::nll_loss(lp, negative),
                       "nll_loss label 1: expected a class in [0, 3), found -1", InvalidArgument);
  Tensor four_d = Tensor::zeros({2, 3, 1, 1}, "scores");
  CHECK_THROWS_WITH_AS(ops::nll_loss(four_d, labels), doctest::Contains("a plain (N, K) tensor"),
                       InvalidArgument);
}

TEST_CASE("argmax over a tensor: one class per row, torch.argmax's tie and NaN rules") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float v[12] = {0, 3, 3, 1,     // tie: the first maximum
                       -5, -4, -6, -7,  // all negative
                       1, nan, 9, nan};  // the first NaN wins
  CHECK(models::argmax(Tensor::from_plain({3, 4}, v)) == std::vector<int64_t>{1, 1, 1});
  const float w[6] = {0, 0, 1, 2, 1, 0};
  CHECK(models::argmax(Tensor::from_plain({2, 3}, w)) == std::vector<int64_t>{2, 0});
  // A model's logits: the row function over the same values agrees.
  models::ResNet net({"resnet18", 10}, 1);
  net.eval();
  Tensor logits = net.forward(random_tensor({3, 3, 32, 32}, 7, "images"));
  std::vector<float> lv = logits.to_plain_vector();
  std::vector<int64_t> want;
  for (int i = 0; i < 3; ++i) want.push_back(models::argmax(lv.data() + i * 10, 10));
  CHECK(models::argmax(logits) == want);
  CHECK_THROWS_WITH_AS(models::argmax(Tensor::zeros({4}, "logits")),
                       "argmax scores logits: expected an (N, K) tensor with K >= 1, found (4,)",
                       InvalidArgument);
  CHECK_THROWS_AS(models::argmax(Tensor()), InvalidArgument);
}

TEST_CASE("load_resnet: a weights file or a model directory, loaded in one call") {
  TempDir tmp("api");
  models::ResNet src({"resnet18", 10}, /*seed=*/3);
  // Non-default running stats and counters, so a load that skipped buffers would show.
  io::StateDict sd = src.state_dict();
  for (auto& a : sd) {
    if (a.name.ends_with("running_mean") || a.name.ends_with("running_var")) {
      float* v = a.f32();
      for (int64_t i = 0; i < a.numel(); ++i) v[i] = 0.5f + 0.01f * static_cast<float>(i % 7);
    } else if (a.name.ends_with("num_batches_tracked")) {
      const int64_t n = 12;
      std::memcpy(a.bytes.data(), &n, sizeof n);
    }
  }
  src.load_state_dict(sd);
  const std::vector<float> want = eval_logits(src);
  io::write_pth(tmp / "r18.pth", sd);
  io::write_safetensors(tmp / "r18.safetensors", sd, {});
  models::ModelConfig cfg;
  cfg.arch = "resnet18";
  cfg.num_classes = 10;
  for (int c = 0; c < 10; ++c) cfg.class_names.push_back("c" + std::to_string(c));
  models::write_model_dir(tmp / "dir", cfg, sd);

  for (const char* file : {"r18.pth", "r18.safetensors"}) {
    CAPTURE(file);
    models::LoadedResNet m = models::load_resnet(tmp / file);
    CHECK(m.config.arch == "resnet18");  // told by the keys
    CHECK(m.config.num_classes == 10);   // fc.weight's rows
    CHECK(m.config.class_names.front() == "0");
    CHECK(m.weights_file == tmp / file);
    CHECK(m.note.empty());
    CHECK(m.net->training());
    CHECK(rel_diff(eval_logits(*m.net), want) < 1e-5);
    io::StateDict back = m.net->state_dict();
    REQUIRE(back.size() == sd.size());
    for (size_t i = 0; i < sd.size(); ++i) {
      CAPTURE(sd[i].name);
      CHECK(back[i].bytes == sd[i].bytes);  // every tensor and counter, no random init left
    }
  }
  models::LoadedResNet d = models::load_resnet(tmp / "dir");
  CHECK(d.config.class_names == cfg.class_names);
  CHECK(d.weights_file == tmp / "dir" / "model.safetensors");
  CHECK(rel_diff(eval_logits(*d.net), want) < 1e-5);

  // A different head: an error naming the file and the tensor unless re-initialising is asked.
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "r18.pth", models::LoadResNetOptions().num_classes(5)),
                       contains((tmp / "r18.pth").string() +
                                ": weights do not fit resnet18 with 5 classes"),
                       FormatError);
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "r18.pth", models::LoadResNetOptions().num_classes(5)),
                       doctest::Contains("fc.weight: expected (5, 512), found (10, 512)"), FormatError);
  models::LoadedResNet five = models::load_resnet(tmp / "r18.pth", models::LoadResNetOptions().num_classes(5).reinit_head(true));
  CHECK(five.note.find("the weights have 10 classes, the model 5") != std::string::npos);
  CHECK(five.net->num_classes() == 5);
  CHECK(five.config.class_names.size() == 5);
  // Everything but the head is the file's.
  io::StateDict five_sd = five.net->state_dict();
  CHECK(five_sd[0].name == "conv1.weight");
  CHECK(five_sd[0].bytes == sd[0].bytes);
}

TEST_CASE("load_resnet errors: IoError for what cannot be read, FormatError naming the file and tensor") {
  TempDir tmp("api-errors");
  models::ResNet src({"resnet18", 10}, 3);
  io::StateDict sd = src.state_dict();

  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "absent.pth"),
                       contains((tmp / "absent.pth").string()), IoError);
  kiln::test::write_text(tmp / "garbage.pth", "not a weights file");
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "garbage.pth"),
                       contains((tmp / "garbage.pth").string()), FormatError);
  io::write_pth(tmp / "missing.pth", without(sd, "layer1.0.bn1.running_var"));
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "missing.pth"),
                       doctest::Contains("missing key layer1.0.bn1.running_var"), FormatError);
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "missing.pth"),
                       contains((tmp / "missing.pth").string() + ": "), FormatError);
  io::write_pth(tmp / "nofc.pth", without(sd, "fc.weight"));
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "nofc.pth"),
                       doctest::Contains("nofc.pth: fc.weight: expected a tensor of shape (classes, features)"),
                       FormatError);
  io::StateDict odd = {sd[0], sd[sd.size() - 2], sd.back()};  // conv1 and fc: no layer3 keys
  REQUIRE(odd[1].name == "fc.weight");
  io::write_pth(tmp / "odd.pth", odd);
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "odd.pth"),
                       doctest::Contains("resnet18, resnet34 or resnet50"), FormatError);
  io::write_pth(tmp / "r18.pth", sd);
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "r18.pth", models::LoadResNetOptions().arch("resnet19")),
                       doctest::Contains("one of resnet18, resnet34, resnet50"), InvalidArgument);
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "r18.pth", models::LoadResNetOptions().arch("resnet34")),
                       doctest::Contains("missing key layer1.2.conv1.weight"), FormatError);
  // Model directories: a missing config is IoError, a broken one FormatError naming the field.
  std::filesystem::create_directories(tmp / "empty");
  CHECK_THROWS_WITH_AS(models::load_resnet(tmp / "empty"), doctest::Contains("config.json"), IoError);
  CHECK_THROWS_WITH_AS(models::parse_model_config("{\"format\": 3}", "m/config.json"),
                       "m/config.json: field \"format\": expected a string, found 3", FormatError);
}
