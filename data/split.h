// The reference's random_split of the 50,000 training records into train/validation, made
// deterministic for a seed (kiln's own RNG: the indices differ from torch.randperm's).
// val_size 0 keeps every record, in file order.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::data {

struct SplitIndices {
  std::vector<int64_t> train;  // sorted ascending (file order)
  std::vector<int64_t> val;    // sorted ascending
};

// n records; `val_size` of them (0 <= val_size <= n) chosen at random for validation.
SplitIndices split(int64_t n, int64_t val_size, uint64_t seed);

}  // namespace kiln::data
