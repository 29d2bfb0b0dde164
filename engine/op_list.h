// THE list of kiln's differentiable ops. Everything that enumerates ops is generated from it:
// the OpKind enum (engine/autograd.h), the op table of names and backward rules
// (engine/autograd.cpp) and the backward declarations (engine/ops_internal.h), so a row cannot
// be added, dropped or swapped in one place only. Each op NAME has its forward and
// `NAME_backward(autograd::Node&)` in one engine/ops_*.cpp file. The gradients:
//   conv2d        dx = conv_bwd_data(w, dy); dw, db = conv_bwd_weights (small maps: one GEMM each)
//   batch_norm    oneDNN bnorm backward (with the ReLU workspace when fused)
//   relu          dx = y > 0 ? dy : 0
//   max_pool2d    dy routed to the argmax kept in the workspace
//   avg_pool_1x1  dx[n,c,h,w] = dy[n,c] / (H*W)
//   flatten       dx = dy viewed with x's shape
//   linear        dx = dy W; dW = dy^T x; db = sum_n dy
//   add           da = db = dy (or dy * (y > 0) with the fused relu)
//   log_softmax   dx = dy - exp(y) * sum(dy)
//   nll_loss      dlogp[n, label] = -dloss / N
#pragma once

#define KILN_OPS(X) \
  X(conv2d)         \
  X(batch_norm)     \
  X(relu)           \
  X(max_pool2d)     \
  X(avg_pool_1x1)   \
  X(flatten)        \
  X(linear)         \
  X(add)            \
  X(log_softmax)    \
  X(nll_loss)
