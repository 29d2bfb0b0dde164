// SageMaker training-container contract for `kiln train` (docs/train.md). The /opt/ml
// root can be moved (--opt-ml DIR or KILN_OPT_ML) so tests and `kiln pipeline --local` run it in a
// temporary tree. Layout under the root:
//   input/config/{hyperparameters,resourceconfig,inputdataconfig}.json, input/data/<channel>/,
//   model/, checkpoints/, output/failure (written on failure), output/data/ (uploaded by SageMaker).
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace kiln::cli {

// The /opt/ml root: `option_value` when non-empty, else $KILN_OPT_ML, else "/opt/ml".
std::filesystem::path opt_ml_root(const std::string& option_value);

// Container mode applies when hyperparameters.json exists under the root.
bool is_container_mode(const std::filesystem::path& root);

struct HyperOption {
  std::string name;  // kiln train option name without the leading dashes: "batch-size"
  bool is_flag = false;
};

// hyperparameters.json -> ("--name", value) pairs to apply to kiln train's options.
// Every value is a string, possibly JSON-encoded once more by the SageMaker Python SDK: "4" and
// "\"4\"" both give 4 (non-string JSON values are accepted too). `_` in names is read as `-`
// (batch_size == batch-size). Flags take true/false/1/0/yes/no; false leaves the flag off.
// Keys starting with "sagemaker_" (set by the SDK's framework estimators) are skipped, with a
// note in `notes`. Unknown names throw kiln::Error listing the known ones.
std::vector<std::pair<std::string, std::string>> parse_hyperparameters(
    const std::string& json_text, const std::string& what, const std::vector<HyperOption>& known,
    std::vector<std::string>* notes);

struct ContainerInputs {
  std::filesystem::path training;  // input/data/training
  std::filesystem::path test;      // input/data/test when that channel exists, else empty
  std::string current_host;        // from resourceconfig.json ("" when absent)
};

// Reads resourceconfig.json (one host only: kiln trains on one instance) and
// inputdataconfig.json (File or FastFile mode; Pipe mode is refused), and checks the
// `training` channel directory exists.
ContainerInputs read_container_inputs(const std::filesystem::path& root);

// Writes the reason to <root>/output/failure (SageMaker shows its first 1024 characters).
// Never throws: failing to write the failure file must not hide the original error.
void write_failure(const std::filesystem::path& root, const std::string& reason);

}  // namespace kiln::cli
