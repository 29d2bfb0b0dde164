// conv2d forward and backward on oneDNN. Primitives are built once per (input shape, weight
// shape, stride, padding, bias, prop) and cached. Source, weights and destination use format
// `any`: the convolution picks its blocked layouts, the weight parameter is moved into that
// layout once (relayout) and stays there, and activations flow on in the layout it produced.
// diff_weights is written straight into the parameter's gradient (same layout as the weight).
//
// Small maps (kiln's own path): when the map is so small that every input position reaches
// every output position through some tap (ResNet34 at 32x32: layer3's 2x2 maps, layer4's 1x1
// maps and the stride-2 conv between them), the convolution is exactly a matrix product
// Y(N x OC*OH*OW) = X(N x IC*H*W) * M, where M holds the weight taps that join each input
// position to each output position, and the taps that fall in padding are never multiplied.
// On a 1x1 map a 3x3 conv is a GEMM with the centre tap (1/9 of the padded work), on a 2x2 map
// 4/9. Rows and columns of M follow the activations' own layout (nchw, nhwc, nChw8c, nChw16c),
// so nothing is reordered; the weight stays plain OIhw. Backward: dX = dY * M^T, dM = X^T * dY,
// and dW gathers dM's entries per tap (taps that never touch data get exactly zero, as in
// PyTorch). KILN_CONV=padded (or set_conv_path) forces oneDNN's padded convolution everywhere.
#include <omp.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "kiln/core/error.h"
#include "kiln/engine/dnnl_ctx.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/ops_internal.h"
#include "kiln/io/array.h"

