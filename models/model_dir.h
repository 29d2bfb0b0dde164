// The model directory: what `kiln train` writes to --model-dir (and SageMaker tars into
// model.tar.gz), and what `kiln eval`, `kiln serve` and `kiln predict --model-dir` read.
// Layout: config.json (required), model.safetensors (preferred) and model.pth (torch.save
// format, loadable by torchvision). Weights use torchvision's keys, fp32, C order.
// It lives with the models, not with training: serving and evaluation read it without
// linking the training library.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/io/array.h"

namespace kiln::models {

struct ModelConfig {
  std::string arch = "resnet34";
  int64_t num_classes = 100;
  std::vector<std::string> class_names;  // num_classes entries
  std::array<float, 3> mean{0.507f, 0.487f, 0.441f};
  std::array<float, 3> std{0.267f, 0.256f, 0.276f};
  int64_t image_size = 32;
  std::string dataset = "cifar100";  // "cifar100" | "synthetic"
};

struct LoadedModel {
  ModelConfig config;
  io::StateDict weights;
  std::filesystem::path weights_file;  // the file the weights came from
};

// config.json <-> ModelConfig. Parsing checks every field (type and range) and names the file
// and field on error; `what` labels the source in messages.
std::string model_config_to_json(const ModelConfig& cfg);
ModelConfig parse_model_config(const std::string& text, const std::string& what);

// Reads config.json and model.safetensors (or, when absent, model.pth).
LoadedModel load_model_dir(const std::filesystem::path& dir);

// Creates dir if needed and writes config.json, model.safetensors and model.pth, each atomically.
void write_model_dir(const std::filesystem::path& dir, const ModelConfig& cfg,
                     const io::StateDict& weights);

}  // namespace kiln::models
