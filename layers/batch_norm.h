// nn.BatchNorm2d(C): weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0;
// momentum 0.1, eps 1e-5. forward(x, fuse_relu) = relu(bn(x)) in one oneDNN pass when asked.
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels);
  const char* type_name() const override { return "BatchNorm2d"; }
  Tensor forward(const Tensor& x, bool fuse_relu = false);

  int64_t channels;
  double momentum = 0.1, eps = 1e-5;
  Tensor weight, bias, running_mean, running_var;
  int64_t num_batches_tracked = 0;
};

}  // namespace kiln::layers
