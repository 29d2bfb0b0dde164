// torchvision's ResNet (see models/resnet.h). Blocks mirror torchvision.models.resnet:
// BasicBlock (two 3x3 convs) for resnet18/34, Bottleneck (1x1, 3x3 with the stride, 1x1 x4)
// for resnet50, a downsample (1x1 conv + BN, named "downsample.0/1") where shape changes.
// ReLUs after a BN are fused into it; the ReLU after the residual add is fused into the add.
#include "kiln/models/resnet.h"

#include <set>

#include "kiln/core/error.h"
#include "kiln/engine/ops.h"
#include "kiln/layers/init.h"

namespace kiln::models {

using layers::BatchNorm2d;
using layers::Conv2d;
using layers::Conv2dOptions;
using layers::Module;

namespace {

struct ArchSpec {
  const char* name;
  bool bottleneck;
  int blocks[4];
};
constexpr ArchSpec kArchs[] = {
    {"resnet18", false, {2, 2, 2, 2}},
    {"resnet34", false, {3, 4, 6, 3}},
    {"resnet50", true, {3, 4, 6, 3}},
};

const ArchSpec& find_arch(const std::string& name) {
  for (const auto& a : kArchs)
    if (name == a.name) return a;
  fail_argument("model architecture", "one of resnet18, resnet34, resnet50", "'" + name + "'");
}

// torchvision's convolutions carry no bias: the batch norm after each has one.
Conv2dOptions conv_options(int64_t in, int64_t out, int64_t kernel) {
  return Conv2dOptions(in, out, kernel).bias(false);
}

// nn.Sequential of a conv and a BN (the downsample path).
struct Downsample : Module {
  Conv2d conv;
  BatchNorm2d bn;
  Downsample(int64_t in, int64_t out, int64_t stride)
      : conv(conv_options(in, out, 1).stride(stride)), bn(out) {
    register_module("0", conv);
    register_module("1", bn);
  }
  const char* type_name() const override { return "Sequential"; }
};


// conv -> batch norm [-> + residual] [-> ReLU]: separate ops in training, one convolution with
// the batch norm folded in for inference (ops::conv2d_bn). The convs of a ResNet have no bias.
Tensor conv_bn(const Conv2d& conv, BatchNorm2d& bn, const Tensor& x, bool relu, const Tensor& residual = Tensor()) {
  KILN_ASSERT(!conv.bias.defined(), "conv_bn: a ResNet conv has no bias");
  if (bn.training()) ++bn.num_batches_tracked;
  return ops::conv2d_bn(x, conv.weight, conv.options.stride(), conv.options.padding(),
                        {bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.options.momentum(), bn.options.eps()}, bn.training(),
                        relu, residual);
}

}  // namespace

struct ResNet::Block : Module {
  bool bottleneck;
  int64_t stride;
  std::unique_ptr<Conv2d> conv1, conv2, conv3;
  std::unique_ptr<BatchNorm2d> bn1, bn2, bn3;
  std::unique_ptr<Downsample> downsample;

  Block(bool is_bottleneck, int64_t inplanes, int64_t planes, int64_t s)
      : bottleneck(is_bottleneck), stride(s) {
    int64_t expansion = bottleneck ? 4 : 1;
    if (bottleneck) {
      conv1 = std::make_unique<Conv2d>(conv_options(inplanes, planes, 1));
      bn1 = std::make_unique<BatchNorm2d>(planes);
      conv2 = std::make_unique<Conv2d>(conv_options(planes, planes, 3).stride(stride).padding(1));
      bn2 = std::make_unique<BatchNorm2d>(planes);
      conv3 = std::make_unique<Conv2d>(conv_options(planes, planes * expansion, 1));
      bn3 = std::make_unique<BatchNorm2d>(planes * expansion);
    } else {
      conv1 = std::make_unique<Conv2d>(conv_options(inplanes, planes, 3).stride(stride).padding(1));
      bn1 = std::make_unique<BatchNorm2d>(planes);
      conv2 = std::make_unique<Conv2d>(conv_options(planes, planes, 3).padding(1));
      bn2 = std::make_unique<BatchNorm2d>(planes);
    }
    register_module("conv1", *conv1);
    register_module("bn1", *bn1);
    register_module("conv2", *conv2);
    register_module("bn2", *bn2);
    if (bottleneck) {
      register_module("conv3", *conv3);
      register_module("bn3", *bn3);
    }
    if (stride != 1 || inplanes != planes * expansion) {
      downsample = std::make_unique<Downsample>(inplanes, planes * expansion, stride);
      register_module("downsample", *downsample);
    }
  }
  const char* type_name() const override { return bottleneck ? "Bottleneck" : "BasicBlock"; }

