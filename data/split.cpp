// Deterministic train/validation split (see split.h).
#include "kiln/data/split.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "kiln/core/error.h"
#include "kiln/data/rng.h"

namespace kiln::data {

SplitIndices split(int64_t n, int64_t val_size, uint64_t seed) {
  if (val_size < 0 || val_size > n)
    fail("--val-size", "a number of validation records in [0, " + std::to_string(n) + "]",
         std::to_string(val_size));
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  // Partial Fisher-Yates: the last val_size slots become the validation records.
  Rng rng(mix_seed(seed, 0x73706C6974ull));  // "split"
  for (int64_t i = n - 1; i >= n - val_size && i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  SplitIndices s;
  s.train.assign(perm.begin(), perm.begin() + (n - val_size));
  s.val.assign(perm.begin() + (n - val_size), perm.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  return s;
}

}  // namespace kiln::data
