// Evaluation (see evaluate.h).
#include "kiln/train/evaluate.h"

#include "kiln/core/error.h"
#include "kiln/models/argmax.h"
#include "kiln/train/stop_signal.h"

namespace kiln::train {

EvalResult evaluate_loader(models::Classifier& clf, data::Loader& loader, int64_t num_classes,
                           bool stop_on_signal) {
  EvalResult r;
  r.class_total.assign(static_cast<size_t>(num_classes), 0);
  r.class_correct.assign(static_cast<size_t>(num_classes), 0);
  std::vector<float> log_probs;
  double loss_sum = 0;
  int64_t correct = 0;
  data::Batch b;
  while (loader.next(b)) {
    if (stop_on_signal && stop_requested()) {
      r.interrupted = true;
      break;
    }
    log_probs.resize(static_cast<size_t>(b.n * num_classes));
    clf.predict_log_probs(b.images, b.n, log_probs.data());
    for (int64_t i = 0; i < b.n; ++i) {
      const float* lp = log_probs.data() + i * num_classes;
      const int64_t y = b.labels[i];
      KILN_ASSERT(y >= 0 && y < num_classes, "label out of range");
      loss_sum -= lp[y];
      r.class_total[static_cast<size_t>(y)]++;
      if (models::argmax(lp, num_classes) == y) {
        ++correct;
        r.class_correct[static_cast<size_t>(y)]++;
      }
    }
    r.count += b.n;
  }
  if (r.count > 0) {
    r.loss = loss_sum / static_cast<double>(r.count);
    r.acc = static_cast<double>(correct) / static_cast<double>(r.count);
  }
  return r;
}

}  // namespace kiln::train
