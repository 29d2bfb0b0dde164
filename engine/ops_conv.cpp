// conv2d forward and backward on oneDNN. Primitives are built once per (input shape, weight
// shape, stride, padding, bias, prop) and cached. Source, weights and destination use format
// `any`: the convolution picks its blocked layouts, the weight parameter is moved into that
// layout once (relayout) and stays there, and activations flow on in the layout it produced.
// diff_weights is written straight into the parameter's gradient (same layout as the weight).
#include <map>
#include <mutex>

#include "core/error.h"
#include "engine/dnnl_ctx.h"
#include "engine/ops.h"
#include "engine/ops_internal.h"
#include "io/array.h"

namespace kiln::ops {

using dnnl::memory;
namespace {

using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

struct ConvPrims {
  std::mutex mu;  // guards the lazily built backward primitives
  bool has_bias = false;
  memory::dims strides, padding;
  memory::desc src_any, weights_any, bias_any, dst_any;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  bool bwd_data_ready = false;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
  bool bwd_weights_ready = false;
};

struct ConvSaved {
  std::shared_ptr<ConvPrims> prims;
  Tensor src;  // x in the forward primitive's src layout
};

std::shared_ptr<ConvPrims> get_prims(const Tensor& x, const Tensor& w, bool has_bias,
                                     int64_t stride, int64_t padding, bool training) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, std::shared_ptr<ConvPrims>>;
  CacheKey key;
  for (int64_t d : x.shape()) key.add(d);
  for (int64_t d : w.shape()) key.add(d);
  key.add(has_bias).add(stride).add(padding).add(training);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key.bytes);
  if (it != cache->end()) return it->second;

  auto p = std::make_shared<ConvPrims>();
  int64_t N = x.dim(0), H = x.dim(2), W = x.dim(3);
  int64_t OC = w.dim(0), IC = w.dim(1), K = w.dim(2);
  int64_t OH = (H + 2 * padding - K) / stride + 1, OW = (W + 2 * padding - K) / stride + 1;
  p->has_bias = has_bias;
  p->strides = {stride, stride};
  p->padding = {padding, padding};
  p->src_any = memory::desc({N, IC, H, W}, f32, tag::any);
  p->weights_any = memory::desc({OC, IC, K, K}, f32, tag::any);
  p->bias_any = memory::desc({OC}, f32, tag::any);
  p->dst_any = memory::desc({N, OC, OH, OW}, f32, tag::any);
  auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  auto desc = has_bias
      ? dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, p->src_any,
                                        p->weights_any, p->bias_any, p->dst_any, p->strides,
                                        p->padding, p->padding)
      : dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, p->src_any,
                                        p->weights_any, p->dst_any, p->strides, p->padding,
                                        p->padding);
  p->fwd_pd = dnnl::convolution_forward::primitive_desc(desc, cpu_engine());
  p->fwd = dnnl::convolution_forward(p->fwd_pd);
  note_primitive("conv_fwd", p->fwd_pd);
  cache->emplace(key.bytes, p);
  return p;
}

bool is_ref(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

// Backward primitives are first asked for the exact layouts the forward produced (activations)
// and the parameter has (weights), so nothing is reordered; only if no optimized
// implementation takes those do they fall back to `any` (then the op reorders, and the
// fast-path test says so).
void ensure_bwd_data(ConvPrims& p) {
  if (p.bwd_data_ready) return;
  auto make = [&](const memory::desc& diff_src, const memory::desc& diff_dst) {
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, diff_src,
                                               p.weights_any, diff_dst, p.strides, p.padding,
                                               p.padding);
    return dnnl::convolution_backward_data::primitive_desc(desc, cpu_engine(), p.fwd_pd);
  };
  bool done = false;
  try {
    auto pd = make(p.fwd_pd.src_desc(), p.fwd_pd.dst_desc());
    if (!is_ref(pd)) {
      p.bwd_data_pd = pd;
      done = true;
    }
  } catch (const dnnl::error&) {
  }
  if (!done) p.bwd_data_pd = make(p.src_any, p.dst_any);
  p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd);
  note_primitive("conv_bwd_data", p.bwd_data_pd);
  p.bwd_data_ready = true;
}

void ensure_bwd_weights(ConvPrims& p, const memory::desc& weights_md) {
  if (p.bwd_weights_ready) return;
  auto make = [&](const memory::desc& src, const memory::desc& dw_md,
                  const memory::desc& diff_dst) {
    auto desc = p.has_bias
        ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src,
                                                   dw_md, p.bias_any, diff_dst, p.strides,
                                                   p.padding, p.padding)
        : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src,
                                                   dw_md, diff_dst, p.strides, p.padding,
                                                   p.padding);
    return dnnl::convolution_backward_weights::primitive_desc(desc, cpu_engine(), p.fwd_pd);
  };
  const memory::desc tries[3][3] = {
      {p.fwd_pd.src_desc(), weights_md, p.fwd_pd.dst_desc()},
      {p.src_any, weights_md, p.dst_any},
      {p.src_any, p.weights_any, p.dst_any},
  };
  bool done = false;
  for (int i = 0; i < 3 && !done; ++i) {
    try {
      auto pd = make(tries[i][0], tries[i][1], tries[i][2]);
      if (!is_ref(pd) || i == 2) {
        p.bwd_weights_pd = pd;
        done = true;
      }
    } catch (const dnnl::error&) {
      if (i == 2) throw;
    }
  }
  p.bwd_weights = dnnl::convolution_backward_weights(p.bwd_weights_pd);
  note_primitive("conv_bwd_weights", p.bwd_weights_pd);
  p.bwd_weights_ready = true;
}

