// Differentiable ops. Each records one tape entry (unless NoGrad) whose backward rule lives in
// the one op table (engine/autograd.cpp). Activations are (N,C,H,W) in whatever layout the
// producing convolution chose (blocked nChw16c/nChw8c, or plain); each op keeps its input's
// layout for its output, so nothing is reordered between ops in a steady-state step.
#pragma once

#include <cstdint>
#include <span>

#include "kiln/engine/tensor.h"

namespace kiln::ops {

// x (N,IC,H,W), weight (OC,IC,KH,KW), bias (OC) or an undefined Tensor -> (N,OC,OH,OW).
// On maps so small that every input position reaches every output position (ResNets' 1x1 and
// 2x2 maps at 32x32 inputs) it runs as one matrix product that skips the zero padding
// (engine/ops_conv.cpp); elsewhere oneDNN's convolution.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding);

// The batch-norm parameters of a conv2d_bn: weight/bias/running_* as for batch_norm.
struct BatchNormRef {
  const Tensor& weight;
  const Tensor& bias;
  const Tensor& running_mean;
  const Tensor& running_var;
  double momentum = 0.1;
  double eps = 1e-5;
};

// relu?(batch_norm(conv2d(x, weight)) [+ residual]): a ResNet's conv -> BN [-> add] [-> ReLU].
// In training, or whenever a gradient is recorded, exactly the separate ops. In inference (eval
// mode, nothing recorded) one convolution: the batch norm folded into its weights and bias
// (w * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps)), the residual add and
// the ReLU as its post-ops, so the activation is written once instead of three times. The
// folded weights are cached on `weight` and rebuilt when any of the five tensors changes.
// residual, when defined, has the output's shape.
Tensor conv2d_bn(const Tensor& x, const Tensor& weight, int64_t stride, int64_t padding,
                 const BatchNormRef& bn, bool training, bool relu, const Tensor& residual = Tensor());

// Batch norm over (N,H,W) per channel; x (N,C,H,W); weight/bias/running_* are (C).
// training: batch statistics, running stats updated with `momentum` and the UNBIASED variance
// (as PyTorch does); eval: running statistics. fuse_relu applies ReLU to the result in the
// same pass (oneDNN fuse_norm_relu; its workspace is kept for backward).
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  bool fuse_relu, double momentum = 0.1, double eps = 1e-5);

Tensor relu(const Tensor& x);
// x (N,C,H,W) -> (N,C,OH,OW), max over kernel x kernel windows (padding never wins).
Tensor max_pool2d(const Tensor& x, int64_t kernel = 3, int64_t stride = 2, int64_t padding = 1);
// x (N,C,H,W) in any layout -> (N,C,1,1) plain: the mean over H,W.
Tensor adaptive_avg_pool2d_1x1(const Tensor& x);
// (N,C,1,1) or (N,C,H,W) plain -> (N, C*H*W), sharing storage.
Tensor flatten(const Tensor& x);
// x (N,IC) plain, weight (OC,IC), bias (OC) -> (N,OC) plain
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// a + b (same shape; b is reordered to a's layout if it differs), optionally relu(a + b).
Tensor add(const Tensor& a, const Tensor& b, bool fuse_relu = false);
// logits (N,K) plain -> log-probabilities over dim 1
Tensor log_softmax(const Tensor& logits);
// log_probs (N,K) plain, labels: N class indices in [0,K) (a std::vector<int64_t> converts)
// -> scalar: mean over N of -log_probs[n, labels[n]]. Throws kiln::InvalidArgument when the
// number of labels is not N or a label is out of range.
Tensor nll_loss(const Tensor& log_probs, std::span<const int64_t> labels);

// Which convolution path conv2d takes: automatic (small maps skip padding) or padded (always
// oneDNN's convolution). Starts from KILN_CONV (auto | padded); not thread-safe to change
// while ops run.
enum class ConvPath { automatic, padded };
void set_conv_path(ConvPath path);
ConvPath conv_path();

}  // namespace kiln::ops
