// The model directory (see model_dir.h). config.json is written with sorted keys by nlohmann;
// readers accept any key order and ignore unknown keys so later versions can add fields.
#include "kiln/models/model_dir.h"

#include <nlohmann/json.hpp>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/io/weights.h"

namespace kiln::models {

namespace fs = std::filesystem;
using nlohmann::json;

std::string model_config_to_json(const ModelConfig& cfg) {
  json j;
  j["format"] = "kiln-model";
  j["version"] = 1;
  j["arch"] = cfg.arch;
  j["num_classes"] = cfg.num_classes;
  j["class_names"] = cfg.class_names;
  j["mean"] = cfg.mean;
  j["std"] = cfg.std;
  j["image_size"] = cfg.image_size;
  j["dataset"] = cfg.dataset;
  return j.dump(2) + "\n";
}

namespace {

const json& field(const json& j, const char* name, const std::string& what) {
  auto it = j.find(name);
  if (it == j.end())
    fail_format(what + ": field \"" + name + "\"", "present", "missing",
         "write the model directory with `kiln train --model-dir`");
  return *it;
}

std::string string_field(const json& j, const char* name, const std::string& what) {
  const json& v = field(j, name, what);
  if (!v.is_string()) fail_format(what + ": field \"" + name + "\"", "a string", v.dump());
  return v.get<std::string>();
}

int64_t int_field(const json& j, const char* name, const std::string& what, int64_t lo, int64_t hi) {
  const json& v = field(j, name, what);
  if (!v.is_number_integer())
    fail_format(what + ": field \"" + name + "\"", "an integer", v.dump());
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    fail_format(what + ": field \"" + name + "\"",
         "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", v.dump());
  return x;
}

std::array<float, 3> triple_field(const json& j, const char* name, const std::string& what) {
  const json& v = field(j, name, what);
  if (!v.is_array() || v.size() != 3)
    fail_format(what + ": field \"" + name + "\"", "an array of 3 numbers", v.dump());
  std::array<float, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    if (!v[i].is_number())
      fail_format(what + ": field \"" + name + "\"", "an array of 3 numbers", v.dump());
    out[i] = v[i].get<float>();
  }
  return out;
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 7E9433 (found by fuzz_model_config)
    fail_format(what, "valid JSON", std::string("a parse error: ") + e.what());
  }
  if (!j.is_object()) fail_format(what, "a JSON object", j.dump().substr(0, 60));
  ModelConfig cfg;
  if (string_field(j, "format", what) != "kiln-model")
    fail_format(what + ": field \"format\"", "\"kiln-model\"", j["format"].dump());
  int_field(j, "version", what, 1, 1);
  cfg.arch = string_field(j, "arch", what);
  cfg.num_classes = int_field(j, "num_classes", what, 1, 1000000);
  const json& names = field(j, "class_names", what);
  if (!names.is_array())
    fail_format(what + ": field \"class_names\"", "an array of strings", names.dump());
  for (const auto& n : names) {
    if (!n.is_string())
      fail_format(what + ": field \"class_names\"", "an array of strings", n.dump());
    cfg.class_names.push_back(n.get<std::string>());
  }
  if (static_cast<int64_t>(cfg.class_names.size()) != cfg.num_classes)
    fail_format(what + ": field \"class_names\"",
                std::to_string(cfg.num_classes) + " names (num_classes)",
                std::to_string(cfg.class_names.size()));
  cfg.mean = triple_field(j, "mean", what);
  cfg.std = triple_field(j, "std", what);
  for (float s : cfg.std)
    if (!(s > 0))
      fail_format(what + ": field \"std\"", "positive numbers", field(j, "std", what).dump());
  cfg.image_size = int_field(j, "image_size", what, 1, 65536);
  cfg.dataset = string_field(j, "dataset", what);
  return cfg;
}

LoadedModel load_model_dir(const fs::path& dir) {
  if (!fs::is_directory(dir))
    fail_io("model directory " + dir.string(), "a directory", fs::exists(dir) ? "a file" : "nothing",
         "train one with `kiln train --model-dir " + dir.string() + "`");
  fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path))
    fail_io("model directory " + dir.string(), "config.json", "no config.json",
         "a kiln model directory holds config.json plus model.safetensors or model.pth");
  LoadedModel m;
  m.config = parse_model_config(read_file(config_path), config_path.string());
  if (fs::exists(dir / "model.safetensors")) {
    m.weights_file = dir / "model.safetensors";
    m.weights = io::read_safetensors(m.weights_file);
  } else if (fs::exists(dir / "model.pth")) {
    m.weights_file = dir / "model.pth";
    m.weights = io::read_pth(m.weights_file);
  } else {
    fail_io("model directory " + dir.string(), "model.safetensors or model.pth", "neither");
  }
  for (const auto& a : m.weights) {
    if (a.name == "fc.weight" && (a.shape.size() != 2 || a.shape[0] != m.config.num_classes))
      fail_format(m.weights_file.string() + ": fc.weight",
           "shape (" + std::to_string(m.config.num_classes) + ", ...) as config.json's num_classes",
           io::shape_str(a.shape));
  }
  return m;
}

void write_model_dir(const fs::path& dir, const ModelConfig& cfg, const io::StateDict& weights) {
  KILN_ASSERT(static_cast<int64_t>(cfg.class_names.size()) == cfg.num_classes,
              "class_names must have num_classes entries");
  fs::create_directories(dir);
  io::write_safetensors(dir / "model.safetensors", weights,
                        {{"format", "pt"}, {"arch", cfg.arch}});
  io::write_pth(dir / "model.pth", weights);
  // config.json last: a directory with a config has its weights.
  write_file_atomic(dir / "config.json", model_config_to_json(cfg));
}

}  // namespace kiln::models