// t itself when already in layout md, else a counted reorder.
Tensor in_layout(const Tensor& t, const memory::desc& md) {
  return t.impl()->md == md ? t : reordered(t, md);
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding) {
  detail::check_4d("conv2d", x);
  KILN_ASSERT(weight.shape().size() == 4 && weight.dim(2) == weight.dim(3),
              "conv2d weight must be (OC,IC,K,K): " + weight.name());
  if (x.dim(1) != weight.dim(1))
    fail("conv2d " + weight.name(), "input with " + std::to_string(weight.dim(1)) + " channels",
         io::shape_str(x.shape()));
  KILN_ASSERT(stride >= 1 && padding >= 0, "conv2d stride/padding");
  if (x.dim(2) + 2 * padding < weight.dim(2) || x.dim(3) + 2 * padding < weight.dim(3))
    fail("conv2d " + weight.name(), "an input at least as large as the kernel",
         io::shape_str(x.shape()));
  bool has_bias = bias.defined();
  if (has_bias) KILN_ASSERT(bias.numel() == weight.dim(0) && bias.is_plain(), "conv2d bias");

  bool record = autograd::should_record({&x, &weight, &bias});
  auto prims = get_prims(x, weight, has_bias, stride, padding, record);
  const auto& pd = prims->fwd_pd;

  Tensor src = in_layout(x, pd.src_desc());
  // Once, before the SGD arena exists: the parameter adopts the conv's layout. Afterwards a
  // conv that wants another layout (a different batch size) gets a cached derived copy.
  if (weight.impl()->md != pd.weights_desc() && !weight.impl()->layout_locked)
    relayout(weight, pd.weights_desc());
  Tensor w = cached_layout(weight, pd.weights_desc());
  auto dst_desc = pd.dst_desc();
  memory::dims dd = dst_desc.dims();
  Tensor dst = make_tensor({dd[0], dd[1], dd[2], dd[3]}, dst_desc, weight.name() + ".out");

  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(src)},
                                       {DNNL_ARG_WEIGHTS, as_memory(w)},
                                       {DNNL_ARG_DST, as_memory(dst)}};
  if (has_bias) args.emplace(DNNL_ARG_BIAS, as_memory(bias));
  prims->fwd.execute(cpu_stream(), args);

  if (record) {
    auto saved = std::make_shared<ConvSaved>();
    saved->prims = prims;
    saved->src = src;
    autograd::record(autograd::OpKind::conv2d, {x, weight, bias}, dst, saved);
  }
  return dst;
}

namespace detail {

void conv2d_backward(autograd::Node& node) {
  auto& saved = *static_cast<ConvSaved*>(node.saved.get());
  ConvPrims& p = *saved.prims;
  const Tensor& x = node.inputs[0];
  const Tensor& weight = node.inputs[1];
  const Tensor& bias = node.inputs[2];
  const Tensor& dy = node.output.grad();

  if (wants_grad(x)) {
    {
      std::lock_guard<std::mutex> lock(p.mu);
      ensure_bwd_data(p);
    }
    Tensor diff_dst = in_layout(dy, p.bwd_data_pd.diff_dst_desc());
    // oneDNN's backward-data kernels want the weights block-transposed (OIhw16o16i); that copy
    // is cached on the parameter and refreshed by SGD's fused update, not reordered here.
    Tensor w = cached_layout(weight, p.bwd_data_pd.weights_desc());
    auto sink = autograd::grad_sink(x, p.bwd_data_pd.diff_src_desc());
    p.bwd_data.execute(cpu_stream(), {{DNNL_ARG_DIFF_DST, as_memory(diff_dst)},
                                      {DNNL_ARG_WEIGHTS, as_memory(w)},
                                      {DNNL_ARG_DIFF_SRC, as_memory(sink.target)}});
    autograd::finish_grad(x, sink);
  }
  if (wants_grad(weight) || wants_grad(bias)) {
    {
      std::lock_guard<std::mutex> lock(p.mu);
      ensure_bwd_weights(p, weight.impl()->md);
    }
    const auto& pd = p.bwd_weights_pd;
    Tensor src = in_layout(saved.src, pd.src_desc());
    Tensor diff_dst = in_layout(dy, pd.diff_dst_desc());
    autograd::GradSink sink_w, sink_b;
    if (wants_grad(weight)) {
      sink_w = autograd::grad_sink(weight, pd.diff_weights_desc());
    } else {
      sink_w.target = make_tensor(weight.shape(), pd.diff_weights_desc(), "scratch");
    }
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(src)},
                                         {DNNL_ARG_DIFF_DST, as_memory(diff_dst)},
                                         {DNNL_ARG_DIFF_WEIGHTS, as_memory(sink_w.target)}};
    if (p.has_bias) {
      if (wants_grad(bias)) {
        sink_b = autograd::grad_sink(bias, pd.diff_bias_desc());
      } else {
        sink_b.target = make_tensor(bias.shape(), pd.diff_bias_desc(), "scratch");
      }
      args.emplace(DNNL_ARG_DIFF_BIAS, as_memory(sink_b.target));
    }
    p.bwd_weights.execute(cpu_stream(), args);
    if (wants_grad(weight)) autograd::finish_grad(weight, sink_w);
    if (p.has_bias && wants_grad(bias)) autograd::finish_grad(bias, sink_b);
  }
}

void check_4d(const char* op, const Tensor& x) {
  if (x.shape().size() != 4)
    fail(std::string(op) + " input " + x.name(), "a 4-d (N,C,H,W) tensor",
         io::shape_str(x.shape()));
}

}  // namespace detail
}  // namespace kiln::ops
