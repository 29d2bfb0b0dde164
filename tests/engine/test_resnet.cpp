// ResNet structure and weights handling: torchvision's parameter counts, key names and order,
// strict loading with errors that name the key and both shapes, fc head re-initialisation,
// bit-exact state_dict round trips (running stats and num_batches_tracked included), and
// deterministic training steps.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/classifier.h"

using namespace kiln;

TEST_CASE("parameter counts and state_dict keys match torchvision") {
  models::ResNet r34({"resnet34", 100}, 0);
  CHECK(r34.num_parameters() == 21335972);
  models::ResNet r18({"resnet18", 1000}, 0);
  CHECK(r18.num_parameters() == 11689512);
  models::ResNet r50({"resnet50", 1000}, 0);
  CHECK(r50.num_parameters() == 25557032);
  auto sd = r18.state_dict();
  REQUIRE(sd.size() == 122);
  CHECK(sd[0].name == "conv1.weight");
  CHECK(sd[1].name == "bn1.weight");
  CHECK(sd[4].name == "bn1.running_var");
  CHECK(sd[5].name == "bn1.num_batches_tracked");
  CHECK(sd[5].dtype == io::DType::i64);
  CHECK(sd[6].name == "layer1.0.conv1.weight");
  CHECK(sd[sd.size() - 2].name == "fc.weight");
  CHECK(sd.back().name == "fc.bias");
  bool has_downsample = false;
  for (const auto& a : sd) has_downsample |= a.name == "layer2.0.downsample.1.running_mean";
  CHECK(has_downsample);
  auto sd50 = r50.state_dict();
  CHECK(sd50.size() == 320);
  CHECK(sd50[6 + 12].name == "layer1.0.conv3.weight");
  CHECK_THROWS_AS(models::ResNet({"resnet19", 10}, 0), kiln::Error);
}

TEST_CASE("initialisation: kaiming fan_out convs, BN 1/0, seeded and reproducible") {
  models::ResNet a({"resnet18", 10}, 7), b({"resnet18", 10}, 7), c({"resnet18", 10}, 8);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  CHECK(pa[0].second.to_plain_vector() == pb[0].second.to_plain_vector());
  CHECK(pa[0].second.to_plain_vector() != pc[0].second.to_plain_vector());
  // layer4.1.conv2: 512*3*3 fan_out -> std sqrt(2/4608)
  for (auto& [name, t] : pa) {
    if (name != "layer4.1.conv2.weight") continue;
    auto v = t.to_plain_vector();
    double s2 = 0;
    for (float x : v) s2 += static_cast<double>(x) * x;
    CHECK(std::sqrt(s2 / static_cast<double>(v.size())) == doctest::Approx(std::sqrt(2.0 / 4608)).epsilon(0.01));
  }
  CHECK(pa[1].first == "bn1.weight");
  CHECK(pa[1].second.to_plain_vector() == std::vector<float>(64, 1.0f));
  CHECK(pa[2].second.to_plain_vector() == std::vector<float>(64, 0.0f));
}

TEST_CASE("strict load: errors name keys and shapes; fc head re-initialised on request") {
  models::ResNet src({"resnet18", 1000}, 1);
  io::StateDict sd = src.state_dict();
  models::ResNet dst({"resnet18", 100}, 2);
  try {
    dst.load_state_dict(sd);
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("fc.weight: expected (100, 512), found (1000, 512)") !=
          std::string::npos);
  }
  std::string note = dst.load_state_dict(sd, /*allow_head_reinit=*/true);
  CHECK(note.find("re-initialised") != std::string::npos);
  CHECK(dst.named_parameters()[0].second.to_plain_vector() ==
        src.named_parameters()[0].second.to_plain_vector());

  io::StateDict missing = sd;
  missing.erase(missing.begin() + 3);  // bn1.running_mean
  CHECK_THROWS_WITH_AS(src.load_state_dict(missing),
                       doctest::Contains("missing key bn1.running_mean (expected (64"), kiln::Error);
  io::StateDict extra = sd;
  extra.push_back(sd[0]);
  extra.back().name = "head.weight";
  CHECK_THROWS_WITH_AS(src.load_state_dict(extra, true), doctest::Contains("unexpected key head.weight"),
                       kiln::Error);
  io::StateDict narrow = sd;
  narrow[6].shape = {64, 64, 3, 1};
  CHECK_THROWS_WITH_AS(src.load_state_dict(narrow, true),
                       doctest::Contains("layer1.0.conv1.weight: expected (64, 64, 3, 3), found (64, 64, 3, 1)"),
                       kiln::Error);
}

