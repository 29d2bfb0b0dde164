// The tape and THE op table: every differentiable op and its backward rule, in one place.
// Adding an op: a row in KILN_OPS (engine/op_list.h) and its forward + NAME_backward in one
// engine/ops_*.cpp file; the enum, this table and the declarations follow from the row.
#include "kiln/engine/autograd.h"

#include <cstring>

#include "kiln/core/error.h"
#include "kiln/engine/dnnl_ctx.h"
#include "kiln/engine/kernels.h"
#include "kiln/engine/ops_internal.h"

namespace kiln::autograd {

namespace {

namespace d = kiln::ops::detail;

// Indexed by OpKind: both come from KILN_OPS (engine/op_list.h, which also has the formulas).
constexpr OpDef kOpTable[] = {
#define KILN_OP_ROW(name) {#name, d::name##_backward},
    KILN_OPS(KILN_OP_ROW)
#undef KILN_OP_ROW
};
static_assert(sizeof(kOpTable) / sizeof(kOpTable[0]) == static_cast<size_t>(OpKind::count),
              "one row per OpKind");

thread_local std::vector<Node> t_tape;
thread_local GradReadyHook t_grad_ready_hook;

bool counts_uses(const Tensor& t) {
  return t.defined() && t.impl()->is_leaf && t.impl()->requires_grad;
}

// Whether writing into g in place can change anything but g (shared handles or views).
// Arena slices share one storage by design and never alias each other.
bool sole_owner(const Tensor& g) {
  return g.impl_ptr().use_count() == 1 &&
         (g.impl()->arena_slice || g.impl()->storage.use_count() == 1);
}

}  // namespace

const OpDef& op_def(OpKind op) { return kOpTable[static_cast<size_t>(op)]; }

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  return false;
}

void record(OpKind op, std::vector<Tensor> inputs, const Tensor& output,
            std::shared_ptr<void> saved) {
  output.impl()->requires_grad = true;
  output.impl()->is_leaf = false;
  for (const Tensor& t : inputs)
    if (counts_uses(t)) ++t.impl()->pending_uses;
  t_tape.push_back(Node{op, std::move(inputs), output, std::move(saved)});
}

void clear_tape() {
  for (Node& node : t_tape)
    for (const Tensor& t : node.inputs)
      if (counts_uses(t)) t.impl()->pending_uses = 0;
  t_tape.clear();
}
size_t tape_size() { return t_tape.size(); }

void accumulate_grad(const Tensor& t, const Tensor& g) {
  TensorImpl* impl = t.impl();
  KILN_ASSERT(g.impl()->md == impl->md || g.shape() == impl->shape,
              "gradient shape differs from " + impl->name);
  if (!impl->grad.defined()) {
    if (g.impl()->md == impl->md) {
      impl->grad = g;
    } else {
      impl->grad = reordered(g, impl->md);
    }
    impl->grad_zero = false;
    return;
  }
  Tensor src = g.impl()->md == impl->grad.impl()->md ? g : reordered(g, impl->grad.impl()->md);
  Tensor& dst = impl->grad;
  if (impl->grad_zero) {
    std::memcpy(dst.impl()->data, src.impl()->data, dst.impl()->bytes());
  } else {
    if (!sole_owner(dst)) {  // shared with another tensor's grad: copy before writing
      Tensor copy = make_tensor(dst.shape(), dst.impl()->md, dst.name());
      std::memcpy(copy.impl()->data, dst.impl()->data, dst.impl()->bytes());
      dst = copy;
    }
    kernels::table().accumulate(dst.impl()->data, src.impl()->data, dst.impl()->storage_floats());
  }
  impl->grad_zero = false;
}

GradSink grad_sink(const Tensor& t, const dnnl::memory::desc& md) {
  TensorImpl* impl = t.impl();
  GradSink sink;
  if (!impl->grad.defined()) {
    impl->grad = make_tensor(impl->shape, impl->md, impl->name + ".grad");
    impl->grad_zero = true;
  }
  if (impl->grad_zero && impl->grad.impl()->md == md && sole_owner(impl->grad)) {
    sink.target = impl->grad;
    sink.accumulate = false;
  } else {
    sink.target = make_tensor(impl->shape, md, impl->name + ".grad");
    sink.accumulate = true;
  }
  return sink;
}

void finish_grad(const Tensor& t, GradSink& sink) {
  if (sink.accumulate) {
    accumulate_grad(t, sink.target);
  } else {
    t.impl()->grad_zero = false;
  }
  sink.target = Tensor();
}

}  // namespace kiln::autograd

namespace kiln {

void set_grad_ready_hook(GradReadyHook hook) { autograd::t_grad_ready_hook = std::move(hook); }

void Tensor::backward() const {
  KILN_ASSERT(numel() == 1, "backward() starts from a scalar; " + name() + " has " +
                                std::to_string(numel()) + " elements");
  Tensor one = make_tensor(shape(), impl()->md, name() + ".grad");
  one.impl()->data[0] = 1.0f;
  backward(one);
}

void Tensor::backward(const Tensor& grad_output) const {
  using namespace autograd;
  KILN_ASSERT(requires_grad(), "backward(): " + name() + " does not require grad");
  KILN_ASSERT(grad_output.shape() == shape(), "backward(): gradient shape differs");
  impl()->grad = grad_output.impl()->md == impl()->md ? grad_output
                                                       : reordered(grad_output, impl()->md);
  impl()->grad_zero = false;
  std::vector<Node>& tape = t_tape;
  for (size_t i = tape.size(); i-- > 0;) {
    Node& node = tape[i];
    if (node.output.impl()->grad.defined()) op_def(node.op).backward(node);
    // Free the graph as we go: the output's grad and everything the node saved.
    if (!node.output.impl()->is_leaf) node.output.impl()->grad = Tensor();
    for (const Tensor& t : node.inputs) {
      if (!counts_uses(t) || --t.impl()->pending_uses > 0) continue;
      // Even a leaf this backward never reached is final: its gradient is what it was.
      if (t_grad_ready_hook) t_grad_ready_hook(t);
    }
    node = Node{};
  }
  tape.clear();
}

}  // namespace kiln
