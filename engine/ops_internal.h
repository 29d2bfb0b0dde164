// Engine-internal declarations shared by the op files: the backward rules the op table in
// engine/autograd.cpp points at, and small helpers.
#pragma once

#include <string>

#include "engine/autograd.h"

namespace kiln::ops::detail {

void conv2d_backward(autograd::Node& node);
void batch_norm_backward(autograd::Node& node);
void relu_backward(autograd::Node& node);
void max_pool2d_backward(autograd::Node& node);
void avg_pool_1x1_backward(autograd::Node& node);
void flatten_backward(autograd::Node& node);
void linear_backward(autograd::Node& node);
void add_backward(autograd::Node& node);
void log_softmax_backward(autograd::Node& node);
void nll_loss_backward(autograd::Node& node);

// Whether t needs a gradient (defined and requires_grad).
inline bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
// Checks a 4-d activation; throws kiln::Error naming the op otherwise.
void check_4d(const char* op, const Tensor& x);

}  // namespace kiln::ops::detail