namespace kiln::ops {

using dnnl::memory;
namespace {

using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

struct ConvPrims {
  bool has_bias = false;
  memory::dims strides, padding;
  memory::desc src_any, weights_any, bias_any, dst_any;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  std::once_flag bwd_data_once;  // built on the first backward (ensure_bwd_data)
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
  std::once_flag bwd_weights_once;  // built on the first backward (ensure_bwd_weights)
};

Tensor in_layout(const Tensor& t, const memory::desc& md);

// --- the small-map path ---
struct SmallConvPlan {
  int64_t N = 0, IC = 0, OC = 0, H = 0, W = 0, OH = 0, OW = 0, K = 0;
  int64_t rows = 0, cols = 0;    // IC*H*W, OC*OH*OW
  std::vector<int64_t> in_off;   // (ci*H + h)*W + w -> offset within a sample (src layout)
  std::vector<int64_t> out_off;  // (co*OH + oh)*OW + ow -> offset within a sample (dst layout)
  // For each (input position, output position) pair, the tap kh*K+kw that joins them.
  std::vector<int32_t> tap;      // [(h*W + w) * OH*OW + oh*OW + ow]
  memory::desc src_md, dst_md;
  // What M's content depends on besides the weight: the activation layout (which orders each
  // sample's (c, h, w)) and the geometry. Two plans with equal keys build the same M whatever
  // their batch size; M is cached per key, never by its (rows, cols) shape alone.
  uint64_t form = 0;
};

struct ConvSaved {
  std::shared_ptr<ConvPrims> prims;
  std::shared_ptr<SmallConvPlan> small;  // set when the small-map path ran
  Tensor src;  // x in the forward primitive's src layout (small path: x itself)
  Tensor m;    // small path: the matrix the forward multiplied by
};

ConvPath initial_conv_path() {
  const char* e = std::getenv("KILN_CONV");
  if (!e || !*e || std::string(e) == "auto") return ConvPath::automatic;
  if (std::string(e) == "padded") return ConvPath::padded;
  fail("KILN_CONV", "auto or padded", std::string("'") + e + "'");
}
ConvPath g_conv_path = initial_conv_path();

// Offsets of (c, h, w) within one sample for the layouts activations come in; 0 = other.
int layout_block(const memory::desc& md, const memory::dims& d, bool* nhwc) {
  *nhwc = false;
  if (md == memory::desc(d, f32, tag::nchw)) return 1;
  if (md == memory::desc(d, f32, tag::nChw16c)) return 16;
  if (md == memory::desc(d, f32, tag::nChw8c)) return 8;
  if (md == memory::desc(d, f32, tag::nhwc)) {
    *nhwc = true;
    return 1;
  }
  return 0;
}

memory::format_tag tag_of(int block, bool nhwc) {
  return nhwc ? tag::nhwc : block == 16 ? tag::nChw16c : block == 8 ? tag::nChw8c : tag::nchw;
}

int64_t sample_offset(int block, bool nhwc, int64_t C, int64_t H, int64_t W, int64_t c, int64_t h, int64_t w) {
  if (nhwc) return (h * W + w) * C + c;
  if (block == 1) return (c * H + h) * W + w;
  return ((c / block) * H * W + h * W + w) * block + c % block;
}

// The plan when the small-map path applies to this call, else nullptr (oneDNN's path runs).
std::shared_ptr<SmallConvPlan> small_plan(const Tensor& x, const Tensor& w, bool has_bias, int64_t stride,
                                          int64_t padding, bool training) {
  if (g_conv_path == ConvPath::padded || has_bias) return nullptr;
  const int64_t N = x.dim(0), IC = x.dim(1), H = x.dim(2), W = x.dim(3), OC = w.dim(0), K = w.dim(2);
  if (K < 2 || H * W > 4) return nullptr;
  const int64_t OH = (H + 2 * padding - K) / stride + 1, OW = (W + 2 * padding - K) / stride + 1;
  if (OH * OW > 4) return nullptr;
  // Every pair joined by a tap, or the matrix would multiply zeros again.
  for (int64_t h = 0; h < H; ++h)
    for (int64_t oh = 0; oh < OH; ++oh) {
      int64_t kh = h - oh * stride + padding;
      if (kh < 0 || kh >= K) return nullptr;
    }
  for (int64_t ww = 0; ww < W; ++ww)
    for (int64_t ow = 0; ow < OW; ++ow) {
      int64_t kw = ww - ow * stride + padding;
      if (kw < 0 || kw >= K) return nullptr;
    }
  // At small inference batches the product is bound by reading M, which on a 2x2 map is 16/9 the
  // size of the weights: there oneDNN's padded convolution reads less (measured at batch 1).
  // Training always takes this path: on AVX2 oneDNN's jit backward-weights kernels reject 3x3
  // convs on 2x2 maps, and its gemm fallback reorders activations and weights every step.
  if (!training && N < 16 && IC * H * W * OC * OH * OW > IC * OC * K * K) return nullptr;
  const memory::desc& xmd = x.impl()->md;
  bool nhwc = false;
  const int block = layout_block(xmd, {N, IC, H, W}, &nhwc);
  if (block == 0 || IC % block != 0 || OC % block != 0) return nullptr;
  // The weight must be (or may become) plain OIhw.
  if (!w.is_plain() && w.impl()->layout_locked) return nullptr;

  static auto* cache = new ShapeCache<SmallConvPlan>;
  CacheKey key;
  key.add(xmd);
  for (int64_t d : w.shape()) key.add(d);
  key.add(stride).add(padding);
  return cache->get(key, [&] {
    auto p = std::make_shared<SmallConvPlan>();
    p->N = N, p->IC = IC, p->OC = OC, p->H = H, p->W = W, p->OH = OH, p->OW = OW, p->K = K;
    p->rows = IC * H * W;
    p->cols = OC * OH * OW;
    p->in_off.resize(static_cast<size_t>(p->rows));
    p->out_off.resize(static_cast<size_t>(p->cols));
    for (int64_t c = 0; c < IC; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t ww = 0; ww < W; ++ww)
          p->in_off[static_cast<size_t>((c * H + h) * W + ww)] = sample_offset(block, nhwc, IC, H, W, c, h, ww);
    for (int64_t c = 0; c < OC; ++c)
      for (int64_t h = 0; h < OH; ++h)
        for (int64_t ww = 0; ww < OW; ++ww)
          p->out_off[static_cast<size_t>((c * OH + h) * OW + ww)] = sample_offset(block, nhwc, OC, OH, OW, c, h, ww);
    p->tap.resize(static_cast<size_t>(H * W * OH * OW));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t ww = 0; ww < W; ++ww)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow)
            p->tap[static_cast<size_t>((h * W + ww) * OH * OW + oh * OW + ow)] =
                static_cast<int32_t>((h - oh * stride + padding) * K + (ww - ow * stride + padding));
    p->src_md = xmd;
    p->dst_md = memory::desc({N, OC, OH, OW}, f32, tag_of(block, nhwc));
    // block (1/8/16) and nhwc; H, W <= 4; stride and padding < K <= 64 (checked above: every
    // pair is joined by a tap). Never 0 (0 marks plain layout copies).
    p->form = ((((static_cast<uint64_t>(block) * 2 + (nhwc ? 1 : 0)) * 8 + static_cast<uint64_t>(H)) * 8 +
                static_cast<uint64_t>(W)) * 256 + static_cast<uint64_t>(stride)) * 256 +
              static_cast<uint64_t>(padding) + 1;
    return p;
  });
}

