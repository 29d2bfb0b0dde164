// The predicted class of a row of scores (log-probabilities, logits): the one place kiln turns
// scores into a class. Semantics are torch.argmax's on CPU: the first maximum wins ties, and a
// NaN counts as larger than any number (the first NaN wins), so a broken model is not hidden.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/array.h"

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

// torch.argmax(scores, dim=1): scores (N,K) with K >= 1 -> N classes in [0, K).
// Throws kiln::InvalidArgument naming the tensor for another shape.
inline std::vector<int64_t> argmax(const Tensor& scores) {
  if (!scores.defined()) fail_argument("argmax scores", "an (N, K) tensor", "an undefined tensor");
  if (scores.shape().size() != 2 || scores.dim(1) < 1)
    fail_argument("argmax scores " + scores.name(), "an (N, K) tensor with K >= 1",
                  io::shape_str(scores.shape()));
  const int64_t n = scores.dim(0), k = scores.dim(1);
  std::vector<float> plain = scores.to_plain_vector();
  std::vector<int64_t> classes(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) classes[static_cast<size_t>(i)] = argmax(plain.data() + i * k, k);
  return classes;
}

}  // namespace kiln::models
