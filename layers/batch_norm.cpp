// nn.BatchNorm2d on ops::batch_norm (see layers/batch_norm.h).
#include "kiln/layers/batch_norm.h"

#include "kiln/core/error.h"
#include "kiln/engine/ops.h"
#include "kiln/layers/init.h"

namespace kiln::layers {

namespace {
const BatchNorm2dOptions& checked(const BatchNorm2dOptions& o) {
  if (o.num_features() < 1)
    fail_argument("BatchNorm2dOptions num_features", "a positive value",
                  std::to_string(o.num_features()));
  if (!(o.eps() > 0))
    fail_argument("BatchNorm2dOptions eps", "a positive value", std::to_string(o.eps()));
  if (!(o.momentum() >= 0 && o.momentum() <= 1))
    fail_argument("BatchNorm2dOptions momentum", "a value in [0, 1]", std::to_string(o.momentum()));
  return o;
}
}  // namespace

BatchNorm2d::BatchNorm2d(const BatchNorm2dOptions& o) : options(checked(o)) {
  const int64_t c = o.num_features();
  weight = Tensor::zeros({c}, "weight");
  bias = Tensor::zeros({c}, "bias");
  running_mean = Tensor::zeros({c}, "running_mean");
  running_var = Tensor::zeros({c}, "running_var");
  fill_constant(weight, 1.0f);
  fill_constant(running_var, 1.0f);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  register_buffer("running_mean", running_mean);
  register_buffer("running_var", running_var);
  register_counter("num_batches_tracked", num_batches_tracked);
}

Tensor BatchNorm2d::forward(const Tensor& x, bool fuse_relu) {
  if (training()) ++num_batches_tracked;
  return ops::batch_norm(x, weight, bias, running_mean, running_var, training(), fuse_relu,
                         options.momentum(), options.eps());
}

}  // namespace kiln::layers
