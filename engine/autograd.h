// Reverse-mode autograd (engine-internal). Each op run under grad mode appends one Node to
// this thread's tape: its kind (an index into the one op table, engine/autograd.cpp), its
// inputs, its output and what its backward needs (`saved`: workspaces, statistics, the cached
// primitives). Tensor::backward() walks the tape in reverse, runs each node's rule, frees the
// node as soon as it has run, and clears the tape.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/engine/op_list.h"
#include "kiln/engine/tensor_impl.h"

namespace kiln::autograd {

// One per row of KILN_OPS (engine/op_list.h), in its order.
enum class OpKind : uint8_t {
#define KILN_OP_KIND(name) name,
  KILN_OPS(KILN_OP_KIND)
#undef KILN_OP_KIND
  count
};

struct Node {
  OpKind op;
  std::vector<Tensor> inputs;   // in the op's argument order (undefined: no grad wanted)
  Tensor output;
  std::shared_ptr<void> saved;  // op-specific context
};

// Backward rule: reads node.output.grad(), adds into each input's grad.
using BackwardFn = void (*)(Node& node);
struct OpDef {
  const char* name;
  BackwardFn backward;
};
const OpDef& op_def(OpKind op);

// True when an op with these inputs must record a node (grad mode on, some input needs grad).
bool should_record(std::initializer_list<const Tensor*> inputs);
// Appends a node and marks output as requiring grad.
void record(OpKind op, std::vector<Tensor> inputs, const Tensor& output,
            std::shared_ptr<void> saved);
void clear_tape();
size_t tape_size();

// --- gradient accumulation helpers for backward rules ---
// Adds g into t's grad (adopting g's storage when t has none yet). g may be shared with
// other tensors' grads; an in-place accumulation copies first if the grad is shared.
void accumulate_grad(const Tensor& t, const Tensor& g);
// For primitives that overwrite their output: the tensor to write t's gradient into, in
// layout md. When t's grad is absent or known to be zero it is t's grad itself (created if
// needed); otherwise a scratch tensor that finish_grad() then adds into t's grad.
struct GradSink {
  Tensor target;
  bool accumulate = false;
};
GradSink grad_sink(const Tensor& t, const dnnl::memory::desc& md);
void finish_grad(const Tensor& t, GradSink& sink);

}  // namespace kiln::autograd
