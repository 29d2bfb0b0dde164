// Seeded initialisation as torchvision/PyTorch define it (distributions and scales; the random
// streams are kiln's own, so values differ from PyTorch's for the same seed).
// Rng is a SplitMix64 generator: portable and identical on every platform and compiler.
#pragma once

#include <cstdint>

#include "kiln/engine/tensor.h"

namespace kiln::layers {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();           // [0, 1)
  double normal();            // mean 0, std 1 (Box-Muller)
  Rng fork(uint64_t stream);  // an independent generator for a sub-module

 private:
  uint64_t state_;
  double spare_ = 0;  // Box-Muller gives two normals per draw
  bool has_spare_ = false;
};

void fill_constant(Tensor& t, float value);
void fill_uniform(Tensor& t, Rng& rng, double low, double high);
void fill_normal(Tensor& t, Rng& rng, double mean, double std);
// nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (OC*KH*KW))
void kaiming_normal_fan_out(Tensor& weight, Rng& rng);
// nn.Linear's default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))
void linear_default_init(Tensor& weight, Tensor& bias, Rng& rng);

}  // namespace kiln::layers
