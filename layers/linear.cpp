// nn.Linear on ops::linear (see layers/linear.h).
#include "kiln/layers/linear.h"

#include "kiln/engine/ops.h"
#include "kiln/layers/init.h"

namespace kiln::layers {

Linear::Linear(int64_t in, int64_t out) : in_features(in), out_features(out) {
  weight = Tensor::zeros({out, in}, "weight");
  bias = Tensor::zeros({out}, "bias");
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor Linear::forward(const Tensor& x) const { return ops::linear(x, weight, bias); }

void Linear::reset_parameters(Rng& rng) { linear_default_init(weight, bias, rng); }

}  // namespace kiln::layers
