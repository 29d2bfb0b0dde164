// batch_norm forward and backward on oneDNN, optionally fused with the ReLU that follows it
// (fuse_norm_relu: the ReLU mask goes to a workspace kept for backward, so the pre-ReLU values
// are never stored). src and dst share the input's layout. Scale and shift are the BN weight
// and bias (C) plain; mean/variance are (C) plain.
// NOTE: oneDNN returns the biased batch variance; PyTorch's running_var takes the unbiased one,
// so the running update scales it by M/(M-1), M = N*H*W.
#include <map>
#include <mutex>

#include "kiln/core/error.h"
#include "kiln/engine/dnnl_ctx.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/ops_internal.h"
#include "kiln/io/array.h"

namespace kiln::ops {

using dnnl::memory;
namespace {

using flags = dnnl::normalization_flags;

struct BnPrims {
  flags fl;
  float eps;
  dnnl::batch_normalization_forward::primitive_desc fwd_pd;
  dnnl::batch_normalization_forward fwd;
  dnnl::batch_normalization_backward::primitive_desc bwd_pd;
  dnnl::batch_normalization_backward bwd;
  std::once_flag bwd_once;  // the backward primitive, built on the first backward
};

struct BnSaved {
  std::shared_ptr<BnPrims> prims;
  Tensor mean, variance;             // batch statistics (training) or running stats (eval)
  std::shared_ptr<Storage> workspace;  // ReLU mask when fused
};

std::shared_ptr<BnPrims> get_prims(const memory::desc& md, flags fl, bool training_prop,
                                   float eps) {
  static auto* cache = new ShapeCache<BnPrims>;
  CacheKey key;
  key.add(md).add(static_cast<int64_t>(fl)).add(training_prop).add(static_cast<int64_t>(eps * 1e9));
  return cache->get(key, [&] {
    auto p = std::make_shared<BnPrims>();
    p->fl = fl;
    p->eps = eps;
    auto prop = training_prop ? dnnl::prop_kind::forward_training
                              : dnnl::prop_kind::forward_inference;
    dnnl::batch_normalization_forward::desc desc(prop, md, eps, fl);
    p->fwd_pd = dnnl::batch_normalization_forward::primitive_desc(desc, cpu_engine());
    p->fwd = dnnl::batch_normalization_forward(p->fwd_pd);
    note_primitive("bnorm_fwd", p->fwd_pd);
    return p;
  });
}

void check_channel_param(const Tensor& t, int64_t C, const char* what) {
  if (!t.defined() || t.numel() != C || !t.is_plain())
    fail(std::string("batch_norm ") + what, "(" + std::to_string(C) + ") plain",
         t.defined() ? io::shape_str(t.shape()) : std::string("nothing"));
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  bool fuse_relu, double momentum, double eps) {
  detail::check_4d("batch_norm", x);
  int64_t C = x.dim(1);
  check_channel_param(weight, C, "weight");
  check_channel_param(bias, C, "bias");
  check_channel_param(running_mean, C, "running_mean");
  check_channel_param(running_var, C, "running_var");
  int64_t M = x.dim(0) * x.dim(2) * x.dim(3);
  if (training && M < 2)
    fail("batch_norm " + weight.name(), "more than 1 value per channel in training mode",
         io::shape_str(x.shape()), "use a batch larger than 1 or eval mode");

  bool record = autograd::should_record({&x, &weight, &bias});
  flags fl = flags::use_scale | flags::use_shift;
  if (fuse_relu) fl = fl | flags::fuse_norm_relu;
  if (!training) fl = fl | flags::use_global_stats;
  bool training_prop = training || record;
  auto prims = get_prims(x.impl()->md, fl, training_prop, static_cast<float>(eps));
  const auto& pd = prims->fwd_pd;

  std::string base = weight.name().substr(0, weight.name().rfind('.'));
  Tensor dst = make_tensor(x.shape(), pd.dst_desc(), base + ".out");
  auto saved = std::make_shared<BnSaved>();
  saved->prims = prims;
  if (training) {
    saved->mean = make_tensor({C}, pd.mean_desc(), base + ".batch_mean");
    saved->variance = make_tensor({C}, pd.variance_desc(), base + ".batch_var");
  } else {
    saved->mean = running_mean;
    saved->variance = running_var;
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(x)},
                                       {DNNL_ARG_DST, as_memory(dst)},
                                       {DNNL_ARG_SCALE, as_memory(weight)},
                                       {DNNL_ARG_SHIFT, as_memory(bias)},
                                       {DNNL_ARG_MEAN, as_memory(saved->mean)},
                                       {DNNL_ARG_VARIANCE, as_memory(saved->variance)}};
  auto ws_desc = pd.workspace_desc();
  if (ws_desc.get_size() > 0) {
    saved->workspace = alloc_storage(ws_desc.get_size());
    args.emplace(DNNL_ARG_WORKSPACE, memory(ws_desc, cpu_engine(), saved->workspace->ptr));
  }
  prims->fwd.execute(cpu_stream(), args);

