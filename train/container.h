// SageMaker training-container contract for `kiln train` (docs/train.md). The /opt/ml
// root can be moved (--opt-ml DIR or KILN_OPT_ML) so tests and `kiln pipeline --local` run it in a
// temporary tree. Hyperparameters: train/hyperparameters.h. Layout under the root:
//   input/config/{hyperparameters,resourceconfig,inputdataconfig}.json, input/data/<channel>/,
//   model/, checkpoints/, output/failure (written on failure), output/data/ (uploaded by SageMaker).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kiln/train/options.h"

namespace kiln::train {

// The /opt/ml root: `option_value` when non-empty, else $KILN_OPT_ML, else "/opt/ml".
std::filesystem::path opt_ml_root(const std::string& option_value);

// Container mode applies when hyperparameters.json exists under the root.
bool is_container_mode(const std::filesystem::path& root);

struct ContainerInputs {
  std::filesystem::path training;  // input/data/training
  std::filesystem::path test;      // input/data/test when that channel exists, else empty
  std::string current_host;        // from resourceconfig.json ("" when absent)
  std::vector<std::string> hosts;  // resourceconfig.json's, sorted (algo-1 first); {} when absent
  std::string network_interface_name;  // resourceconfig.json's ("" when absent)
  // The training channel's S3DistributionType: FullyReplicated (every host has every record;
  // ranks shard by index) or ShardedByS3Key (each host has its own part; the ranks of a host
  // share out its records: TrainOptions::data_per_host when there are several hosts).
  bool training_sharded_by_s3_key = false;
  bool distributed() const { return hosts.size() > 1; }
};

// Reads resourceconfig.json (hosts, current_host among them, host names of letters, digits,
// '-' and '.'; network_interface_name) and inputdataconfig.json (File or FastFile mode; Pipe
// mode is refused; the training channel's S3DistributionType), and checks the `training`
// channel directory exists.
ContainerInputs read_container_inputs(const std::filesystem::path& root);

// The training run a container job asks for: hyperparameters.json applied over the defaults,
// then `cli_values` (option name -> text: what the command line gave, which wins), then the
// container's fixed layout (data from the channels, model/, checkpoints/ with resume, logs to
// output/tensorboard unless given, plain progress). `notes` gets one line per applied or skipped
// hyperparameter.
TrainOptions container_options(const std::filesystem::path& root, const std::map<std::string, std::string>& cli_values,
                               std::vector<std::string>* notes);

// Writes the reason to <root>/output/failure (SageMaker shows its first 1024 characters).
// Never throws: failing to write the failure file must not hide the original error.
void write_failure(const std::filesystem::path& root, const std::string& reason);

}  // namespace kiln::train