void sgemm_checked(char ta, char tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
  dnnl::status st = dnnl::sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  KILN_ASSERT(st == dnnl::status::success, "dnnl::sgemm failed");
}

// M[in_off(ci,h,w), out_off(co,oh,ow)] = W[co, ci, tap(h,w,oh,ow)], from plain OIhw weights,
// written into m. Per input channel the taps are first gathered tap-major (OC*K*K floats), so
// the rows are written from contiguous reads.
void fill_m(const SmallConvPlan& p, const float* wt, float* M) {
  const int64_t KK = p.K * p.K, HW = p.H * p.W, OHW = p.OH * p.OW;
#pragma omp parallel
  {
    std::vector<float> taps(static_cast<size_t>(KK * p.OC));  // [tap][co]
#pragma omp for schedule(static)
    for (int64_t ci = 0; ci < p.IC; ++ci) {
      for (int64_t co = 0; co < p.OC; ++co) {
        const float* wk = wt + (co * p.IC + ci) * KK;
        for (int64_t k = 0; k < KK; ++k) taps[static_cast<size_t>(k * p.OC + co)] = wk[k];
      }
      for (int64_t hw = 0; hw < HW; ++hw) {
        float* row = M + p.in_off[static_cast<size_t>(ci * HW + hw)] * p.cols;
        for (int64_t o = 0; o < OHW; ++o) {
          const float* t = taps.data() + p.tap[static_cast<size_t>(hw * OHW + o)] * p.OC;
          for (int64_t co = 0; co < p.OC; ++co) row[p.out_off[static_cast<size_t>(co * OHW + o)]] = t[co];
        }
      }
    }
  }
}

// The weight's matrix, kept on the parameter as a derived copy (2-d, so no reorder or SGD
// refresh ever touches it) and rebuilt only when the weight's version moved on: once per SGD
// step in training, once in all for inference. Its storage is reused, so a steady step
// allocates nothing here.
Tensor weight_matrix(const SmallConvPlan& p, const Tensor& weight, const Tensor& plain_w) {
  TensorImpl& wi = *weight.impl();
  const memory::desc md = plain_md({p.rows, p.cols});
  TensorImpl::Derived* d = nullptr;
  for (auto& e : wi.derived)
    if (e.md == md && e.form == p.form) d = &e;
  const uint64_t version = wi.version;  // a plain derived copy (plain_w) follows the same version
  if (d && d->version == version) return d->copy;
  if (!d) {
    wi.derived.push_back({md, make_tensor({p.rows, p.cols}, md, weight.name() + ".small_m"), version + 1, p.form});
    d = &wi.derived.back();
  }
  fill_m(p, plain_w.impl()->data, d->copy.impl()->data);
  d->version = version;
  return d->copy;
}

