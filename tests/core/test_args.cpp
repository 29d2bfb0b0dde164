#include <doctest/doctest.h>

#include "kiln/core/error.h"
#include "tools/args.h"

using kiln::cli::Args;

static Args make() {
  Args a("kiln test", "testing");
  a.option("--epochs", "N", "epochs", "4");
  a.option("--lr", "LR", "learning rate");
  a.flag("--no-augment", "no augmentation");
  a.positional("SRC", "source");
  return a;
}

TEST_CASE("options, defaults, flags and positionals are parsed") {
  Args a = make();
  REQUIRE(a.parse({"in.pth", "--lr=0.5", "--no-augment"}));
  CHECK(a.get_int("--epochs") == 4);
  CHECK_FALSE(a.given("--epochs"));
  CHECK(a.get_double("--lr") == doctest::Approx(0.5));
  CHECK(a.flag_set("--no-augment"));
  REQUIRE(a.positionals().size() == 1);
  CHECK(a.positionals()[0] == "in.pth");
}

TEST_CASE("an unknown option is an error that lists the known ones") {
  Args a = make();
  try {
    a.parse({"x", "--epoch", "3"});
    FAIL("expected an error");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("--epoch") != std::string::npos);
    CHECK(e.hint().find("--epochs") != std::string::npos);
  }
}

TEST_CASE("a malformed number names the option") {
  Args a = make();
  REQUIRE(a.parse({"x", "--epochs", "4x"}));
  CHECK_THROWS_WITH_AS(a.get_int("--epochs"), "--epochs: expected an integer, found '4x'",
                       kiln::Error);
}

TEST_CASE("a missing positional is an error") {
  Args a = make();
  CHECK_THROWS_AS(a.parse({"--epochs", "2"}), kiln::Error);
}
