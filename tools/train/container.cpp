// SageMaker training-container contract (see container.h).
#include "tools/train/container.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kiln::cli {

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
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail(what, "valid JSON", std::string("a parse error: ") + e.what());
  }
}

// "4" -> 4; "\"4\"" -> 4; "\"onecycle\"" -> onecycle. Only one level of JSON encoding is undone,
// and only when the string is a JSON string literal: "1e-3" stays "1e-3".
std::string decode_value(const json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
      try {
        json inner = json::parse(s);
        if (inner.is_string()) return inner.get<std::string>();
      } catch (const json::parse_error&) {
      }
    }
    return s;
  }
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return v.dump();  // floats and anything else: their JSON text
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_hyperparameters(
    const std::string& json_text, const std::string& what, const std::vector<HyperOption>& known,
    std::vector<std::string>* notes) {
  json j = parse_json_file(json_text, what);
  if (!j.is_object()) fail(what, "a JSON object of name: value", j.dump().substr(0, 80));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : j.items()) {
    if (key.rfind("sagemaker_", 0) == 0) {
      if (notes) notes->push_back("ignoring SageMaker SDK hyperparameter " + key);
      continue;
    }
    std::string name = key;
    for (char& c : name)
      if (c == '_') c = '-';
    const HyperOption* opt = nullptr;
    for (const auto& k : known)
      if (k.name == name) opt = &k;
    if (!opt) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k.name;
      fail(what + ": hyperparameter \"" + key + "\"", "one of the known names: " + names,
           "an unknown name", "names are kiln train's option names without the leading dashes");
    }
    std::string v = decode_value(value);
    if (opt->is_flag) {
      std::string lower;
      for (char c : v) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "true" || lower == "1" || lower == "yes" || lower.empty())
        out.emplace_back("--" + name, "1");
      else if (lower != "false" && lower != "0" && lower != "no")
        fail(what + ": hyperparameter \"" + key + "\"", "true or false", "'" + v + "'");
    } else {
      out.emplace_back("--" + name, v);
    }
  }
  return out;
}

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
      if (rc["hosts"].size() > 1)
        fail(what + ": hosts", "one host", std::to_string(rc["hosts"].size()) + " hosts",
             "kiln trains on a single instance: set instance_count=1 in the estimator");
    }
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
    }
  }
  in.training = root / "input" / "data" / "training";
  if (!fs::is_directory(in.training))
    fail("training channel " + in.training.string(), "a directory with the dataset", "nothing",
         "pass inputs={'training': 's3://bucket/data/cifar100'} to estimator.fit()");
  if (fs::is_directory(root / "input" / "data" / "test")) in.test = root / "input" / "data" / "test";
  return in;
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

}  // namespace kiln::cli
