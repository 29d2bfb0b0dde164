// ONNX files: a model graph described with kiln's own plain types (nodes, float32 initializers as
// io::NamedArray, inputs/outputs with symbolic or fixed dimensions, metadata) and encoded with
// the ONNX project's own protobuf classes (Debian's libonnx-dev, libprotobuf), never by hand.
// The file is written atomically. Which graph describes which model is the models' business
// (models/onnx.h builds ResNets); io/ knows no layers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "kiln/io/array.h"

namespace kiln::io {

// The operator set the graphs are written for: the default ("ai.onnx") domain at opset 13, IR
// version 7. onnx 1.12's checker accepts up to opset 17 / IR 8 and OpenCV 4.6's importer reads
// every operator kiln emits at 13; onnxruntime reads opset 7 onwards.
inline constexpr int64_t kOnnxOpset = 13;
inline constexpr int64_t kOnnxIrVersion = 7;

struct OnnxAttribute {
  std::string name;
  std::variant<int64_t, float, std::vector<int64_t>> value;  // INT, FLOAT or INTS
};

struct OnnxNode {
  std::string op_type;  // "Conv", "BatchNormalization", ...
  std::string name;     // unique in the graph
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
  std::string doc;
};

// A dimension: a fixed size, or a name ("N") the runtime binds when the model runs.
struct OnnxDim {
  int64_t size = -1;  // used when param is empty
  std::string param;
};

// A graph input or output: a float32 tensor.
struct OnnxValue {
  std::string name;
  std::vector<OnnxDim> dims;
  std::string doc;
};

struct OnnxModel {
  std::string graph_name, doc;            // graph.name, model.doc_string
  std::string producer_version;           // model.producer_version ("kiln" is the producer)
  std::vector<OnnxValue> inputs, outputs;
  std::vector<OnnxNode> nodes;            // in topological order
  StateDict initializers;                 // float32 only
  std::vector<std::pair<std::string, std::string>> metadata;  // model.metadata_props, in order
};

// The serialized ModelProto. Throws kiln::Error when the model cannot be encoded: an
// initializer that is not float32 or whose byte count disagrees with its shape, a node input
// that nothing defines, a name defined twice, or more than protobuf's 2 GiB.
std::string encode_onnx(const OnnxModel& model);

// encode_onnx() written to `path` atomically (core/atomic_file.h): on any error no file, and no
// partial one, is left at `path`.
void write_onnx(const std::filesystem::path& path, const OnnxModel& model);

}  // namespace kiln::io
