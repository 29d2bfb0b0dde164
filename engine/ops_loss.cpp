// log_softmax (dim 1) and nll_loss (mean) on kiln's own kernels; both take and give plain
// row-major (N,K) tensors. nll_loss checks that there is one label per row and copies them so
// backward does not depend on the caller's buffer.
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/kernels.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/ops_internal.h"
#include "kiln/io/array.h"

namespace kiln::ops {

namespace {
struct NllSaved {
  std::vector<int64_t> labels;
};

void check_2d_plain(const char* op, const Tensor& t) {
  if (t.shape().size() != 2 || !t.is_plain())
    fail_argument(std::string(op) + " input " + t.name(), "a plain (N, K) tensor",
                  io::shape_str(t.shape()) + " in layout " + t.layout_str());
}
}  // namespace

Tensor log_softmax(const Tensor& logits) {
  check_2d_plain("log_softmax", logits);
  Tensor dst = make_tensor(logits.shape(), logits.impl()->md, "log_probs");
  kernels::table().log_softmax_forward(logits.impl()->data, dst.impl()->data, logits.dim(0),
                                       logits.dim(1));
  if (autograd::should_record({&logits}))
    autograd::record(autograd::OpKind::log_softmax, {logits}, dst, nullptr);
  return dst;
}

Tensor nll_loss(const Tensor& log_probs, std::span<const int64_t> labels) {
  check_2d_plain("nll_loss", log_probs);
  int64_t N = log_probs.dim(0), K = log_probs.dim(1);
  if (N < 1)
    fail_argument("nll_loss input " + log_probs.name(), "a batch of at least one row",
                  io::shape_str(log_probs.shape()));
  if (static_cast<int64_t>(labels.size()) != N)
    fail_argument("nll_loss labels",
                  std::to_string(N) + " labels (one per row of log_probs " +
                      io::shape_str(log_probs.shape()) + ")",
                  std::to_string(labels.size()));
  for (int64_t n = 0; n < N; ++n)
    if (labels[n] < 0 || labels[n] >= K)
      fail_argument("nll_loss label " + std::to_string(n),
                    "a class in [0, " + std::to_string(K) + ")", std::to_string(labels[n]));
  Tensor loss = make_tensor({}, plain_md({}), "loss");
  loss.impl()->data[0] =
      static_cast<float>(kernels::table().nll_forward(log_probs.impl()->data, labels.data(), N,
                                                      K));
  if (autograd::should_record({&log_probs})) {
    auto saved = std::make_shared<NllSaved>();
    saved->labels.assign(labels.begin(), labels.end());
    autograd::record(autograd::OpKind::nll_loss, {log_probs}, loss, saved);
  }
  return loss;
}

namespace detail {

void log_softmax_backward(autograd::Node& node) {
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  Tensor dx = make_tensor(x.shape(), x.impl()->md, x.name() + ".grad");
  kernels::table().log_softmax_backward(node.output.impl()->data,
                                        node.output.grad().impl()->data, dx.impl()->data,
                                        x.dim(0), x.dim(1));
  autograd::accumulate_grad(x, dx);
}

void nll_loss_backward(autograd::Node& node) {
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  const auto& labels = static_cast<NllSaved*>(node.saved.get())->labels;
  Tensor dx = make_tensor(x.shape(), x.impl()->md, x.name() + ".grad");
  kernels::table().nll_backward(labels.data(), dx.impl()->data, node.output.grad().item(),
                                x.dim(0), x.dim(1));
  autograd::accumulate_grad(x, dx);
}

}  // namespace detail
}  // namespace kiln::ops