TEST_CASE("training is deterministic and state_dict round-trips bit-exactly") {
  const int64_t n = 2;
  std::vector<float> img(static_cast<size_t>(n * 3 * 32 * 32));
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<float>(i % 13) * 0.1f - 0.6f;
  std::vector<int64_t> labels{2, 7};
  models::Classifier a({"resnet18", 10}, 3, {0.01, 0.9, 5e-4});
  models::Classifier b({"resnet18", 10}, 3, {0.01, 0.9, 5e-4});
  for (int i = 0; i < 2; ++i) {
    auto ra = a.train_step(img.data(), labels.data(), n);
    auto rb = b.train_step(img.data(), labels.data(), n);
    CHECK(ra.loss == rb.loss);
  }
  io::StateDict sa = a.net().state_dict();
  CHECK(sa[5].name == "bn1.num_batches_tracked");
  int64_t tracked = 0;
  std::memcpy(&tracked, sa[5].bytes.data(), 8);
  CHECK(tracked == 2);

  // Resume into a fresh classifier: weights, running stats, counters and momentum.
  models::Classifier c({"resnet18", 10}, 99, {0.01, 0.9, 5e-4});
  c.net().load_state_dict(sa);
  c.optimizer().load_state_dict(a.optimizer().state_dict());
  auto sc = c.net().state_dict();
  REQUIRE(sc.size() == sa.size());
  for (size_t i = 0; i < sa.size(); ++i) CHECK_MESSAGE(sc[i].bytes == sa[i].bytes, sa[i].name);
  auto ra = a.train_step(img.data(), labels.data(), n);
  auto rc = c.train_step(img.data(), labels.data(), n);
  CHECK(ra.loss == rc.loss);
  auto sa2 = a.net().state_dict(), sc2 = c.net().state_dict();
  for (size_t i = 0; i < sa2.size(); ++i) CHECK_MESSAGE(sc2[i].bytes == sa2[i].bytes, sa2[i].name);

  // Eval/predict: no tape, same answer twice, log-probabilities normalised.
  std::vector<float> lp(static_cast<size_t>(n * 10)), lp2(lp.size());
  a.predict_log_probs(img.data(), n, lp.data());
  a.predict_log_probs(img.data(), n, lp2.data());
  CHECK(lp == lp2);
  double s = 0;
  for (int k = 0; k < 10; ++k) s += std::exp(static_cast<double>(lp[static_cast<size_t>(k)]));
  CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
  auto ev = a.evaluate(img.data(), labels.data(), n);
  CHECK(ev.count == n);
}

TEST_CASE("summary lists torchvision's modules with output shapes") {
  models::ResNet r({"resnet34", 100}, 0);
  auto rows = r.summary(32);
  CHECK(rows.front().name == "conv1");
  CHECK(rows.front().out_shape == std::vector<int64_t>{1, 64, 16, 16});
  int64_t total = 0;
  for (const auto& row : rows)
    if (row.name.find('.') == std::string::npos) total += row.params;
  CHECK(total == 21335972);
  CHECK(rows.back().name == "fc");
  for (const auto& row : rows)
    if (row.name == "layer4") CHECK(row.out_shape == std::vector<int64_t>{1, 512, 1, 1});
}
