// ResNet -> ONNX graph (see models/onnx.h). The graph follows ResNet::forward: it walks the
// module tree (conv1, bn1, layer1..4 of BasicBlock/Bottleneck, fc) and reads each layer's
// options, so strides and paddings are the model's own; the max-pool (3, stride 2, padding 1)
// has no module and is torchvision's, as in ResNet::forward. Values flow through names equal
// to the node names ("layer1.0.conv1"), never equal to an initializer's ("...conv1.weight").
#include "kiln/models/onnx.h"

#include <array>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <map>

#include "kiln/core/error.h"
#include "kiln/layers/batch_norm.h"
#include "kiln/layers/conv2d.h"
#include "kiln/layers/linear.h"

namespace kiln::models {
namespace {

using layers::BatchNorm2d;
using layers::Conv2d;
using layers::Module;
using Ints = std::vector<int64_t>;

const Module& child(const Module& m, const std::string& name, const std::string& path) {
  for (const auto& [n, c] : m.children())
    if (n == name) return *c;
  fail("ONNX export: module " + path + name, "a module there (torchvision's ResNet layout)", "none");
}

template <class T>
const T& child_as(const Module& m, const std::string& name, const std::string& path) {
  const Module& c = child(m, name, path);
  const T* t = dynamic_cast<const T*>(&c);
  if (!t) fail("ONNX export: module " + path + name, "a layer of the ResNet layout", c.type_name());
  return *t;
}

bool has_child(const Module& m, const std::string& name) {
  for (const auto& [n, c] : m.children())
    if (n == name) return true;
  return false;
}

// Shortest text that reads back as the same float ("0.507", not "0.507000029").
std::string float_text(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string json_floats(const std::array<float, 3>& v) {
  return "[" + float_text(v[0]) + ", " + float_text(v[1]) + ", " + float_text(v[2]) + "]";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

class Builder {
 public:
  Builder(const ResNet& net, bool fold) : fold_(fold) {
    for (auto& a : net.state_dict()) weights_.emplace(a.name, std::move(a));
  }

  io::OnnxModel model;

  // Conv + BN (+ Relu); returns the name of the value it computes.
  std::string conv_bn(const std::string& x, const std::string& conv_name, const Conv2d& conv,
                      const std::string& bn_name, const BatchNorm2d& bn, bool relu,
                      const std::string& relu_name) {
    const auto& o = conv.options;
    int64_t k = o.kernel_size(), s = o.stride(), p = o.padding();
    std::vector<io::OnnxAttribute> attrs = {{"kernel_shape", Ints{k, k}}, {"strides", Ints{s, s}},
                                            {"pads", Ints{p, p, p, p}}, {"dilations", Ints{1, 1}},
                                            {"group", int64_t{1}}};
    std::string doc = conv_name + ": Conv2d(" + std::to_string(o.in_channels()) + ", " +
                      std::to_string(o.out_channels()) + ", kernel " + std::to_string(k) +
                      ", stride " + std::to_string(s) + ", padding " + std::to_string(p) + ")";
    std::string out;
    if (fold_) {
      auto [w, b] = folded(conv_name, o.bias(), bn_name, bn.options.eps());
      out = node("Conv", conv_name, {x, w, b}, attrs, doc + " with " + bn_name + " folded in (eval mode)");
    } else {
      std::vector<std::string> in = {x, param(conv_name + ".weight")};
      if (o.bias()) in.push_back(param(conv_name + ".bias"));
      std::string c = node("Conv", conv_name, in, attrs, doc);
      out = node("BatchNormalization", bn_name,
                 {c, param(bn_name + ".weight"), param(bn_name + ".bias"),
                  param(bn_name + ".running_mean"), param(bn_name + ".running_var")},
                 {{"epsilon", static_cast<float>(bn.options.eps())}},
                 bn_name + ": BatchNorm2d(" + std::to_string(bn.options.num_features()) +
                     ") in eval mode (running statistics)");
    }
    return relu ? node("Relu", relu_name, {out}, {}, "") : out;
  }

  std::string node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
                   std::vector<io::OnnxAttribute> attrs, const std::string& doc,
                   const std::string& output = {}) {
    std::string out = output.empty() ? name : output;
    model.nodes.push_back({op, name, std::move(inputs), {out}, std::move(attrs), doc});
    return out;
  }

  // A state_dict tensor as an initializer, under its own name.
  std::string param(const std::string& name) {
    model.initializers.push_back(weight(name));
    return name;
  }

 private:
  const io::NamedArray& weight(const std::string& name) const {
    auto it = weights_.find(name);
    if (it == weights_.end()) fail("ONNX export", "a state_dict entry " + name, "none");
    return it->second;
  }

  // conv weight * scale and bias' = (bias - mean) * scale + beta, scale = gamma / sqrt(var + eps),
  // in double so that the folding itself adds no fp32 rounding beyond the final one.
  std::pair<std::string, std::string> folded(const std::string& conv_name, bool conv_bias,
                                             const std::string& bn_name, double eps) {
    io::NamedArray w = weight(conv_name + ".weight");
    const io::NamedArray &gamma = weight(bn_name + ".weight"), &beta = weight(bn_name + ".bias"),
                         &mean = weight(bn_name + ".running_mean"), &var = weight(bn_name + ".running_var");
    int64_t oc = w.shape.at(0), per = w.numel() / oc;
    io::NamedArray b;
    b.name = conv_name + ".bias";
    b.shape = {oc};
    b.bytes.resize(static_cast<size_t>(oc) * sizeof(float));
    float* wp = w.f32();
    for (int64_t c = 0; c < oc; ++c) {
      double scale = gamma.f32()[c] / std::sqrt(static_cast<double>(var.f32()[c]) + eps);
      for (int64_t i = 0; i < per; ++i) wp[c * per + i] = static_cast<float>(wp[c * per + i] * scale);
      double bias0 = conv_bias ? weight(conv_name + ".bias").f32()[c] : 0.0;
      b.f32()[c] = static_cast<float>((bias0 - mean.f32()[c]) * scale + beta.f32()[c]);
    }
    model.initializers.push_back(std::move(w));
    model.initializers.push_back(std::move(b));
    return {conv_name + ".weight", conv_name + ".bias"};
  }

  bool fold_;
  std::map<std::string, io::NamedArray> weights_;
};

// One BasicBlock or Bottleneck: relu(convs(x) + (downsample(x) or x)).
std::string block(Builder& g, const Module& blk, const std::string& name, const std::string& x) {
  std::string type = blk.type_name();
  if (type != "BasicBlock" && type != "Bottleneck")
    fail("ONNX export: module " + name, "a BasicBlock or a Bottleneck", type);
  int convs = type == "Bottleneck" ? 3 : 2;
  std::string out = x;
  for (int k = 1; k <= convs; ++k) {
    std::string c = name + ".conv" + std::to_string(k), b = name + ".bn" + std::to_string(k);
    out = g.conv_bn(out, c, child_as<Conv2d>(blk, "conv" + std::to_string(k), name + "."), b,
                    child_as<BatchNorm2d>(blk, "bn" + std::to_string(k), name + "."),
                    /*relu=*/k < convs, b + ".relu");
  }
  std::string identity = x;
  if (has_child(blk, "downsample")) {
    const Module& ds = child(blk, "downsample", name + ".");
    std::string p = name + ".downsample.";
    identity = g.conv_bn(x, p + "0", child_as<Conv2d>(ds, "0", p), p + "1",
                         child_as<BatchNorm2d>(ds, "1", p), false, "");
  }
  std::string sum = g.node("Add", name + ".add", {out, identity}, {}, name + ": residual connection");
  return g.node("Relu", name + ".relu", {sum}, {}, "");
}

void add_metadata(io::OnnxModel& m, const ModelConfig& cfg, const OnnxExportOptions& opt) {
  std::string classes = "[";
  for (size_t i = 0; i < cfg.class_names.size(); ++i)
    classes += (i ? ", " : "") + json_string(cfg.class_names[i]);
  classes += "]";
  m.metadata = {
      {"arch", cfg.arch},
      {"num_classes", std::to_string(cfg.num_classes)},
      {"classes", classes},
      {"mean", json_floats(cfg.mean)},
      {"std", json_floats(cfg.std)},
      {"image_size", std::to_string(cfg.image_size)},
      {"dataset", cfg.dataset},
      {"batch_norm", opt.fold_bn ? "folded into the convolutions" : "BatchNormalization nodes"},
      {"input", "float32 (N, 3, H, W), RGB, x = (pixel / 255 - mean) / std per channel"},
      {"output", "logits float32 (N, num_classes), no softmax; class i is classes[i]"},
      {"kiln_version", opt.producer_version},
  };
}

}  // namespace

io::OnnxModel resnet_onnx_model(const ResNet& net, const ModelConfig& cfg, const OnnxExportOptions& opt) {
  if (cfg.arch != net.config().arch || cfg.num_classes != net.num_classes())
    fail("ONNX export: the model config", net.config().arch + " with " +
         std::to_string(net.num_classes()) + " classes (the network's)",
         cfg.arch + " with " + std::to_string(cfg.num_classes) + " classes");
  if (!cfg.class_names.empty() && static_cast<int64_t>(cfg.class_names.size()) != cfg.num_classes)
    fail("ONNX export: class_names", std::to_string(cfg.num_classes) + " names",
         std::to_string(cfg.class_names.size()));
  Builder g(net, opt.fold_bn);
  io::OnnxModel& m = g.model;
  m.graph_name = cfg.arch;
  m.producer_version = opt.producer_version;
  m.doc = "torchvision " + cfg.arch + " (" + std::to_string(cfg.num_classes) +
          " classes) in eval mode, exported by kiln " + opt.producer_version +
          ". Input: normalized float32 NCHW RGB (metadata mean, std). Output: logits.";
  io::OnnxDim n{-1, "N"};
  io::OnnxDim h = opt.fixed_size ? io::OnnxDim{cfg.image_size, ""} : io::OnnxDim{-1, "H"};
  io::OnnxDim w = opt.fixed_size ? io::OnnxDim{cfg.image_size, ""} : io::OnnxDim{-1, "W"};
  m.inputs = {{"input", {n, {3, ""}, h, w}, "float32 (N, 3, H, W), RGB, (pixel / 255 - mean) / std"}};
  m.outputs = {{"logits", {n, {cfg.num_classes, ""}}, "float32 (N, num_classes), no softmax"}};
  add_metadata(m, cfg, opt);

  std::string x = g.conv_bn("input", "conv1", child_as<Conv2d>(net, "conv1", ""), "bn1",
                            child_as<BatchNorm2d>(net, "bn1", ""), true, "relu");
  x = g.node("MaxPool", "maxpool", {x},
             {{"kernel_shape", Ints{3, 3}}, {"strides", Ints{2, 2}}, {"pads", Ints{1, 1, 1, 1}}},
             "maxpool: MaxPool2d(3, stride 2, padding 1)");
  for (int s = 1; s <= 4; ++s) {
    std::string stage_name = "layer" + std::to_string(s);
    const Module& stage = child(net, stage_name, "");
    for (const auto& [b, blk] : stage.children()) x = block(g, *blk, stage_name + "." + b, x);
  }
  x = g.node("GlobalAveragePool", "avgpool", {x}, {}, "avgpool: AdaptiveAvgPool2d((1, 1))");
  x = g.node("Flatten", "flatten", {x}, {{"axis", int64_t{1}}}, "torch.flatten(x, 1)");
  const auto& fc = child_as<layers::Linear>(net, "fc", "");
  g.node("Gemm", "fc", {x, g.param("fc.weight"), g.param("fc.bias")},
         {{"alpha", 1.0f}, {"beta", 1.0f}, {"transB", int64_t{1}}},
         "fc: Linear(" + std::to_string(fc.options.in_features()) + ", " +
             std::to_string(fc.options.out_features()) + ")",
         "logits");
  return std::move(g.model);
}

void export_onnx(const std::filesystem::path& path, const ResNet& net, const ModelConfig& cfg,
                 const OnnxExportOptions& opt) {
  io::write_onnx(path, resnet_onnx_model(net, cfg, opt));
}

}  // namespace kiln::models
