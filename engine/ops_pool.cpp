// max_pool2d on oneDNN (the argmax goes to a workspace for backward; dst keeps src's layout)
// and adaptive_avg_pool2d to 1x1 as kiln's own loop, which reads the blocked activation and
// writes the (N,C,1,1) result plain, so the classifier head needs no reorder (the "fc
// boundary" costs nothing).
#include <cstring>
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

struct PoolPrims {
  memory::dims strides, kernel, padding;
  dnnl::pooling_forward::primitive_desc fwd_pd;
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward::primitive_desc bwd_pd;
  dnnl::pooling_backward bwd;
  std::once_flag bwd_once;  // the backward primitive, built on the first backward
};

struct PoolSaved {
  std::shared_ptr<PoolPrims> prims;
  std::shared_ptr<Storage> workspace;
};

std::shared_ptr<PoolPrims> get_prims(const memory::desc& src_md, int64_t OH, int64_t OW,
                                     int64_t kernel, int64_t stride, int64_t padding,
                                     bool training) {
  static auto* cache = new ShapeCache<PoolPrims>;
  CacheKey key;
  key.add(src_md).add(kernel).add(stride).add(padding).add(training);
  return cache->get(key, [&] {
    auto p = std::make_shared<PoolPrims>();
    p->strides = {stride, stride};
    p->kernel = {kernel, kernel};
    p->padding = {padding, padding};
    memory::dims sd = src_md.dims();
    memory::desc dst_any({sd[0], sd[1], OH, OW}, memory::data_type::f32, memory::format_tag::any);
    auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    // Right padding so that oneDNN's output size equals PyTorch's floor formula.
    memory::dims pad_r = {(OH - 1) * stride + kernel - sd[2] - padding,
                          (OW - 1) * stride + kernel - sd[3] - padding};
    dnnl::pooling_forward::desc desc(prop, dnnl::algorithm::pooling_max, src_md, dst_any,
                                     p->strides, p->kernel, p->padding, pad_r);
    p->fwd_pd = dnnl::pooling_forward::primitive_desc(desc, cpu_engine());
    p->fwd = dnnl::pooling_forward(p->fwd_pd);
    note_primitive("pool_fwd", p->fwd_pd);
    return p;
  });
}

// Offsets of a 4-d activation whose only blocking (if any) is on channels: plain nchw, nhwc
// or nChw{8,16}c. off(n,c,h,w) = n*s0 + (c/B)*s1 + h*s2 + w*s3 + c%B.
struct ChannelLayout {
  int64_t s[4];
  int64_t B;
  int64_t offset(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return n * s[0] + (c / B) * s[1] + h * s[2] + w * s[3] + c % B;
  }
};

ChannelLayout channel_layout(const Tensor& x) {
  const auto& d = x.impl()->md.data;
  KILN_ASSERT(d.format_kind == dnnl_blocked, "avg pool: unsupported layout");
  const auto& b = d.format_desc.blocking;
  ChannelLayout l{};
  l.B = 1;
  if (b.inner_nblks == 1 && b.inner_idxs[0] == 1) {
    l.B = b.inner_blks[0];
  } else {
    KILN_ASSERT(b.inner_nblks == 0, "avg pool: unsupported layout " + x.layout_str());
  }
  for (int i = 0; i < 4; ++i) l.s[i] = b.strides[i];
  return l;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  detail::check_4d("max_pool2d", x);
  KILN_ASSERT(kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel,
              "max_pool2d: padding must be at most half the kernel");
  int64_t OH = (x.dim(2) + 2 * padding - kernel) / stride + 1;
  int64_t OW = (x.dim(3) + 2 * padding - kernel) / stride + 1;
  if (OH < 1 || OW < 1)
    fail("max_pool2d input", "at least " + std::to_string(kernel - 2 * padding) + " pixels",
         io::shape_str(x.shape()));
  bool record = autograd::should_record({&x});
  auto prims = get_prims(x.impl()->md, OH, OW, kernel, stride, padding, record);
  const auto& pd = prims->fwd_pd;
  Tensor dst = make_tensor({x.dim(0), x.dim(1), OH, OW}, pd.dst_desc(), "maxpool.out");
  auto saved = std::make_shared<PoolSaved>();
  saved->prims = prims;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, as_memory(x)},
                                       {DNNL_ARG_DST, as_memory(dst)}};
  if (record) {
    saved->workspace = alloc_storage(pd.workspace_desc().get_size());
    args.emplace(DNNL_ARG_WORKSPACE, memory(pd.workspace_desc(), cpu_engine(),
                                            saved->workspace->ptr));
  }
  prims->fwd.execute(cpu_stream(), args);
  if (record) autograd::record(autograd::OpKind::max_pool2d, {x}, dst, saved);
  return dst;
}