  if (training) {
    float* rm = running_mean.impl()->data;
    float* rv = running_var.impl()->data;
    const float* mean = saved->mean.impl()->data;
    const float* var = saved->variance.impl()->data;
    float m = static_cast<float>(momentum);
    float unbias = static_cast<float>(static_cast<double>(M) / static_cast<double>(M - 1));
    for (int64_t c = 0; c < C; ++c) {
      rm[c] = (1 - m) * rm[c] + m * mean[c];
      rv[c] = (1 - m) * rv[c] + m * var[c] * unbias;
    }
    // Values that inference caches derive from (ops::conv2d_bn's folded weights) moved on.
    ++running_mean.impl()->version;
    ++running_var.impl()->version;
  }
  if (record) autograd::record(autograd::OpKind::batch_norm, {x, weight, bias}, dst, saved);
  return dst;
}

namespace detail {

void batch_norm_backward(autograd::Node& node) {
  auto& saved = *static_cast<BnSaved*>(node.saved.get());
  BnPrims& p = *saved.prims;
  const Tensor& x = node.inputs[0];
  const Tensor& weight = node.inputs[1];
  const Tensor& bias = node.inputs[2];
  std::call_once(p.bwd_once, [&] {
    auto md = p.fwd_pd.src_desc();
    dnnl::batch_normalization_backward::desc desc(dnnl::prop_kind::backward, md, md, p.eps,
                                                  p.fl);
    p.bwd_pd = dnnl::batch_normalization_backward::primitive_desc(desc, cpu_engine(), p.fwd_pd);
    p.bwd = dnnl::batch_normalization_backward(p.bwd_pd);
    note_primitive("bnorm_bwd", p.bwd_pd);
  });
  const auto& pd = p.bwd_pd;
  Tensor dy = node.output.grad();
  if (dy.impl()->md != pd.diff_dst_desc()) dy = reordered(dy, pd.diff_dst_desc());

  autograd::GradSink sink_x, sink_w, sink_b;
  auto sink_for = [](const Tensor& t, const memory::desc& md, autograd::GradSink& sink) {
    if (wants_grad(t)) {
      sink = autograd::grad_sink(t, md);
    } else {
      sink.target = make_tensor(t.shape(), md, "scratch");
    }
  };
  sink_for(x, pd.diff_src_desc(), sink_x);
  sink_for(weight, weight.impl()->md, sink_w);
  sink_for(bias, bias.impl()->md, sink_b);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(x)},
                                       {DNNL_ARG_MEAN, as_memory(saved.mean)},
                                       {DNNL_ARG_VARIANCE, as_memory(saved.variance)},
                                       {DNNL_ARG_DIFF_DST, as_memory(dy)},
                                       {DNNL_ARG_SCALE, as_memory(weight)},
                                       {DNNL_ARG_SHIFT, as_memory(bias)},
                                       {DNNL_ARG_DIFF_SRC, as_memory(sink_x.target)},
                                       {DNNL_ARG_DIFF_SCALE, as_memory(sink_w.target)},
                                       {DNNL_ARG_DIFF_SHIFT, as_memory(sink_b.target)}};
  if (saved.workspace)
    args.emplace(DNNL_ARG_WORKSPACE,
                 memory(p.fwd_pd.workspace_desc(), cpu_engine(), saved.workspace->ptr));
  p.bwd.execute(cpu_stream(), args);
  if (wants_grad(x)) autograd::finish_grad(x, sink_x);
  if (wants_grad(weight)) autograd::finish_grad(weight, sink_w);
  if (wants_grad(bias)) autograd::finish_grad(bias, sink_b);
}

}  // namespace detail
}  // namespace kiln::ops
