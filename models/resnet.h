// torchvision's ResNet18/34/50: same structure, parameter names, state_dict order and
// initialisation (kaiming_normal fan_out for convs, BN weight 1 / bias 0, nn.Linear's default
// for fc), seeded. forward() takes plain NCHW fp32 and returns plain (N, num_classes) logits;
// in between, activations stay in the convolutions' blocked layout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/engine/tensor.h"
#include "kiln/io/array.h"
#include "kiln/layers/batch_norm.h"
#include "kiln/layers/conv2d.h"
#include "kiln/layers/linear.h"
#include "kiln/layers/module.h"

namespace kiln::models {

struct ResNetConfig {
  std::string arch = "resnet34";  // resnet18 | resnet34 | resnet50
  int64_t num_classes = 100;
};

std::vector<std::string> known_archs();

// The architecture torchvision weights were saved from, told by their keys (resnet18 has
// layer3.0-1, resnet34 layer3.0-5 with BasicBlocks, resnet50 layer3.0-5 with Bottlenecks);
// "" when the keys fit none. To build a model and load weights in one call, see
// models::load_resnet (models/model_dir.h).
std::string arch_of_weights(const io::StateDict& sd);

class ResNet : public layers::Module {
 public:
  // Throws kiln::Error on an unknown arch. init=false skips torchvision's random initialisation
  // (conv weights stay zero) for callers that load every weight next (serving).
  ResNet(const ResNetConfig& cfg, uint64_t seed, bool init = true);
  ~ResNet() override;
  const char* type_name() const override { return "ResNet"; }

  Tensor forward(const Tensor& x);  // x (N,3,H,W) plain fp32 -> logits (N,classes) plain

  // Strict: missing/unexpected keys and shape mismatches throw kiln::Error naming them. If
  // allow_head_reinit and only fc.* shapes differ (1000 -> 100 classes), fc is re-initialised
  // like nn.Linear (with this model's seed) and a note is returned for the caller to print on
  // stderr; otherwise the returned string is empty.
  std::string load_state_dict(const io::StateDict& sd, bool allow_head_reinit = false);

  int64_t num_classes() const { return cfg_.num_classes; }
  const ResNetConfig& config() const { return cfg_; }

  struct LayerInfo {
    std::string name, type;
    std::vector<int64_t> out_shape;
    int64_t params;
  };
  // Every module (depth-first, torch names) with its output shape for a (1,3,S,S) input.
  std::vector<LayerInfo> summary(int64_t image_size = 32);

  struct Block;  // BasicBlock or Bottleneck (models/resnet.cpp)

 private:
  ResNetConfig cfg_;
  uint64_t seed_;
  std::unique_ptr<layers::Conv2d> conv1_;
  std::unique_ptr<layers::BatchNorm2d> bn1_;
  std::vector<std::unique_ptr<Module>> stages_;  // layer1..layer4 (Sequential of blocks)
  std::unique_ptr<layers::Linear> fc_;
};

}  // namespace kiln::models