Tensor adaptive_avg_pool2d_1x1(const Tensor& x) {
  detail::check_4d("adaptive_avg_pool2d", x);
  int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  ChannelLayout l = channel_layout(x);
  Tensor dst = make_tensor({N, C, 1, 1}, plain_md({N, C, 1, 1}), "avgpool.out");
  const float* src = x.impl()->data;
  float* out = dst.impl()->data;
  float inv = 1.0f / static_cast<float>(H * W);
#pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > (1 << 16))
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      float sum = 0;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) sum += src[l.offset(n, c, h, w)];
      out[n * C + c] = sum * inv;
    }
  if (autograd::should_record({&x}))
    autograd::record(autograd::OpKind::avg_pool_1x1, {x}, dst, nullptr);
  return dst;
}

namespace detail {

void max_pool2d_backward(autograd::Node& node) {
  auto& saved = *static_cast<PoolSaved*>(node.saved.get());
  PoolPrims& p = *saved.prims;
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  std::call_once(p.bwd_once, [&] {
    auto src_md = p.fwd_pd.src_desc();
    auto dst_md = p.fwd_pd.dst_desc();
    memory::dims sd = src_md.dims(), dd = dst_md.dims();
    memory::dims pad_r = {(dd[2] - 1) * p.strides[0] + p.kernel[0] - sd[2] - p.padding[0],
                          (dd[3] - 1) * p.strides[1] + p.kernel[1] - sd[3] - p.padding[1]};
    dnnl::pooling_backward::desc desc(dnnl::algorithm::pooling_max, src_md, dst_md,
                                      p.strides, p.kernel, p.padding, pad_r);
    p.bwd_pd = dnnl::pooling_backward::primitive_desc(desc, cpu_engine(), p.fwd_pd);
    p.bwd = dnnl::pooling_backward(p.bwd_pd);
    note_primitive("pool_bwd", p.bwd_pd);
  });
  Tensor dy = node.output.grad();
  if (dy.impl()->md != p.bwd_pd.diff_dst_desc()) dy = reordered(dy, p.bwd_pd.diff_dst_desc());
  auto sink = autograd::grad_sink(x, p.bwd_pd.diff_src_desc());
  p.bwd.execute(cpu_stream(),
                {{DNNL_ARG_DIFF_DST, as_memory(dy)},
                 {DNNL_ARG_WORKSPACE, memory(p.fwd_pd.workspace_desc(), cpu_engine(),
                                             saved.workspace->ptr)},
                 {DNNL_ARG_DIFF_SRC, as_memory(sink.target)}});
  autograd::finish_grad(x, sink);
}

void avg_pool_1x1_backward(autograd::Node& node) {
  const Tensor& x = node.inputs[0];
  if (!wants_grad(x)) return;
  int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  ChannelLayout l = channel_layout(x);
  auto sink = autograd::grad_sink(x, x.impl()->md);
  float* dx = sink.target.impl()->data;
  const float* dy = node.output.grad().impl()->data;
  float inv = 1.0f / static_cast<float>(H * W);
  std::memset(dx, 0, sink.target.impl()->bytes());  // blocked padding lanes stay zero
#pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > (1 << 16))
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      float g = dy[n * C + c] * inv;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) dx[l.offset(n, c, h, w)] = g;
    }
  autograd::finish_grad(x, sink);
}

}  // namespace detail
}  // namespace kiln::ops
