// The plain, framework-free array that kiln's file formats read and write: a name, a dtype,
// a shape and the C-order little-endian bytes. The engine turns these into its own tensors
// (and its blocked layouts); io/ knows nothing of the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::io {

enum class DType { f32, f64, f16, bf16, i64, i32, i16, i8, u8, bool_ };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "float32", "int64", ... (numpy's names)

struct NamedArray {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // numel() * dtype_size(dtype) bytes, C order

  int64_t numel() const;
  const float* f32() const;  // asserts dtype == f32
  float* f32();
};

// A model's parameters and buffers in order, keyed by torchvision's names
// ("conv1.weight", "layer1.0.bn1.running_var", ...).
using StateDict = std::vector<NamedArray>;

std::string shape_str(const std::vector<int64_t>& shape);  // "(64, 3, 7, 7)"

}  // namespace kiln::io
