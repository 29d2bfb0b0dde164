// Elementwise ops on kiln's own kernels (engine/kernels.h, dispatched per ISA): relu, the
// residual add (optionally fused with the ReLU after it) and flatten (a view). They work on
// the raw storage, so any layout is fine as long as every operand shares it.
#include "kiln/core/error.h"
#include "kiln/engine/kernels.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/ops_internal.h"
#include "kiln/io/array.h"

namespace kiln::ops {

namespace {
struct AddSaved {
  bool relu;
};
}  // namespace

Tensor relu(const Tensor& x) {
  Tensor dst = make_tensor(x.shape(), x.impl()->md, x.name() + ".relu");
  kernels::table().relu_forward(x.impl()->data, dst.impl()->data, x.impl()->storage_floats());
  if (autograd::should_record({&x})) autograd::record(autograd::OpKind::relu, {x}, dst, nullptr);
  return dst;
}

Tensor add(const Tensor& a, const Tensor& b, bool fuse_relu) {
  if (a.shape() != b.shape())
    fail("add " + a.name() + " + " + b.name(), io::shape_str(a.shape()), io::shape_str(b.shape()));
  Tensor b_same = b.impl()->md == a.impl()->md ? b : reordered(b, a.impl()->md);
  Tensor dst = make_tensor(a.shape(), a.impl()->md, a.name() + ".add");
  kernels::table().add(a.impl()->data, b_same.impl()->data, dst.impl()->data,
                       a.impl()->storage_floats(), fuse_relu);
  if (autograd::should_record({&a, &b}))
    autograd::record(autograd::OpKind::add, {a, b}, dst,
                     std::make_shared<AddSaved>(AddSaved{fuse_relu}));
  return dst;
}

Tensor flatten(const Tensor& x) {
  KILN_ASSERT(x.shape().size() >= 2, "flatten needs at least 2 dimensions: " + x.name());
  Tensor src = x.is_plain() ? x : reordered(x, plain_md(x.shape()));
  int64_t rest = x.numel() / x.dim(0);
  Tensor dst = make_view(src, {x.dim(0), rest}, x.name() + ".flat");
  if (autograd::should_record({&x}))
    autograd::record(autograd::OpKind::flatten, {x}, dst, nullptr);
  return dst;
}

namespace detail {

void relu_backward(autograd::Node& node) {
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  const Tensor& dy = node.output.grad();
  Tensor dx = make_tensor(x.shape(), x.impl()->md, x.name() + ".grad");
  kernels::table().relu_backward(node.output.impl()->data, dy.impl()->data, dx.impl()->data,
                                 dx.impl()->storage_floats());
  autograd::accumulate_grad(x, dx);
}

void add_backward(autograd::Node& node) {
  bool relu = static_cast<AddSaved*>(node.saved.get())->relu;
  const Tensor& dy = node.output.grad();
  Tensor g = dy;
  if (relu) {
    g = make_tensor(dy.shape(), dy.impl()->md, node.output.name() + ".grad");
    kernels::table().relu_backward(node.output.impl()->data, dy.impl()->data, g.impl()->data,
                                   g.impl()->storage_floats());
  }
  // Both inputs receive the same gradient: they share it (accumulate_grad copies on write).
  for (const Tensor& in : node.inputs)
    if (wants_grad(in)) autograd::accumulate_grad(in, g);
}

void flatten_backward(autograd::Node& node) {
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  const Tensor& dy = node.output.grad();
  Tensor dx = make_view(dy, x.shape(), x.name() + ".grad");
  autograd::accumulate_grad(x, dx);  // reorders into x's layout if x was blocked
}

}  // namespace detail
}  // namespace kiln::ops
