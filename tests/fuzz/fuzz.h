// Shared by the libFuzzer harnesses: the input as bytes, and the rule every parser obeys on
// untrusted input: it returns or throws kiln::Error. Any other exception (std::bad_alloc,
// std::length_error, a JSON library's own) escapes LLVMFuzzerTestOneInput and libFuzzer reports
// it as a crash; ASan/UBSan report memory errors and undefined behaviour the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kiln/core/error.h"

namespace kiln_fuzz {

inline std::string_view bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`, accepting success or kiln::Error only.
template <typename F>
int parse_or_reject(F&& parse) {
  try {
    parse();
  } catch (const kiln::Error&) {
  }
  return 0;
}

}  // namespace kiln_fuzz

// A harness is one line: KILN_FUZZ(input) { parse(input); }
#define KILN_FUZZ(input)                                                              \
  static void kiln_fuzz_one(std::string_view input);                                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {            \
    return kiln_fuzz::parse_or_reject([&] { kiln_fuzz_one(kiln_fuzz::bytes(data, size)); }); \
  }                                                                                    \
  static void kiln_fuzz_one(std::string_view input)
