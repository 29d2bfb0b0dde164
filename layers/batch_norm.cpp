// nn.BatchNorm2d on ops::batch_norm (see layers/batch_norm.h).
#include "kiln/layers/batch_norm.h"

#include "kiln/engine/ops.h"
#include "kiln/layers/init.h"

namespace kiln::layers {

BatchNorm2d::BatchNorm2d(int64_t c) : channels(c) {
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
                         momentum, eps);
}

}  // namespace kiln::layers
