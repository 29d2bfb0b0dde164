// Errors and invariants shared by every kiln library.
// User-facing failures throw kiln::Error carrying what was expected, what was found and a hint;
// broken invariants stop through KILN_ASSERT, which is always on (release builds too).
// Library code never calls exit(): a server embeds it.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::string hint = {});
  const std::string& hint() const { return hint_; }
  // The message followed by "---> HINT: ..." when there is a hint.
  std::string full_message() const;

 private:
  std::string hint_;
};

// "<context>: expected <expected>, found <found>", with an optional hint.
[[noreturn]] void fail(const std::string& context, const std::string& expected,
                       const std::string& found, const std::string& hint = {});

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace kiln

#define KILN_ASSERT(cond, ...)                                                   \
  do {                                                                           \
    if (!(cond)) ::kiln::assert_fail(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
