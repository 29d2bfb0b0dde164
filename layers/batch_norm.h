// nn.BatchNorm2d(C): weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0;
// momentum 0.1, eps 1e-5 unless the options say otherwise (libtorch's style):
//   BatchNorm2d bn(BatchNorm2dOptions(64).eps(1e-3).momentum(0.01));   or simply bn(64)
// forward(x, fuse_relu) = relu(bn(x)) in one oneDNN pass when asked.
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class BatchNorm2dOptions {
 public:
  // Implicit, as libtorch's: BatchNorm2d bn(64).
  BatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT
  BatchNorm2dOptions& eps(double v) { eps_ = v; return *this; }
  BatchNorm2dOptions& momentum(double v) { momentum_ = v; return *this; }

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }

 private:
  int64_t num_features_;
  double eps_ = 1e-5, momentum_ = 0.1;
};

class BatchNorm2d : public Module {
 public:
  // Throws kiln::InvalidArgument naming the option (num_features < 1, eps <= 0, momentum
  // outside [0, 1]).
  explicit BatchNorm2d(const BatchNorm2dOptions& options);
  const char* type_name() const override { return "BatchNorm2d"; }
  Tensor forward(const Tensor& x, bool fuse_relu = false);

  const BatchNorm2dOptions options;
  Tensor weight, bias, running_mean, running_var;
  int64_t num_batches_tracked = 0;
};

}  // namespace kiln::layers
