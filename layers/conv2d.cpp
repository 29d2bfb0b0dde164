// nn.Conv2d on ops::conv2d (see layers/conv2d.h). Initialised by the owning model.
#include "kiln/layers/conv2d.h"

#include "kiln/engine/ops.h"

namespace kiln::layers {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool with_bias)
    : in_channels(in), out_channels(out), kernel(k), stride(s), padding(p) {
  weight = Tensor::zeros({out, in, k, k}, "weight");
  register_parameter("weight", weight);
  if (with_bias) {
    bias = Tensor::zeros({out}, "bias");
    register_parameter("bias", bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  return ops::conv2d(x, weight, bias, stride, padding);
}

}  // namespace kiln::layers
