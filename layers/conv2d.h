// nn.Conv2d (square kernel, symmetric padding, no dilation/groups): weight (OC,IC,K,K), bias
// optional. The weight keeps the layout the convolution chose (blocked, e.g. OIhw16i16o).
// Built from options as in libtorch:
//   Conv2d conv(Conv2dOptions(64, 128, 3).stride(2).padding(1).bias(false));
// Defaults are nn.Conv2d's: stride 1, padding 0, with a bias.
#pragma once

#include "kiln/layers/module.h"

namespace kiln::layers {

class Conv2dOptions {
 public:
  Conv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  Conv2dOptions& stride(int64_t v) { stride_ = v; return *this; }
  Conv2dOptions& padding(int64_t v) { padding_ = v; return *this; }
  Conv2dOptions& bias(bool v) { bias_ = v; return *this; }

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  int64_t kernel_size() const { return kernel_size_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }
  bool bias() const { return bias_; }

 private:
  int64_t in_channels_, out_channels_, kernel_size_;
  int64_t stride_ = 1, padding_ = 0;
  bool bias_ = true;
};

class Conv2d : public Module {
 public:
  // Throws kiln::InvalidArgument naming the option when a count is not positive (padding < 0).
  explicit Conv2d(const Conv2dOptions& options);
  const char* type_name() const override { return "Conv2d"; }
  Tensor forward(const Tensor& x) const;

  const Conv2dOptions options;
  Tensor weight, bias;  // bias undefined when built with bias(false)
};

}  // namespace kiln::layers
