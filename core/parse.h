// Strict number parsing for options, hyperparameters and file fields: the whole text must be
// the number ("12", "-3", "1e-3"), out-of-range values are refused, and errors name `what`
// (a flag, a JSON field, a metadata key) through kiln::Error.
#pragma once

#include <cstdint>
#include <string>

namespace kiln {

int64_t parse_int(const std::string& text, const std::string& what);
uint64_t parse_uint(const std::string& text, const std::string& what);  // no sign allowed
double parse_double(const std::string& text, const std::string& what);  // also hex floats (%a)

// The shortest text that parses back to exactly v ("0.0002", "1e-06", "inf").
std::string format_double(double v);

}  // namespace kiln
