// Internal helpers for io/ parsers of untrusted bytes: little-endian loads and writes, and
// overflow-checked sizes. Parsers check a range before reading it; these never read past `end`.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/io/array.h"

namespace kiln::io::detail {

template <typename T>
T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86-64 and aarch64 are little-endian; kiln targets both
  return v;
}

template <typename T>
void append_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// a * b, or throws kiln::Error "<what>: <field> overflows" when it does not fit in int64.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what, const std::string& field);

// Bytes of an array of `shape` and `dtype`; every dim must be >= 0 and the product must fit.
int64_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype, const std::string& what);

// "1.5 GiB", "512 KiB", "17 bytes": sizes in messages about memory budgets.
std::string human_bytes(uint64_t n);

std::string quoted(std::string_view s, size_t max = 60);  // 'abc', escaped and shortened

}  // namespace kiln::io::detail
