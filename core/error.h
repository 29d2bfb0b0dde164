// Errors and invariants shared by every kiln library.
// User-facing failures throw kiln::Error carrying what was expected, what was found and a hint;
// broken invariants stop through KILN_ASSERT, which is always on (release builds too).
// Library code never calls exit(): a server embeds it.
//
// A caller that wants to tell failures apart catches the subclasses; `catch (const kiln::Error&)`
// still catches all of them:
//   kiln::Error               every failure a caller can act on (the base; also thrown as such)
//   ├─ kiln::InvalidArgument  the caller passed something wrong: a shape, an option, a label
//   ├─ kiln::IoError          a file could not be opened, read or written
//   └─ kiln::FormatError      a file's contents are not what its format (or the model) requires
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

class InvalidArgument : public Error {
 public:
  using Error::Error;
};

class IoError : public Error {
 public:
  using Error::Error;
};

class FormatError : public Error {
 public:
  using Error::Error;
};

// "<context>: expected <expected>, found <found>"
std::string expected_found(const std::string& context, const std::string& expected,
                           const std::string& found);

// Throw that message (with an optional hint) as kiln::Error, InvalidArgument, IoError or
// FormatError.
[[noreturn]] void fail(const std::string& context, const std::string& expected,
                       const std::string& found, const std::string& hint = {});
[[noreturn]] void fail_argument(const std::string& context, const std::string& expected,
                                const std::string& found, const std::string& hint = {});
[[noreturn]] void fail_io(const std::string& context, const std::string& expected,
                          const std::string& found, const std::string& hint = {});
[[noreturn]] void fail_format(const std::string& context, const std::string& expected,
                              const std::string& found, const std::string& hint = {});

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace kiln

#define KILN_ASSERT(cond, ...)                                                   \
  do {                                                                           \
    if (!(cond)) ::kiln::assert_fail(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
