// The model directory (config.json + model.safetensors + model.pth) and training checkpoints:
// round trips, the fallback to model.pth, clear errors for what is missing or malformed, and the
// newest-checkpoint search with old ones pruned.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "kiln/core/error.h"
#include "kiln/io/pth.h"
#include "tests/support/support.h"
#include "kiln/train/checkpoint.h"
#include "kiln/models/model_dir.h"

using namespace kiln::train;
using namespace kiln::models;
namespace fs = std::filesystem;

static kiln::io::NamedArray arr(const std::string& name, std::vector<int64_t> shape, float base) {
  kiln::io::NamedArray a;
  a.name = name;
  a.shape = std::move(shape);
  a.bytes.resize(static_cast<size_t>(a.numel()) * 4);
  for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = base + static_cast<float>(i);
  return a;
}

static ModelConfig small_config() {
  ModelConfig c;
  c.arch = "resnet18";
  c.num_classes = 3;
  c.class_names = {"apple", "bee", "cat"};
  c.dataset = "synthetic";
  return c;
}

TEST_CASE("model dir: write then load gives the same config and weights") {
  kiln::test::TempDir tmp("modeldir");
  kiln::io::StateDict w = {arr("conv1.weight", {2, 3}, 1), arr("fc.weight", {3, 4}, 5)};
  write_model_dir(tmp.path / "m", small_config(), w);
  CHECK(fs::exists(tmp.path / "m" / "model.pth"));
  LoadedModel m = load_model_dir(tmp.path / "m");
  CHECK(m.config.arch == "resnet18");
  CHECK(m.config.class_names[2] == "cat");
  CHECK(m.config.dataset == "synthetic");
  CHECK(m.config.mean[0] == doctest::Approx(0.507f));
  CHECK(m.weights_file.filename() == "model.safetensors");
  REQUIRE(m.weights.size() == 2);
  CHECK(m.weights[1].name == "fc.weight");
  CHECK(m.weights[1].bytes == w[1].bytes);

  fs::remove(tmp.path / "m" / "model.safetensors");
  m = load_model_dir(tmp.path / "m");
  CHECK(m.weights_file.filename() == "model.pth");
  CHECK(m.weights[0].bytes == w[0].bytes);

  fs::remove(tmp.path / "m" / "model.pth");
  CHECK_THROWS_WITH(load_model_dir(tmp.path / "m"), doctest::Contains("model.safetensors or model.pth"));
  fs::remove(tmp.path / "m" / "config.json");
  CHECK_THROWS_WITH(load_model_dir(tmp.path / "m"), doctest::Contains("config.json"));
  CHECK_THROWS_WITH(load_model_dir(tmp.path / "nothing"), doctest::Contains("a directory"));
}

TEST_CASE("model dir: fc.weight must agree with num_classes") {
  kiln::test::TempDir tmp("modeldir");
  kiln::io::StateDict w = {arr("fc.weight", {5, 4}, 0)};
  write_model_dir(tmp.path, small_config(), w);
  CHECK_THROWS_WITH(load_model_dir(tmp.path), doctest::Contains("num_classes"));
}

TEST_CASE("config.json: each malformed field is named") {
  std::string good = model_config_to_json(small_config());
  CHECK(parse_model_config(good, "c").num_classes == 3);
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  CHECK_THROWS_WITH(parse_model_config(bad("\"num_classes\": 3", "\"num_classes\": 4"), "c"),
                    doctest::Contains("class_names"));
  CHECK_THROWS_WITH(parse_model_config(bad("\"kiln-model\"", "\"other\""), "c"), doctest::Contains("format"));
  CHECK_THROWS_WITH(parse_model_config(bad("\"version\": 1", "\"version\": 2"), "c"), doctest::Contains("version"));
  CHECK_THROWS_WITH(parse_model_config(bad("\"image_size\": 32", "\"image_size\": \"32\""), "c"),
                    doctest::Contains("image_size"));
  CHECK_THROWS_WITH(parse_model_config("{", "c"), doctest::Contains("valid JSON"));
}

TEST_CASE("checkpoints: round trip of tensors and loop state, newest found, old ones pruned") {
  kiln::test::TempDir tmp("ckpt");
  CHECK_FALSE(find_latest_checkpoint(tmp.path / "none").has_value());
  Checkpoint c;
  c.model = {arr("conv1.weight", {2, 2}, 1)};
  kiln::io::NamedArray counter;
  counter.name = "bn1.num_batches_tracked";
  counter.dtype = kiln::io::DType::i64;
  counter.bytes.resize(8);
  int64_t seven = 7;
  std::memcpy(counter.bytes.data(), &seven, 8);
  c.model.push_back(counter);
  c.optimizer = {arr("conv1.weight.momentum_buffer", {2, 2}, 9)};
  c.state.epoch = 1;
  c.state.position = 3;
  c.state.loader_seed = 42;
  c.state.epoch_loss_sum = 0.1 + 0.2;  // not exactly representable in decimal
  c.state.epoch_correct = 17;
  c.state.epoch_count = 96;
  c.state.settings["batch-size"] = "32";
  for (int64_t step : {5, 12, 30}) {
    c.state.global_step = step;
    write_checkpoint(tmp.path, c, 2);
  }
  auto latest = find_latest_checkpoint(tmp.path);
  REQUIRE(latest.has_value());
  CHECK(latest->filename() == "checkpoint-0000000030.safetensors");
  CHECK_FALSE(fs::exists(tmp.path / "checkpoint-0000000005.safetensors"));
  CHECK(fs::exists(tmp.path / "checkpoint-0000000012.safetensors"));
  Checkpoint r = read_checkpoint(*latest);
  CHECK(r.state.global_step == 30);
  CHECK(r.state.position == 3);
  CHECK(r.state.loader_seed == 42);
  CHECK(r.state.epoch_loss_sum == 0.1 + 0.2);
  CHECK(std::isinf(r.state.best_val_loss));
  CHECK(r.state.settings.at("batch-size") == "32");
  REQUIRE(r.model.size() == 2);
  CHECK(r.model[0].name == "conv1.weight");
  CHECK(r.model[1].dtype == kiln::io::DType::i64);
  CHECK(r.optimizer[0].name == "conv1.weight.momentum_buffer");
  CHECK(r.optimizer[0].bytes == c.optimizer[0].bytes);
}
