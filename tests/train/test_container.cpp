// The option table and the SageMaker container contract's pieces: hyperparameters.json decoding
// (SDK-style encoded strings, the notebook's names, flags, unknown names), the table's defaults
// and checks, container options, resourceconfig/inputdataconfig checks, the failure file.
#include <doctest/doctest.h>

#include <map>

#include "kiln/core/error.h"
#include "tests/support/support.h"
#include "kiln/train/container.h"
#include "kiln/train/hyperparameters.h"
#include "kiln/train/options.h"

using namespace kiln::train;

namespace {

std::map<std::string, std::string> by_option(const std::vector<Hyperparameter>& hp) {
  std::map<std::string, std::string> m;
  for (const auto& h : hp) m[h.option] = h.value;
  return m;
}

}  // namespace

TEST_CASE("hyperparameters: plain and SDK-encoded strings, batch_size, flags") {
  std::vector<std::string> notes;
  auto hp = parse_hyperparameters(
      R"({"epochs": "\"4\"", "batch_size": "128", "lr": "0.0002", "lr-schedule": "\"onecycle\"",
          "no-augment": "\"true\"", "no-shuffle": "false", "sagemaker_program": "\"x.py\""})",
      "hyperparameters.json", &notes);
  auto m = by_option(hp);
  CHECK(m.at("epochs") == "4");
  CHECK(m.at("batch-size") == "128");
  CHECK(m.at("lr") == "0.0002");
  CHECK(m.at("lr-schedule") == "onecycle");
  CHECK(m.at("no-augment") == "1");
  CHECK(m.count("no-shuffle") == 0);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("sagemaker_program") != std::string::npos);
}

TEST_CASE("hyperparameters: the notebook's names (epochs, batch_size, learning_rate) set kiln's options") {
  auto hp = parse_hyperparameters(R"({"epochs": 4, "batch_size": 128, "learning_rate": 0.0002})", "hp");
  auto m = by_option(hp);
  CHECK(m.at("epochs") == "4");
  CHECK(m.at("batch-size") == "128");
  CHECK(m.at("lr") == "0.0002");
  for (const auto& h : hp)
    if (h.option == "lr") CHECK(h.key == "learning_rate");
  TrainOptions o = options_from(m);
  CHECK(o.epochs == 4);
  CHECK(o.batch_size == 128);
  CHECK(o.lr == 2e-4);
  // Two names for one option must agree.
  CHECK_NOTHROW(parse_hyperparameters(R"({"lr": "0.1", "learning_rate": "0.1"})", "hp"));
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"lr": "0.1", "learning_rate": "0.2"})", "hp"),
                    doctest::Contains("one value for option lr"));
}

TEST_CASE("hyperparameters: non-string JSON values are accepted too") {
  auto m = by_option(parse_hyperparameters(R"({"epochs": 3, "lr": 0.5, "no-augment": true})", "hp"));
  CHECK(m.at("epochs") == "3");
  CHECK(m.at("lr") == "0.5");
  CHECK(m.at("no-augment") == "1");
}

TEST_CASE("hyperparameters: an unknown name is an error listing the accepted ones") {
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"learning_rat": "0.1"})", "hp.json"),
                    doctest::Contains("learning_rat"));
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"learning_rat": "0.1"})", "hp.json"),
                    doctest::Contains("epochs, max-steps, batch-size, lr (or learning-rate), momentum"));
  // Options that only make sense on a command line are not hyperparameters.
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"model-dir": "/x"})", "hp.json"), doctest::Contains("unknown name"));
  CHECK_THROWS_WITH(parse_hyperparameters(R"({"no-augment": "maybe"})", "hp.json"),
                    doctest::Contains("true or false"));
  CHECK_THROWS_WITH(parse_hyperparameters("[1,2]", "hp.json"), doctest::Contains("JSON object"));
  CHECK_THROWS_WITH(parse_hyperparameters("{", "hp.json"), doctest::Contains("valid JSON"));
}