// Plain weights for the small path: the parameter itself (moved to plain once, while it may
// still choose its layout), or its cached plain copy.
Tensor plain_weight(const Tensor& weight) {
  if (weight.is_plain()) return weight;
  if (!weight.impl()->layout_locked) {
    relayout(weight, plain_md(weight.shape()));
    return weight;
  }
  return cached_layout(weight, plain_md(weight.shape()));
}

Tensor small_conv_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, std::shared_ptr<SmallConvPlan> p,
                          bool record) {
  count_small_conv();
  Tensor w = plain_weight(weight);
  Tensor m = weight_matrix(*p, weight, w);
  Tensor dst = make_tensor({p->N, p->OC, p->OH, p->OW}, p->dst_md, weight.name() + ".out");
  sgemm_checked('N', 'N', p->N, p->cols, p->rows, x.impl()->data, p->rows, m.impl()->data, p->cols, dst.impl()->data,
                p->cols);
  if (record) {
    auto saved = std::make_shared<ConvSaved>();
    saved->small = std::move(p);
    saved->src = x;
    saved->m = m;
    autograd::record(autograd::OpKind::conv2d, {x, weight, bias}, dst, saved);
  }
  return dst;
}

void small_conv_backward(autograd::Node& node, ConvSaved& saved) {
  const SmallConvPlan& p = *saved.small;
  const Tensor& x = node.inputs[0];
  const Tensor& weight = node.inputs[1];
  Tensor dy = in_layout(node.output.grad(), p.dst_md);
  using detail::wants_grad;
  if (wants_grad(x)) {
    auto sink = autograd::grad_sink(x, p.src_md);
    sgemm_checked('N', 'T', p.N, p.rows, p.cols, dy.impl()->data, p.cols, saved.m.impl()->data, p.cols,
                  sink.target.impl()->data, p.rows);
    autograd::finish_grad(x, sink);
  }
  if (wants_grad(weight)) {
    Tensor dm = make_tensor({p.rows, p.cols}, plain_md({p.rows, p.cols}), "conv.small.dm");
    sgemm_checked('T', 'N', p.rows, p.cols, p.N, saved.src.impl()->data, p.rows, dy.impl()->data, p.cols,
                  dm.impl()->data, p.cols);
    // dW[co, ci, tap] = sum of dM over the pairs that tap joins; taps joining none stay 0.
    auto sink = autograd::grad_sink(weight, weight.impl()->md);
    KILN_ASSERT(is_plain_md(sink.target.impl()->md, weight.shape()), "small conv: weight gradient must be plain");
    float* dw = sink.target.impl()->data;
    const float* DM = dm.impl()->data;
    const int64_t KK = p.K * p.K, HW = p.H * p.W, OHW = p.OH * p.OW;
#pragma omp parallel for schedule(static)
    for (int64_t co = 0; co < p.OC; ++co)
      for (int64_t ci = 0; ci < p.IC; ++ci) {
        float acc[64] = {};
        KILN_ASSERT(KK <= 64, "small conv kernel too large");
        for (int64_t hw = 0; hw < HW; ++hw) {
          const float* row = DM + p.in_off[static_cast<size_t>(ci * HW + hw)] * p.cols;
          for (int64_t o = 0; o < OHW; ++o)
            acc[p.tap[static_cast<size_t>(hw * OHW + o)]] += row[p.out_off[static_cast<size_t>(co * OHW + o)]];
        }
        float* out = dw + (co * p.IC + ci) * KK;
        for (int64_t k = 0; k < KK; ++k) out[k] = acc[k];
      }
    autograd::finish_grad(weight, sink);
  }
}

