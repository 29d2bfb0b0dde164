// SageMaker training-container contract (see container.h).
#include "kiln/train/container.h"

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/train/hyperparameters.h"

namespace kiln::train {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path opt_ml_root(const std::string& option_value) {
  if (!option_value.empty()) return option_value;
  if (const char* env = std::getenv("KILN_OPT_ML"); env && *env) return env;
  return "/opt/ml";
}

bool is_container_mode(const fs::path& root) {
  std::error_code ec;
  return fs::is_regular_file(root / "input" / "config" / "hyperparameters.json", ec);
}

namespace {

json parse_json_file(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(what, "valid JSON", "text that does not parse as JSON");
  return j;
}

}  // namespace

ContainerInputs read_container_inputs(const fs::path& root) {
  ContainerInputs in;
  fs::path config = root / "input" / "config";
  if (fs::exists(config / "resourceconfig.json")) {
    std::string what = (config / "resourceconfig.json").string();
    json rc = parse_json_file(read_file(config / "resourceconfig.json"), what);
    if (!rc.is_object()) fail(what, "a JSON object", rc.dump().substr(0, 80));
    if (rc.contains("current_host") && rc["current_host"].is_string())
      in.current_host = rc["current_host"].get<std::string>();
    if (rc.contains("hosts")) {
      if (!rc["hosts"].is_array()) fail(what + ": hosts", "an array of host names", rc["hosts"].dump());
      for (const auto& h : rc["hosts"]) {
        // The names go into mpirun's and ssh's command lines: nothing a shell would read.
        const bool ok = h.is_string() && !h.get<std::string>().empty() && h.get<std::string>().size() <= 253 &&
                        h.get<std::string>().find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "0123456789-.") == std::string::npos &&
                        h.get<std::string>()[0] != '-';
        if (!ok) fail(what + ": hosts", "host names of letters, digits, '-' and '.'", h.dump().substr(0, 80));
        in.hosts.push_back(h.get<std::string>());
      }
      std::sort(in.hosts.begin(), in.hosts.end());
      if (std::adjacent_find(in.hosts.begin(), in.hosts.end()) != in.hosts.end())
        fail(what + ": hosts", "distinct host names", rc["hosts"].dump().substr(0, 200));
      if ((in.hosts.size() > 1 || !in.current_host.empty()) && std::find(in.hosts.begin(), in.hosts.end(), in.current_host) == in.hosts.end())
        fail(what + ": current_host", "one of hosts " + rc["hosts"].dump().substr(0, 200),
             "\"" + in.current_host + "\"");
    }
    if (rc.contains("network_interface_name") && rc["network_interface_name"].is_string())
      in.network_interface_name = rc["network_interface_name"].get<std::string>();
    if (in.network_interface_name.find_first_of(" \t\n'\"\\;$`") != std::string::npos)
      fail(what + ": network_interface_name", "an interface name", "\"" + in.network_interface_name + "\"");
  }
  if (fs::exists(config / "inputdataconfig.json")) {
    std::string what = (config / "inputdataconfig.json").string();
    json ic = parse_json_file(read_file(config / "inputdataconfig.json"), what);
    if (!ic.is_object()) fail(what, "a JSON object of channels", ic.dump().substr(0, 80));
    for (const auto& [channel, spec] : ic.items()) {
      if (spec.is_object() && spec.contains("TrainingInputMode") && spec["TrainingInputMode"].is_string() &&
          spec["TrainingInputMode"].get<std::string>() == "Pipe")
        fail(what + ": channel \"" + channel + "\" TrainingInputMode", "File or FastFile", "Pipe",
             "kiln reads the dataset files; use input_mode='File'");
      if (channel == "training" && spec.is_object() && spec.contains("S3DistributionType")) {
        const json& d = spec["S3DistributionType"];
        if (!d.is_string() || (d != "FullyReplicated" && d != "ShardedByS3Key"))
          fail(what + ": channel \"training\" S3DistributionType", "FullyReplicated or ShardedByS3Key",
               d.dump().substr(0, 80));
        in.training_sharded_by_s3_key = d == "ShardedByS3Key";
      }
    }
  }
  in.training = root / "input" / "data" / "training";
  if (!fs::is_directory(in.training))
    fail("training channel " + in.training.string(), "a directory with the dataset", "nothing",
         "pass inputs={'training': 's3://bucket/data/cifar100'} to estimator.fit()");
  if (fs::is_directory(root / "input" / "data" / "test")) in.test = root / "input" / "data" / "test";
  return in;
}

TrainOptions container_options(const fs::path& root, const std::map<std::string, std::string>& cli_values,
                               std::vector<std::string>* notes) {
  fs::path hp_path = root / "input" / "config" / "hyperparameters.json";
  std::vector<std::string> parse_notes, hp_notes;
  std::vector<Hyperparameter> hp = parse_hyperparameters(read_file(hp_path), hp_path.string(), &parse_notes);
  for (const auto& n : parse_notes) hp_notes.push_back("note: " + n);
  std::map<std::string, std::string> values, what_of;
  for (const auto& h : hp) {
    values[h.option] = h.value;
    what_of[h.option] = hp_path.string() + ": hyperparameter \"" + h.key + "\"";
    hp_notes.push_back("hyperparameter " + h.option + " = " + h.value +
                       (cli_values.count(h.option) ? " (overridden by --" + h.option + ")" : ""));
  }
  for (const auto& [name, value] : cli_values) {
    values[name] = value;
    what_of.erase(name);
  }
  ContainerInputs in = read_container_inputs(root);
  TrainOptions o = options_from(values, what_of);
  o.data = in.training;
  o.test_data = in.test;
  // Several hosts, each with its own part of the training channel: the ranks of a host share out
  // its records (one host with ShardedByS3Key has every object: nothing changes).
  o.data_per_host = in.distributed() && in.training_sharded_by_s3_key;
  o.model_dir = root / "model";
  o.checkpoint_dir = root / "checkpoints";
  o.resume = true;
  if (o.log_dir.empty()) o.log_dir = root / "output" / "tensorboard";
  o.plain_progress = true;  // CloudWatch is no terminal
  // A `pretrained` channel holds torchvision's weights file (what `kiln sagemaker run` uploads
  // once): looked in first, and it implies --pretrained imagenet unless weights were chosen.
  const fs::path pre = root / "input" / "data" / "pretrained";
  if (fs::is_directory(pre)) {
    o.pretrained_search.push_back(pre);
    if (o.pretrained.empty() && o.weights.empty()) {
      o.pretrained = "imagenet";
      hp_notes.push_back("pretrained = imagenet (from the pretrained channel " + pre.string() + ")");
    }
  }
  if (notes) notes->insert(notes->end(), hp_notes.begin(), hp_notes.end());
  return o;
}

void write_failure(const fs::path& root, const std::string& reason) {
  try {
    fs::create_directories(root / "output");
    std::string text = reason;
    if (!text.empty() && text.back() != '\n') text += '\n';
    write_file_atomic(root / "output" / "failure", text);
  } catch (...) {
    // The caller still prints the reason and exits non-zero.
  }
}

}  // namespace kiln::train