  Tensor forward(const Tensor& x) {
    Tensor out = conv_bn(*conv1, *bn1, x, /*relu=*/true);
    if (bottleneck) out = conv_bn(*conv2, *bn2, out, true);
    Tensor identity = downsample ? conv_bn(downsample->conv, downsample->bn, x, false) : x;
    return conv_bn(bottleneck ? *conv3 : *conv2, bottleneck ? *bn3 : *bn2, out, true, identity);
  }
};

namespace {
struct Stage : Module {
  std::vector<std::unique_ptr<ResNet::Block>> blocks;
  const char* type_name() const override { return "Sequential"; }
  void append(std::unique_ptr<ResNet::Block> block) {
    blocks.push_back(std::move(block));
    register_module(std::to_string(blocks.size() - 1), *blocks.back());
  }
};
}  // namespace

std::vector<std::string> known_archs() {
  std::vector<std::string> v;
  for (const auto& a : kArchs) v.emplace_back(a.name);
  return v;
}

std::string arch_of_weights(const io::StateDict& sd) {
  std::set<std::string> blocks;
  bool bottleneck = false;
  for (const auto& a : sd) {
    if (a.name.rfind("layer3.", 0) == 0) blocks.insert(a.name.substr(7, a.name.find('.', 7) - 7));
    if (a.name.find(".conv3.") != std::string::npos) bottleneck = true;
  }
  if (blocks.size() == 2 && !bottleneck) return "resnet18";
  if (blocks.size() == 6) return bottleneck ? "resnet50" : "resnet34";
  return {};
}

ResNet::ResNet(const ResNetConfig& cfg, uint64_t seed, bool init) : cfg_(cfg), seed_(seed) {
  const ArchSpec& arch = find_arch(cfg.arch);
  if (cfg.num_classes < 1)
    fail_argument("num_classes", "a positive number of classes", std::to_string(cfg.num_classes));
  conv1_ = std::make_unique<Conv2d>(conv_options(3, 64, 7).stride(2).padding(3));
  bn1_ = std::make_unique<BatchNorm2d>(64);
  register_module("conv1", *conv1_);
  register_module("bn1", *bn1_);
  int64_t inplanes = 64;
  int64_t expansion = arch.bottleneck ? 4 : 1;
  for (int s = 0; s < 4; ++s) {
    auto stage = std::make_unique<Stage>();
    int64_t planes = int64_t{64} << s;
    for (int b = 0; b < arch.blocks[s]; ++b) {
      int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      stage->append(std::make_unique<Block>(arch.bottleneck, inplanes, planes, stride));
      inplanes = planes * expansion;
    }
    register_module("layer" + std::to_string(s + 1), *stage);
    stages_.push_back(std::move(stage));
  }
  fc_ = std::make_unique<layers::Linear>(layers::LinearOptions(512 * expansion, cfg.num_classes));
  register_module("fc", *fc_);

  // Name every tensor after its state-dict key (error messages, gradients).
  for (auto& [name, t] : named_parameters()) Tensor(t).set_name(name);
  for (auto& [name, t] : named_buffers()) Tensor(t).set_name(name);

  if (!init) return;
  // torchvision: kaiming_normal_(fan_out, relu) for convs, BN weight 1 / bias 0 (the
  // BatchNorm2d defaults), nn.Linear's own default for fc.
  layers::Rng rng(seed);
  layers::Rng conv_rng = rng.fork(1);
  for (auto& [name, t] : named_parameters())
    if (t.shape().size() == 4) layers::kaiming_normal_fan_out(t, conv_rng);
  layers::Rng fc_rng = rng.fork(2);
  fc_->reset_parameters(fc_rng);
}

ResNet::~ResNet() = default;

Tensor ResNet::forward(const Tensor& x) {
  if (x.shape().size() != 4 || x.dim(1) != 3)
    fail_argument("ResNet input", "(N, 3, H, W) float32", io::shape_str(x.shape()));
  Tensor out = conv_bn(*conv1_, *bn1_, x, /*relu=*/true);
  out = ops::max_pool2d(out, 3, 2, 1);
  for (auto& stage : stages_)
    for (auto& block : static_cast<Stage&>(*stage).blocks) out = block->forward(out);
  out = ops::flatten(ops::adaptive_avg_pool2d_1x1(out));
  return fc_->forward(out);
}

std::string ResNet::load_state_dict(const io::StateDict& sd, bool allow_head_reinit) {
  layers::StateDictMismatch mm = check_state_dict(sd);
  if (mm.empty()) {
    load_state_dict_except(sd, {});
    return {};
  }
  bool only_head = mm.missing.empty() && mm.unexpected.empty();
  for (const auto& key : mm.wrong_shape_keys)
    if (key != "fc.weight" && key != "fc.bias") only_head = false;
  if (!only_head || !allow_head_reinit) {
    std::string hint = only_head
        ? "only the fc head differs: pass --num-classes to re-initialise it"
        : "check --arch (" + cfg_.arch + ") and --num-classes (" +
              std::to_string(cfg_.num_classes) + ") against the weights file";
    throw FormatError("weights do not fit " + cfg_.arch + " with " +
                          std::to_string(cfg_.num_classes) + " classes:" + mm.message(),
                      hint);
  }
  load_state_dict_except(sd, {"fc.weight", "fc.bias"});
  layers::Rng fc_rng = layers::Rng(seed_).fork(2);
  fc_->reset_parameters(fc_rng);
  int64_t file_classes = -1;
  for (const auto& arr : sd)
    if (arr.name == "fc.weight" && !arr.shape.empty()) file_classes = arr.shape[0];
  return "fc: the weights have " + std::to_string(file_classes) + " classes, the model " +
         std::to_string(cfg_.num_classes) + ": fc re-initialised like nn.Linear (seed " +
         std::to_string(seed_) + ")";
}

std::vector<ResNet::LayerInfo> ResNet::summary(int64_t image_size) {
  std::vector<LayerInfo> out;
  auto conv_out = [](int64_t s, const Conv2d& c) {
    const Conv2dOptions& o = c.options;
    return (s + 2 * o.padding() - o.kernel_size()) / o.stride() + 1;
  };
  int64_t s = image_size;
  auto add = [&](const std::string& name, const std::string& type, int64_t c, int64_t hw,
                 int64_t params) {
    out.push_back({name, type, {1, c, hw, hw}, params});
  };
  s = conv_out(s, *conv1_);
  add("conv1", "Conv2d", 64, s, conv1_->num_parameters());
  add("bn1", "BatchNorm2d", 64, s, bn1_->num_parameters());
  add("relu", "ReLU", 64, s, 0);
  s = (s + 2 - 3) / 2 + 1;
  add("maxpool", "MaxPool2d", 64, s, 0);
  int64_t c = 64;
  for (size_t i = 0; i < stages_.size(); ++i) {
    auto& stage = static_cast<Stage&>(*stages_[i]);
    std::string sname = "layer" + std::to_string(i + 1);
    size_t stage_row = out.size();
    add(sname, "Sequential", 0, 0, stage.num_parameters());
    for (size_t b = 0; b < stage.blocks.size(); ++b) {
      Block& blk = *stage.blocks[b];
      std::string bname = sname + "." + std::to_string(b);
      size_t block_row = out.size();
      add(bname, blk.type_name(), 0, 0, blk.num_parameters());
      int64_t hw = s;
      std::vector<std::pair<Conv2d*, BatchNorm2d*>> pairs = {{blk.conv1.get(), blk.bn1.get()},
                                                             {blk.conv2.get(), blk.bn2.get()}};
      if (blk.bottleneck) pairs.emplace_back(blk.conv3.get(), blk.bn3.get());
      for (size_t k = 0; k < pairs.size(); ++k) {
        hw = conv_out(hw, *pairs[k].first);
        std::string n = std::to_string(k + 1);
        add(bname + ".conv" + n, "Conv2d", pairs[k].first->options.out_channels(), hw,
            pairs[k].first->num_parameters());
        add(bname + ".bn" + n, "BatchNorm2d", pairs[k].first->options.out_channels(), hw,
            pairs[k].second->num_parameters());
      }
      c = pairs.back().first->options.out_channels();
      add(bname + ".relu", "ReLU", c, hw, 0);
      if (blk.downsample) {
        add(bname + ".downsample", "Sequential", c, hw, blk.downsample->num_parameters());
        add(bname + ".downsample.0", "Conv2d", c, hw, blk.downsample->conv.num_parameters());
        add(bname + ".downsample.1", "BatchNorm2d", c, hw, blk.downsample->bn.num_parameters());
      }
      s = hw;
      out[block_row].out_shape = {1, c, s, s};
    }
    out[stage_row].out_shape = {1, c, s, s};
  }
  add("avgpool", "AdaptiveAvgPool2d", c, 1, 0);
  out.push_back({"fc", "Linear", {1, cfg_.num_classes}, fc_->num_parameters()});
  return out;
}

}  // namespace kiln::models
