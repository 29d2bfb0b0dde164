// Evaluation over a loader's epoch (eval mode, no grad): mean per-sample nll loss, accuracy and
// per-class counts, predictions by models::argmax over the log-probabilities. Used for
// validation and the test in training and by `kiln eval`.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/data/loader.h"
#include "kiln/models/classifier.h"

namespace kiln::train {

struct EvalResult {
  double loss = 0, acc = 0;
  int64_t count = 0;
  std::vector<int64_t> class_total, class_correct;
  bool interrupted = false;  // stopped early by SIGTERM/SIGINT (only when stop_on_signal)
};

EvalResult evaluate_loader(models::Classifier& clf, data::Loader& loader, int64_t num_classes,
                           bool stop_on_signal = false);

}  // namespace kiln::train
