// A ResNet as an ONNX model (the graph; io/onnx.h encodes and writes it), in eval mode:
//   input "input" float32 (N, 3, H, W), normalized as the metadata's mean/std say
//   Conv [+ BatchNormalization] [+ Relu] ... MaxPool, blocks with Add + Relu, GlobalAveragePool,
//   Flatten, Gemm -> output "logits" float32 (N, num_classes), no softmax
// N is symbolic; H and W too unless fixed_size (any size >= 8 works: the head pools globally).
// Initializers carry torchvision's state_dict names ("layer1.0.conv1.weight",
// "layer1.0.bn1.running_var", ...). metadata_props: arch, num_classes, classes (a JSON array of
// names), mean, std (JSON arrays), image_size, dataset, batch_norm, input, output, kiln_version.
#pragma once

#include <filesystem>
#include <string>

#include "kiln/io/onnx.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"

namespace kiln::models {

struct OnnxExportOptions {
  // false (the default): one BatchNormalization node per BN with torchvision's four tensors
  // as they are, so the file holds the state_dict unchanged (consumers fuse BN into the conv
  // when they load it: OpenCV and onnxruntime both do). true: BN folded into the conv before
  // writing (weight * gamma/sqrt(var+eps), a new "<conv>.bias"), computed in double.
  bool fold_bn = false;
  bool fixed_size = false;       // H, W fixed to config.image_size instead of symbolic
  std::string producer_version;  // kiln's version (model.producer_version, kiln_version)
};

// The graph of `net` (its current parameters and running statistics; eval mode whatever
// net.training() says). `config` gives the metadata; its arch and num_classes must be net's.
io::OnnxModel resnet_onnx_model(const ResNet& net, const ModelConfig& config,
                                const OnnxExportOptions& options = {});

// resnet_onnx_model() written atomically to `path` (io::write_onnx).
void export_onnx(const std::filesystem::path& path, const ResNet& net, const ModelConfig& config,
                 const OnnxExportOptions& options = {});

}  // namespace kiln::models