std::shared_ptr<ConvPrims> get_prims(const Tensor& x, const Tensor& w, bool has_bias,
                                     int64_t stride, int64_t padding, bool training) {
  static auto* cache = new ShapeCache<ConvPrims>;
  CacheKey key;
  for (int64_t d : x.shape()) key.add(d);
  for (int64_t d : w.shape()) key.add(d);
  key.add(has_bias).add(stride).add(padding).add(training);
  return cache->get(key, [&] {
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
    return p;
  });
}

bool is_ref(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

// Backward primitives are first asked for the exact layouts the forward produced (activations)
// and the parameter has (weights), so nothing is reordered; only if no optimized
// implementation takes those do they fall back to `any` (then the op reorders, and the
// fast-path test says so).
void ensure_bwd_data(ConvPrims& p) {
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
}

void ensure_bwd_weights(ConvPrims& p, const memory::desc& weights_md) {
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
}

// t itself when already in layout md, else a counted reorder.
Tensor in_layout(const Tensor& t, const memory::desc& md) {
  return t.impl()->md == md ? t : reordered(t, md);
}

}  // namespace

void set_conv_path(ConvPath path) { g_conv_path = path; }
ConvPath conv_path() { return g_conv_path; }

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
  if (auto small = small_plan(x, weight, has_bias, stride, padding, record))
    return small_conv_forward(x, weight, bias, std::move(small), record);
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

// --- conv2d_bn: inference with the batch norm folded in ---

}  // namespace kiln::ops

namespace kiln {

// The folded weights of one convolution (TensorImpl::folded_bn): valid while the conv weight and
// the batch norm's four tensors are at the versions recorded here.
struct FoldedBn {
  std::array<const TensorImpl*, 4> bn{};
  std::array<uint64_t, 5> versions{};
  Tensor bias;                                          // (OC) plain: beta - mean * scale
  // Folded weights per layout, or per small-map plan's key (SmallConvPlan::form; 0 = a layout).
  std::vector<std::tuple<dnnl::memory::desc, uint64_t, Tensor>> forms;
};

}  // namespace kiln