TEST_CASE("option table: every TrainOptions default survives its own text, and bad values name the source") {
  const TrainOptions d;
  for (const auto& spec : option_table()) {
    INFO(spec.name);
    CHECK(bool(spec.set));
    CHECK(bool(spec.get));
    CHECK_FALSE(spec.help.empty());
    if (spec.is_flag()) {
      CHECK(spec.get(d).empty());  // flags are off by default
      TrainOptions o;
      spec.set(o, "1", "--" + spec.name);
      CHECK(spec.get(o) == "1");
    } else if (!spec.get(d).empty()) {
      TrainOptions o;
      spec.set(o, spec.get(d), "--" + spec.name);
      CHECK(spec.get(o) == spec.get(d));
    }
  }
  CHECK(find_option("lr")->get(d) == "0.0002");
  CHECK(find_option("test-size")->get(d) == "all");
  CHECK_THROWS_WITH(options_from({{"epochs", "0"}}, {{"epochs", "hp.json: hyperparameter \"epochs\""}}),
                    doctest::Contains("hp.json: hyperparameter \"epochs\": expected 1 or more"));
  CHECK_THROWS_WITH(options_from({{"batch-size", "x"}}), doctest::Contains("--batch-size: expected an integer"));
  CHECK_THROWS_WITH(options_from({{"lr-schedule", "cosine"}}), doctest::Contains("constant or onecycle"));
  CHECK_THROWS_WITH(options_from({{"isa", "sse"}}), doctest::Contains("scalar, avx2, avx512"));
  TrainOptions bad;
  bad.momentum = -1;
  CHECK_THROWS_WITH(check_options(bad), doctest::Contains("--momentum"));
}

TEST_CASE("container options: hyperparameters over defaults, the command line over both, the fixed layout") {
  kiln::test::TempDir tmp("optml");
  auto root = tmp.path;
  std::filesystem::create_directories(root / "input/data/training");
  kiln::test::write_text(root / "input/config/hyperparameters.json",
                         R"({"epochs": "\"2\"", "learning_rate": "0.01", "batch_size": "16"})");
  std::vector<std::string> notes;
  TrainOptions o = container_options(root, {{"batch-size", "8"}}, &notes);
  CHECK(o.epochs == 2);
  CHECK(o.lr == 0.01);
  CHECK(o.batch_size == 8);
  CHECK(o.data == root / "input/data/training");
  CHECK(o.model_dir == root / "model");
  CHECK(o.checkpoint_dir == root / "checkpoints");
  CHECK(o.resume);
  CHECK(o.plain_progress);
  CHECK(o.log_dir == root / "output/tensorboard");
  bool overridden = false;
  for (const auto& n : notes) overridden |= n == "hyperparameter batch-size = 16 (overridden by --batch-size)";
  CHECK(overridden);
  CHECK_FALSE(o.data_per_host);
  // ShardedByS3Key on several hosts: each host's ranks train on that host's own records.
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}})");
  CHECK_FALSE(container_options(root, {}, nullptr).data_per_host);  // one host holds every part
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})");
  CHECK(container_options(root, {}, nullptr).data_per_host);
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}})");
  CHECK_FALSE(container_options(root, {}, nullptr).data_per_host);
  kiln::test::write_text(root / "input/config/hyperparameters.json", R"({"epochs": "0"})");
  CHECK_THROWS_WITH(container_options(root, {}, nullptr), doctest::Contains("hyperparameter \"epochs\""));
}

TEST_CASE("container inputs: training channel, hosts, no Pipe mode; failure file") {
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
                         R"({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"], "network_interface_name": "eth0"})");
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}})");
  CHECK(read_container_inputs(root).training_sharded_by_s3_key);  // each host trains on its own part
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}})");
  in = read_container_inputs(root);
  CHECK(in.distributed());
  CHECK(in.hosts == std::vector<std::string>{"algo-1", "algo-2"});  // sorted: algo-1 leads
  CHECK(in.current_host == "algo-2");
  CHECK(in.network_interface_name == "eth0");
  CHECK_FALSE(in.training_sharded_by_s3_key);
  kiln::test::write_text(root / "input/config/resourceconfig.json", R"({"current_host": "algo-1", "hosts": ["algo-1"]})");
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"}})");
  CHECK(read_container_inputs(root).training_sharded_by_s3_key);  // one host has every shard: fine
  kiln::test::write_text(root / "input/config/inputdataconfig.json",
                         R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "Sharded"}})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("FullyReplicated or ShardedByS3Key"));
  kiln::test::write_text(root / "input/config/inputdataconfig.json", R"({"training": {}})");
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("current_host: expected one of hosts"));
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-1", "hosts": ["algo-1", "x;reboot"]})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("host names of letters"));
  kiln::test::write_text(root / "input/config/resourceconfig.json",
                         R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]})");
  CHECK_THROWS_WITH(read_container_inputs(root), doctest::Contains("distinct host names"));
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
