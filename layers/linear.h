// nn.Linear(in, out): weight (out,in), bias (out), both plain; x (N,in) plain -> (N,out).
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class Rng;

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features);
  const char* type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) const;
  void reset_parameters(Rng& rng);  // nn.Linear's default init

  int64_t in_features, out_features;
  Tensor weight, bias;
};

}  // namespace kiln::layers