namespace kiln::ops {
namespace {

struct FusedConvPrims {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};

// The folded state for (weight, bn), rebuilt (forms dropped) when a version moved on.
FoldedBn& folded_state(const Tensor& weight, const BatchNormRef& bn) {
  TensorImpl& wi = *weight.impl();
  const std::array<const TensorImpl*, 4> ids{bn.weight.impl(), bn.bias.impl(), bn.running_mean.impl(),
                                             bn.running_var.impl()};
  const std::array<uint64_t, 5> versions{wi.version, ids[0]->version, ids[1]->version, ids[2]->version,
                                         ids[3]->version};
  if (wi.folded_bn && wi.folded_bn->bn == ids && wi.folded_bn->versions == versions) return *wi.folded_bn;
  if (!wi.folded_bn) wi.folded_bn = std::make_shared<FoldedBn>();
  FoldedBn& f = *wi.folded_bn;
  f.bn = ids;
  f.versions = versions;
  f.forms.clear();
  const int64_t OC = weight.dim(0);
  f.bias = make_tensor({OC}, plain_md({OC}), weight.name() + ".folded_bias");
  const float *g = bn.weight.impl()->data, *b = bn.bias.impl()->data, *m = bn.running_mean.impl()->data,
              *v = bn.running_var.impl()->data;
  for (int64_t c = 0; c < OC; ++c)
    f.bias.impl()->data[c] = b[c] - m[c] * (g[c] / std::sqrt(v[c] + static_cast<float>(bn.eps)));
  return f;
}

// The folded weights in layout md (small path: its matrix M, from plan p), made on first use.
Tensor folded_form(const Tensor& weight, const BatchNormRef& bn, FoldedBn& f, const memory::desc& md,
                   const SmallConvPlan* p) {
  const uint64_t key = p ? p->form : 0;
  for (auto& [fmd, fkey, t] : f.forms)
    if (fmd == md && fkey == key) return t;
  // Plain weights scaled per output channel, then moved into the layout wanted.
  Tensor plain = weight.is_plain() ? weight : reordered(weight, plain_md(weight.shape()));
  Tensor scaled = make_tensor(weight.shape(), plain_md(weight.shape()), weight.name() + ".folded");
  const int64_t OC = weight.dim(0), per = weight.numel() / OC;
  const float *g = bn.weight.impl()->data, *v = bn.running_var.impl()->data;
  const float* src = plain.impl()->data;
  float* dst = scaled.impl()->data;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < OC; ++c) {
    const float s = g[c] / std::sqrt(v[c] + static_cast<float>(bn.eps));
    for (int64_t i = 0; i < per; ++i) dst[c * per + i] = src[c * per + i] * s;
  }
  Tensor form;
  if (p) {
    form = make_tensor({p->rows, p->cols}, md, weight.name() + ".folded_m");
    fill_m(*p, scaled.impl()->data, form.impl()->data);
  } else {
    form = md == scaled.impl()->md ? scaled : reordered(scaled, md);
  }
  f.forms.emplace_back(md, key, form);
  return form;
}

std::shared_ptr<FusedConvPrims> fused_prims(const Tensor& x, const Tensor& w, int64_t stride, int64_t padding,
                                            bool relu, const Tensor& residual) {
  static auto* cache = new ShapeCache<FusedConvPrims>;
  CacheKey key;
  key.add(x.impl()->md);
  for (int64_t d : w.shape()) key.add(d);
  key.add(stride).add(padding).add(relu).add(residual.defined());
  return cache->get(key, [&] {
    auto p = std::make_shared<FusedConvPrims>();
    const int64_t N = x.dim(0), H = x.dim(2), W = x.dim(3), OC = w.dim(0), IC = w.dim(1), K = w.dim(2);
    const int64_t OH = (H + 2 * padding - K) / stride + 1, OW = (W + 2 * padding - K) / stride + 1;
    dnnl::post_ops po;
    // The residual is added as a sum post-op (dst holds it before the convolution accumulates
    // into it): oneDNN 2.6's optimized convolutions take sum, but fall back to its reference
    // kernel for a binary-add post-op.
    if (residual.defined()) po.append_sum(1.0f);
    if (relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    memory::desc dst({N, OC, OH, OW}, f32, tag::any);
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                         memory::desc({N, IC, H, W}, f32, tag::any),
                                         memory::desc({OC, IC, K, K}, f32, tag::any), plain_md({OC}), dst,
                                         {stride, stride}, {padding, padding}, {padding, padding});
    p->pd = dnnl::convolution_forward::primitive_desc(desc, attr, cpu_engine());
    p->prim = dnnl::convolution_forward(p->pd);
    note_primitive("conv_bn_fwd", p->pd);
    return p;
  });
}

// Small-map path: one product with the folded matrix, then bias, residual and ReLU in one pass.
Tensor small_conv_bn(const Tensor& x, const Tensor& weight, const BatchNormRef& bn, const SmallConvPlan& p,
                     bool relu, const Tensor& residual) {
  count_small_conv();
  FoldedBn& f = folded_state(weight, bn);
  Tensor m = folded_form(weight, bn, f, plain_md({p.rows, p.cols}), &p);
  Tensor dst = make_tensor({p.N, p.OC, p.OH, p.OW}, p.dst_md, weight.name() + ".out");
  sgemm_checked('N', 'N', p.N, p.cols, p.rows, x.impl()->data, p.rows, m.impl()->data, p.cols, dst.impl()->data,
                p.cols);
  Tensor res = residual.defined() ? in_layout(residual, p.dst_md) : Tensor();
  const float* b = f.bias.impl()->data;
  const float* r = res.defined() ? res.impl()->data : nullptr;
  float* d = dst.impl()->data;
  const int64_t OHW = p.OH * p.OW;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t j = 0; j < p.cols; ++j) {
      const int64_t off = n * p.cols + p.out_off[static_cast<size_t>(j)];
      float v = d[off] + b[j / OHW];
      if (r) v += r[off];
      d[off] = relu && v < 0.0f ? 0.0f : v;
    }
  return dst;
}

}  // namespace

