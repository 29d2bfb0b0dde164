// The SageMaker container contract's pieces: hyperparameters.json decoding (SDK-style encoded
// strings, batch_size, flags, unknown names), resourceconfig/inputdataconfig checks, the
// failure file, and the training checkpoint files (when io/ is built).
#include <doctest/doctest.h>

#include <map>

#include "core/error.h"
#include "tests/train/test_util.h"
#include "tools/train/container.h"

using namespace kiln::cli;

static const std::vector<HyperOption> kKnown = {
    {"epochs", false}, {"batch-size", false}, {"lr", false}, {"lr-schedule", false},
    {"no-augment", true}, {"no-shuffle", true}};

TEST_CASE("hyperparameters: plain and SDK-encoded strings, batch_size, flags") {
  std::vector<std::string> notes;
  auto hp = parse_hyperparameters(
      R"({"epochs": "\"4\"", "batch_size": "128", "lr": "0.0002", "lr-schedule": "\"onecycle\"",
          "no-augment": "\"true\"", "no-shuffle": "false", "sagemaker_program": "\"x.py\""})",
      "hyperparameters.json", kKnown, &notes);
  std::map<std::string, std::string> m(hp.begin(), hp.end());
  CHECK(m.at("--epochs") == "4");
  CHECK(m.at("--batch-size") == "128");
  CHECK(m.at("--lr") == "0.0002");
  CHECK(m.at("--lr-schedule") == "onecycle");
  CHECK(m.at("--no-augment") == "1");
  CHECK(m.count("--no-shuffle") == 0);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("sagemaker_program") != std::string::npos);
}

TEST_CASE("hyperparameters: non-string JSON values are accepted too") {
  auto hp = parse_hyperparameters(R"({"epochs": 3, "lr": 0.5, "no-augment": true})", "hp", kKnown, nullptr);
  std::map<std::string, std::string> m(hp.begin(), hp.end());
  CHECK(m.at("--epochs") == "3");
  CHECK(m.at("--lr") == "0.5");
  CHECK(m.at("--no-augment") == "1");
}

TEST_CASE("hyperparameters: an unknown name is an error listing the known ones") {
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"learning_rate": "0.1"})", "hp.json", kKnown, nullptr),
                    doctest::Contains("learning_rate"));
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"learning_rate": "0.1"})", "hp.json", kKnown, nullptr),
                    doctest::Contains("epochs, batch-size, lr"));
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"no-augment": "maybe"})", "hp.json", kKnown, nullptr),
                    doctest::Contains("true or false"));
  CHECK_THROWS_WITH(parse_hyperparameters("[1,2]", "hp.json", kKnown, nullptr),
                    doctest::Contains("JSON object"));
  CHECK_THROWS_WITH(parse_hyperparameters("{", "hp.json", kKnown, nullptr), doctest::Contains("valid JSON"));
}

TEST_CASE("container inputs: training channel, one host, no Pipe mode; failure file") {
  kiln::test::TempDir tmp("optml");
  auto root = tmp.path;
  CHECK_FALSE(is_container_mode(root));
  kiln::test::write_text(root / "input/config/hyperparameters.json", "{}");
  CHECK(is_container_mode(root));
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("training channel"));
  std::filesystem::create_directories(root / "input/data/training");
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-1", "hosts": ["algo-1"]})");
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File"}})");
  auto in = read_container_inputs(root);
  CHECK(in.current_host == "algo-1");
  CHECK(in.training == root / "input/data/training");
  CHECK(in.test.empty());
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("expected one host"));
  kiln::test::write_text(root / "input/config/resourceconfig.json", R"({"hosts": ["algo-1"]})");
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "Pipe"}})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("Pipe"));

  write_failure(root, "it broke");
  CHECK(kiln::test::read_text(root / "output/failure") == "it broke\n");
}

TEST_CASE("opt_ml_root: option, then KILN_OPT_ML, then /opt/ml") {
  CHECK(opt_ml_root("/x") == "/x");
  setenv("KILN_OPT_ML", "/y", 1);
  CHECK(opt_ml_root("") == "/y");
  unsetenv("KILN_OPT_ML");
  CHECK(opt_ml_root("") == "/opt/ml");
}
