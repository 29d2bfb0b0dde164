#include "kiln/core/error.h"

namespace kiln {

Error::Error(const std::string& what, std::string hint)
    : std::runtime_error(what), hint_(std::move(hint)) {}

std::string Error::full_message() const {
  std::string m = what();
  if (!hint_.empty()) m += "\n---> HINT: " + hint_;
  return m;
}

std::string expected_found(const std::string& context, const std::string& expected,
                           const std::string& found) {
  return context + ": expected " + expected + ", found " + found;
}

void fail(const std::string& context, const std::string& expected, const std::string& found,
          const std::string& hint) {
  throw Error(expected_found(context, expected, found), hint);
}

void fail_argument(const std::string& context, const std::string& expected,
                   const std::string& found, const std::string& hint) {
  throw InvalidArgument(expected_found(context, expected, found), hint);
}

void fail_io(const std::string& context, const std::string& expected, const std::string& found,
             const std::string& hint) {
  throw IoError(expected_found(context, expected, found), hint);
}

void fail_format(const std::string& context, const std::string& expected,
                 const std::string& found, const std::string& hint) {
  throw FormatError(expected_found(context, expected, found), hint);
}

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  // An invariant is broken: this is a kiln bug, not a user error. Throwing (rather than abort)
  // lets a server report it and keep its other requests alive; tests see it as a failure.
  std::string m = std::string("kiln internal error: ") + file + ":" + std::to_string(line) +
                  ": assertion `" + expr + "` failed";
  if (!msg.empty()) m += ": " + msg;
  throw std::logic_error(m);
}

}  // namespace kiln
