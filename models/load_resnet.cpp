// models::load_resnet (see model_dir.h): a ResNet built without random initialisation and
// loaded from a weights file or a model directory in one call. Apart from model_dir.cpp so that
// the config.json reader (and its fuzz harness) does not need the engine.
#include <cerrno>
#include <cstring>
#include <fstream>

#include "kiln/core/error.h"
#include "kiln/io/weights.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"

namespace kiln::models {

namespace fs = std::filesystem;

namespace {

// A weights file read whole: the path is checked first, so what the reader then refuses is the
// file's contents (FormatError), not its absence (IoError).
io::StateDict read_weights_file(const fs::path& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe)
    fail_io(path.string(), "a readable weights file (.pth or .safetensors) or model directory",
            std::strerror(errno));
  try {
    return io::read_weights(path);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    throw FormatError(e.what(), e.hint());
  }
}

std::vector<std::string> numbered_classes(int64_t n) {
  std::vector<std::string> names;
  for (int64_t c = 0; c < n; ++c) names.push_back(std::to_string(c));
  return names;
}

}  // namespace

LoadedResNet load_resnet(const fs::path& path, const LoadResNetOptions& opt) {
  LoadedResNet out;
  io::StateDict weights;
  if (fs::is_directory(path)) {
    LoadedModel m = load_model_dir(path);
    out.config = std::move(m.config);
    out.weights_file = std::move(m.weights_file);
    weights = std::move(m.weights);
  } else {
    out.weights_file = path;
    weights = read_weights_file(path);
    out.config.arch = arch_of_weights(weights);
    out.config.num_classes = -1;
    for (const auto& a : weights)
      if (a.name == "fc.weight" && a.shape.size() == 2) out.config.num_classes = a.shape[0];
    if (out.config.num_classes < 1)
      fail_format(path.string() + ": fc.weight", "a tensor of shape (classes, features)", "none",
                  "are these torchvision ResNet weights?");
    out.config.class_names = numbered_classes(out.config.num_classes);
  }
  if (!opt.arch().empty()) out.config.arch = opt.arch();
  if (out.config.arch.empty())
    fail_format(path.string(), "the keys of torchvision's resnet18, resnet34 or resnet50",
                "keys that fit none of them (layer3.*)", "set LoadResNetOptions().arch(...)");
  if (opt.num_classes() > 0 && opt.num_classes() != out.config.num_classes) {
    out.config.num_classes = opt.num_classes();
    out.config.class_names = numbered_classes(opt.num_classes());
  }
  out.net = std::make_unique<ResNet>(ResNetConfig{out.config.arch, out.config.num_classes},
                                     opt.seed(), /*init=*/false);
  try {
    out.note = out.net->load_state_dict(weights, opt.reinit_head());
  } catch (const Error& e) {  // name the file: the message names the tensors
    std::string hint;
    if (!opt.arch().empty() || opt.num_classes() > 0)
      hint = "check the arch and num_classes asked for against the weights (a different "
             "num_classes needs reinit_head(true); kiln predict: --num-classes)";
    else if (fs::is_directory(path))
      hint = "config.json's arch and num_classes must fit the weights beside it";
    else
      hint = "the file must hold every tensor of torchvision's " + out.config.arch +
             " state_dict: none is left at a random value";
    throw FormatError(out.weights_file.string() + ": " + e.what(), hint);
  }
  return out;
}


}  // namespace kiln::models
