// Strict number parsing (see parse.h).
#include "kiln/core/parse.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "kiln/core/error.h"

namespace kiln {

int64_t parse_int(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) fail(what, "an integer", "'" + text + "'");
  return v;
}

uint64_t parse_uint(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] < '0' || text[0] > '9' || *end != '\0' || errno == ERANGE)
    fail(what, "an unsigned integer", "'" + text + "'");
  return v;
}

double parse_double(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE) fail(what, "a number", "'" + text + "'");
  return v;
}

std::string format_double(double v) {
  // Shortest round-trip digits; plain notation for everyday magnitudes ("0.0002", not "2e-04").
  char buf[400];
  const double a = std::fabs(v);
  const bool plain = v == 0 || (a >= 1e-5 && a < 1e15);
  auto r = plain ? std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed)
                 : std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

}  // namespace kiln
