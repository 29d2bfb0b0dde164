#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "tests/support/support.h"

namespace fs = std::filesystem;

TEST_CASE("write_file_atomic replaces the target and leaves no temporary file") {
  kiln::test::TempDir tmp("core-replace");
  const fs::path& d = tmp.path;
  fs::path f = d / "model.bin";
  kiln::write_file_atomic(f, std::string_view("old"));
  kiln::write_file_atomic(f, std::string_view("new contents"));
  CHECK(kiln::read_file(f) == "new contents");
  int entries = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(d)) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("an uncommitted AtomicFile leaves the old target untouched") {
  kiln::test::TempDir tmp("core-abandon");
  const fs::path& d = tmp.path;
  fs::path f = d / "checkpoint.bin";
  kiln::write_file_atomic(f, std::string_view("good"));
  {
    kiln::AtomicFile a(f);
    a.write("half-writ");
    // destroyed without commit(), as when an exception unwinds mid-write
  }
  CHECK(kiln::read_file(f) == "good");
  int entries = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(d)) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("read_file names the missing file") {
  try {
    kiln::read_file("/nonexistent/kiln/file.bin");
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("/nonexistent/kiln/file.bin") != std::string::npos);
  }
}

TEST_CASE("KILN_ASSERT reports file, line and message") {
  try {
    KILN_ASSERT(1 + 1 == 3, "arithmetic");
    FAIL("expected an assertion failure");
  } catch (const std::logic_error& e) {
    std::string m = e.what();
    CHECK(m.find("test_atomic_file.cpp") != std::string::npos);
    CHECK(m.find("1 + 1 == 3") != std::string::npos);
    CHECK(m.find("arithmetic") != std::string::npos);
  }
}
