// hyperparameters.json decoding (see hyperparameters.h).
#include "kiln/train/hyperparameters.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "kiln/core/error.h"
#include "kiln/train/options.h"

namespace kiln::train {

using nlohmann::json;

namespace {

// "4" -> 4; "\"4\"" -> 4; "\"onecycle\"" -> onecycle. Only one level of JSON encoding is undone,
// and only when the string is a JSON string literal: "1e-3" stays "1e-3".
std::string decode_value(const json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
      json inner = json::parse(s, nullptr, /*allow_exceptions=*/false);
      if (inner.is_string()) return inner.get<std::string>();
    }
    return s;
  }
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return v.dump();  // floats and anything else: their JSON text
}

std::string dashed(const std::string& key) {
  std::string name = key;
  for (char& c : name)
    if (c == '_') c = '-';
  return name;
}

const OptionSpec* find_hyperparameter(const std::string& name) {
  for (const auto& s : option_table()) {
    if (!s.hyperparameter) continue;
    if (s.name == name) return &s;
    for (const auto& a : s.aliases)
      if (a == name) return &s;
  }
  return nullptr;
}

}  // namespace

std::string accepted_hyperparameter_names() {
  std::string names;
  for (const auto& s : option_table()) {
    if (!s.hyperparameter) continue;
    names += (names.empty() ? "" : ", ") + s.name;
    for (const auto& a : s.aliases) names += " (or " + a + ")";
  }
  return names;
}

std::vector<Hyperparameter> parse_hyperparameters(const std::string& json_text, const std::string& what,
                                                  std::vector<std::string>* notes) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(what, "valid JSON", "text that does not parse as JSON");
  if (!j.is_object()) fail(what, "a JSON object of name: value", std::string("a JSON ") + j.type_name());
  std::vector<Hyperparameter> out;
  for (const auto& [key, value] : j.items()) {
    if (key.rfind("sagemaker_", 0) == 0) {
      if (notes) notes->push_back("ignoring SageMaker SDK hyperparameter " + key);
      continue;
    }
    const OptionSpec* spec = find_hyperparameter(dashed(key));
    const std::string field = what + ": hyperparameter \"" + key + "\"";
    if (!spec)
      fail(field, "one of the accepted names: " + accepted_hyperparameter_names(), "an unknown name",
           "`_` and `-` are interchangeable (batch_size = batch-size); see docs/train.md");
    Hyperparameter h{spec->name, key, decode_value(value)};
    if (spec->is_flag()) {
      std::string lower;
      for (char c : h.value) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "false" || lower == "0" || lower == "no") continue;
      if (lower != "true" && lower != "1" && lower != "yes" && !lower.empty())
        fail(field, "true or false", "'" + h.value + "'");
      h.value = "1";
    }
    for (const auto& prev : out)
      if (prev.option == h.option && prev.value != h.value)
        fail(field, "one value for option " + h.option, "\"" + prev.key + "\": '" + prev.value + "' and \"" + key +
             "\": '" + h.value + "'", "give the option once");
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace kiln::train
