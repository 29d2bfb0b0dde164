// Engine-internal declarations shared by the op files: the backward rules the op table in
// engine/autograd.cpp points at, and small helpers.
#pragma once

#include <string>

#include "kiln/engine/autograd.h"

namespace kiln::ops::detail {

// NAME_backward for each op of KILN_OPS (engine/op_list.h): what the op table points at.
#define KILN_OP_BACKWARD(name) void name##_backward(autograd::Node& node);
KILN_OPS(KILN_OP_BACKWARD)
#undef KILN_OP_BACKWARD

// Whether t needs a gradient (defined and requires_grad).
inline bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
// Checks a 4-d activation; throws kiln::Error naming the op otherwise.
void check_4d(const char* op, const Tensor& x);

}  // namespace kiln::ops::detail
