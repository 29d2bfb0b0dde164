// The predicted class of a row of scores (log-probabilities, logits): the one place kiln turns
// scores into a class. Semantics are torch.argmax's on CPU: the first maximum wins ties, and a
// NaN counts as larger than any number (the first NaN wins), so a broken model is not hidden.
#pragma once

#include <cmath>
#include <cstdint>

namespace kiln::models {

// scores: n >= 1 floats. Returns an index in [0, n).
inline int64_t argmax(const float* scores, int64_t n) {
  int64_t best = 0;
  if (std::isnan(scores[0])) return 0;
  for (int64_t k = 1; k < n; ++k) {
    if (std::isnan(scores[k])) return k;
    if (scores[k] > scores[best]) best = k;
  }
  return best;
}

}  // namespace kiln::models
