// nn.Linear on ops::linear (see layers/linear.h).
#include "kiln/layers/linear.h"

#include "kiln/core/error.h"
#include "kiln/engine/ops.h"
#include "kiln/layers/init.h"

namespace kiln::layers {

namespace {
const LinearOptions& checked(const LinearOptions& o) {
  if (o.in_features() < 1)
    fail_argument("LinearOptions in_features", "a positive value", std::to_string(o.in_features()));
  if (o.out_features() < 1)
    fail_argument("LinearOptions out_features", "a positive value",
                  std::to_string(o.out_features()));
  return o;
}
}  // namespace

Linear::Linear(const LinearOptions& o) : options(checked(o)) {
  weight = Tensor::zeros({o.out_features(), o.in_features()}, "weight");
  bias = Tensor::zeros({o.out_features()}, "bias");
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor Linear::forward(const Tensor& x) const { return ops::linear(x, weight, bias); }

void Linear::reset_parameters(Rng& rng) { linear_default_init(weight, bias, rng); }

}  // namespace kiln::layers
