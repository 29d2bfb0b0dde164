// The io tests' fixtures: generated once per run by make_fixtures.py with the PyTorch/numpy
// oracle (${KILN_PYTHON:-/usr/bin/python3}); a missing torch fails the run. The generic helpers
// (running a command, the runner's paths) are tests/support's.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "tests/support/support.h"

namespace kiln_test {

namespace fs = std::filesystem;

using kiln::test::env_or;
using kiln::test::kiln_bin;
using kiln::test::python;
using kiln::test::quote;
using kiln::test::run;

inline fs::path work_dir_path() {
  return kiln::test::build_root() / "tests" / "io" / ("work-" + std::to_string(::getpid()));
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
    fs::path src = kiln::test::source_root();
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

}  // namespace kiln_test
