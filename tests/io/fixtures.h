// Shared helpers for the io tests: fixtures generated once per run by make_fixtures.py with the
// PyTorch/numpy oracle (${KILN_PYTHON:-/usr/bin/python3}); a missing torch fails the run.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace kiln_test {

namespace fs = std::filesystem;

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

inline std::string python() { return env_or("KILN_PYTHON", "/usr/bin/python3"); }

// Runs a shell command; returns its exit status and fills `output` with stdout+stderr.
inline int run(const std::string& cmd, std::string* output = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

inline fs::path work_dir_path() {
  fs::path root = env_or("KILN_BUILD_ROOT", fs::temp_directory_path().c_str());
  return root / "tests" / "io" / ("work-" + std::to_string(::getpid()));
}

inline fs::path work_dir() {
  static fs::path dir = [] {
    fs::path d = work_dir_path();
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// The fixture directory, generated on first use. A failure to generate is a test failure
// whose message carries the script's output (e.g. "cannot import torch").
inline const fs::path& fixtures() {
  static fs::path dir = [] {
    fs::path src = env_or("KILN_SOURCE_ROOT", ".");
    fs::path d = work_dir() / "fixtures";
    std::string out;
    int rc = run(python() + " " + quote(src / "tests/io/make_fixtures.py") + " " + quote(d), &out);
    if (rc != 0)
      throw kiln::Error("generating io fixtures with " + python() + " failed (exit " + std::to_string(rc) +
                        "):\n" + out);
    return d;
  }();
  return dir;
}

// Removes the per-run work directory at exit (fixtures included).
struct WorkDirCleanup {
  ~WorkDirCleanup() {
    std::error_code ec;
    fs::remove_all(work_dir_path(), ec);
  }
};

inline std::string kiln_bin() { return env_or("KILN_BIN", "kiln"); }

}  // namespace kiln_test
