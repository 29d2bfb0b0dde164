// SageMaker's hyperparameters.json -> training option values. Names are the option table's
// (train/options.h) plus its aliases, the notebook's among them (`learning_rate` for lr);
// `_` and `-` are interchangeable. Every value is a string, possibly JSON-encoded once more by
// the SageMaker Python SDK: "4" and "\"4\"" both give 4 (non-string JSON values are accepted
// too). Flags take true/false/1/0/yes/no; false leaves the flag off. Keys starting with
// "sagemaker_" (set by the SDK's framework estimators) are skipped with a note. An unknown name,
// or two names for one option with different values, throws kiln::Error naming the accepted ones.
// This is the entry point the fuzz harness drives: text in, values or kiln::Error out.
#pragma once

#include <string>
#include <vector>

namespace kiln::train {

struct Hyperparameter {
  std::string option;  // the option table's name: "lr"
  std::string key;     // as written in the file: "learning_rate"
  std::string value;   // decoded text; "1" for a flag that is on
};

std::vector<Hyperparameter> parse_hyperparameters(const std::string& json_text, const std::string& what,
                                                  std::vector<std::string>* notes = nullptr);

// "epochs, max-steps, batch-size, lr (or learning-rate), ..." (for messages and docs).
std::string accepted_hyperparameter_names();

}  // namespace kiln::train
