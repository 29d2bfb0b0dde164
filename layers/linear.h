// nn.Linear(in, out): weight (out,in), bias (out), both plain; x (N,in) plain -> (N,out).
// Built from options as in libtorch: Linear fc(LinearOptions(512, 100)). Always with a bias
// (ops::linear has no bias-free path).
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class Rng;

class LinearOptions {
 public:
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
};

class Linear : public Module {
 public:
  // Throws kiln::InvalidArgument naming the option when a count is not positive.
  explicit Linear(const LinearOptions& options);
  const char* type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) const;
  void reset_parameters(Rng& rng);  // nn.Linear's default init

  const LinearOptions options;
  Tensor weight, bias;
};

}  // namespace kiln::layers
