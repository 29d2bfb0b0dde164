// nn.Conv2d (square kernel, symmetric padding, no dilation/groups): weight (OC,IC,K,K), bias
// optional. The weight keeps the layout the convolution chose (blocked, e.g. OIhw16i16o).
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
         int64_t padding, bool bias);
  const char* type_name() const override { return "Conv2d"; }
  Tensor forward(const Tensor& x) const;

  int64_t in_channels, out_channels, kernel, stride, padding;
  Tensor weight, bias;  // bias undefined when built without one
};

}  // namespace kiln::layers