Tensor conv2d_bn(const Tensor& x, const Tensor& weight, int64_t stride, int64_t padding, const BatchNormRef& bn,
                 bool training, bool relu, const Tensor& residual) {
  const bool record = autograd::should_record({&x, &weight, &bn.weight, &bn.bias, &residual});
  if (training || record) {
    Tensor y = batch_norm(conv2d(x, weight, Tensor(), stride, padding), bn.weight, bn.bias, bn.running_mean,
                          bn.running_var, training, relu && !residual.defined(), bn.momentum, bn.eps);
    return residual.defined() ? add(y, residual, relu) : y;
  }
  // The separate ops check shapes and channel counts; do so for the fused one alike.
  detail::check_4d("conv2d_bn", x);
  KILN_ASSERT(weight.shape().size() == 4 && weight.dim(2) == weight.dim(3) && x.dim(1) == weight.dim(1),
              "conv2d_bn: weight " + weight.name() + " does not fit input " + io::shape_str(x.shape()));
  for (const Tensor* t : {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var})
    if (!t->defined() || t->numel() != weight.dim(0) || !t->is_plain())
      fail("conv2d_bn " + weight.name() + " batch norm parameter", "(" + std::to_string(weight.dim(0)) + ") plain",
           t->defined() ? io::shape_str(t->shape()) : std::string("nothing"));
  if (auto small = small_plan(x, weight, false, stride, padding, false)) {
    if (residual.defined() && residual.shape() != std::vector<int64_t>{small->N, small->OC, small->OH, small->OW})
      fail("conv2d_bn " + weight.name() + " residual", io::shape_str({small->N, small->OC, small->OH, small->OW}),
           io::shape_str(residual.shape()));
    return small_conv_bn(x, weight, bn, *small, relu, residual);
  }
  auto prims = fused_prims(x, weight, stride, padding, relu, residual);
  const auto& pd = prims->pd;
  const memory::dims dd = pd.dst_desc().dims();
  if (residual.defined() && residual.shape() != std::vector<int64_t>(dd.begin(), dd.end()))
    fail("conv2d_bn " + weight.name() + " residual", io::shape_str({dd[0], dd[1], dd[2], dd[3]}),
         io::shape_str(residual.shape()));
  Tensor src = in_layout(x, pd.src_desc());
  FoldedBn& f = folded_state(weight, bn);
  Tensor w = folded_form(weight, bn, f, pd.weights_desc(), nullptr);
  Tensor dst = make_tensor({dd[0], dd[1], dd[2], dd[3]}, pd.dst_desc(), weight.name() + ".out");
  if (residual.defined()) {
    Tensor r = in_layout(residual, pd.dst_desc());
    std::memcpy(dst.impl()->data, r.impl()->data, dst.impl()->bytes());
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(src)},
                                       {DNNL_ARG_WEIGHTS, as_memory(w)},
                                       {DNNL_ARG_BIAS, as_memory(f.bias)},
                                       {DNNL_ARG_DST, as_memory(dst)}};
  prims->prim.execute(cpu_stream(), args);
  return dst;
}

namespace detail {

void conv2d_backward(autograd::Node& node) {
  auto& saved = *static_cast<ConvSaved*>(node.saved.get());
  if (saved.small) return small_conv_backward(node, saved);
  ConvPrims& p = *saved.prims;
  const Tensor& x = node.inputs[0];
  const Tensor& weight = node.inputs[1];
  const Tensor& bias = node.inputs[2];
  const Tensor& dy = node.output.grad();

  if (wants_grad(x)) {
    std::call_once(p.bwd_data_once, [&] { ensure_bwd_data(p); });
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
    std::call_once(p.bwd_weights_once, [&] { ensure_bwd_weights(p, weight.impl()->md); });
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
