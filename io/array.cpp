#include "kiln/io/array.h"

#include "kiln/core/error.h"

namespace kiln::io {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: case DType::i16: return 2;
    case DType::i8: case DType::u8: case DType::bool_: return 1;
  }
  KILN_ASSERT(false, "bad dtype");
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::i64: return "int64";
    case DType::i32: return "int32";
    case DType::i16: return "int16";
    case DType::i8: return "int8";
    case DType::u8: return "uint8";
    case DType::bool_: return "bool";
  }
  return "?";
}

int64_t NamedArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const float* NamedArray::f32() const {
  KILN_ASSERT(dtype == DType::f32, name + " is " + dtype_name(dtype) + ", not float32");
  return reinterpret_cast<const float*>(bytes.data());
}

float* NamedArray::f32() {
  KILN_ASSERT(dtype == DType::f32, name + " is " + dtype_name(dtype) + ", not float32");
  return reinterpret_cast<float*>(bytes.data());
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

}  // namespace kiln::io
