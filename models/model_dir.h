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
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/io/array.h"
#include "kiln/models/resnet.h"

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

// What load_resnet may be told, libtorch-style: LoadResNetOptions().num_classes(100).reinit_head(true).
// By default everything comes from the weights.
class LoadResNetOptions {
 public:
  // "": config.json's, or told by the weights' keys (arch_of_weights)
  LoadResNetOptions& arch(std::string v) { arch_ = std::move(v); return *this; }
  // 0: the weights' own (fc.weight's rows)
  LoadResNetOptions& num_classes(int64_t v) { num_classes_ = v; return *this; }
  // When num_classes differs from the weights': re-initialise fc like nn.Linear (seeded) and say
  // so in the note, as the reference does with ImageNet weights; otherwise that is an error.
  LoadResNetOptions& reinit_head(bool v) { reinit_head_ = v; return *this; }
  LoadResNetOptions& seed(uint64_t v) { seed_ = v; return *this; }  // the re-initialised head's

  const std::string& arch() const { return arch_; }
  int64_t num_classes() const { return num_classes_; }
  bool reinit_head() const { return reinit_head_; }
  uint64_t seed() const { return seed_; }

 private:
  std::string arch_;
  int64_t num_classes_ = 0;
  bool reinit_head_ = false;
  uint64_t seed_ = 0;
};

struct LoadedResNet {
  std::unique_ptr<ResNet> net;  // in training mode, as a new module is; call net->eval() to infer
  // A model directory's config.json; for a weights file: its arch and num_classes, classes
  // named "0".."K-1" and CIFAR-100's normalization.
  ModelConfig config;
  std::filesystem::path weights_file;  // the file the weights came from
  std::string note;                    // non-empty when fc was re-initialised: print it
};

// A ResNet built without random initialisation and loaded with the weights at `path`, in one
// call. `path` is a kiln model directory (config.json + model.safetensors or model.pth) or a
// weights file (a torch.save .pth or .safetensors, told apart by content). Throws
// kiln::IoError naming the path when it cannot be read, kiln::FormatError naming the file and
// the tensor when the contents are not ResNet weights or do not fit, kiln::InvalidArgument
// for an unknown arch.
LoadedResNet load_resnet(const std::filesystem::path& path, const LoadResNetOptions& options = {});

// Creates dir if needed and writes config.json, model.safetensors and model.pth, each atomically.
void write_model_dir(const std::filesystem::path& dir, const ModelConfig& cfg,
                     const io::StateDict& weights);

}  // namespace kiln::models
