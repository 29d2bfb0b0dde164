// Overflow-checked size arithmetic for the io/ parsers.
#include "kiln/io/bytes.h"

#include <cstdio>

#include "kiln/core/error.h"

namespace kiln::io::detail {

int64_t checked_mul(int64_t a, int64_t b, const std::string& what, const std::string& field) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    fail(what + ": " + field, "a size that fits in 64 bits",
         std::to_string(a) + " * " + std::to_string(b));
  return r;
}

int64_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype, const std::string& what) {
  int64_t n = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t d : shape) {
    if (d < 0) fail(what + ": shape " + shape_str(shape), "dimensions >= 0", std::to_string(d));
    n = checked_mul(n, d, what, "size of shape " + shape_str(shape));
  }
  return n;
}

std::string human_bytes(uint64_t n) {
  if (n < 1024) return std::to_string(n) + " bytes";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 5) { v /= 1024; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

std::string quoted(std::string_view s, size_t max) {
  std::string r = "'";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 32 && c < 127 && c != '\'' && c != '\\') {
      r += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    }
  }
  if (s.size() > max) r += "...";
  return r + "'";
}

}  // namespace kiln::io::detail
