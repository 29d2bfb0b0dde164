// linear on oneDNN's inner product with plain layouts throughout: x (N,IC) nc, weight
// (OC,IC) oi, bias (OC), dst (N,OC) nc. The head is small; keeping it plain means no reorder
// at the fc boundary and a weight that exports as is.
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

using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

struct IpPrims {
  memory::desc src, weights, bias, dst;
  dnnl::inner_product_forward::primitive_desc fwd_pd;
  dnnl::inner_product_forward fwd;
  dnnl::inner_product_backward_data::primitive_desc bwd_data_pd;
  dnnl::inner_product_backward_data bwd_data;
  dnnl::inner_product_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::inner_product_backward_weights bwd_weights;
  std::once_flag bwd_once;  // the backward primitives, built on the first backward
};

std::shared_ptr<IpPrims> get_prims(int64_t N, int64_t IC, int64_t OC, bool training) {
  static auto* cache = new ShapeCache<IpPrims>;
  CacheKey key;
  key.add(N).add(IC).add(OC).add(training);
  return cache->get(key, [&] {
    auto p = std::make_shared<IpPrims>();
    p->src = memory::desc({N, IC}, f32, tag::nc);
    p->weights = memory::desc({OC, IC}, f32, tag::oi);
    p->bias = memory::desc({OC}, f32, tag::x);
    p->dst = memory::desc({N, OC}, f32, tag::nc);
    auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    dnnl::inner_product_forward::desc desc(prop, p->src, p->weights, p->bias, p->dst);
    p->fwd_pd = dnnl::inner_product_forward::primitive_desc(desc, cpu_engine());
    p->fwd = dnnl::inner_product_forward(p->fwd_pd);
    note_primitive("ip_fwd", p->fwd_pd);
    return p;
  });
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (x.shape().size() != 2 || weight.shape().size() != 2 || x.dim(1) != weight.dim(1))
    fail("linear " + weight.name(),
         "input (N, " + std::to_string(weight.shape().size() == 2 ? weight.dim(1) : -1) + ")",
         io::shape_str(x.shape()));
  KILN_ASSERT(x.is_plain() && weight.is_plain() && bias.is_plain() &&
                  bias.numel() == weight.dim(0),
              "linear expects plain x, weight and bias");
  bool record = autograd::should_record({&x, &weight, &bias});
  auto p = get_prims(x.dim(0), x.dim(1), weight.dim(0), record);
  std::string base = weight.name().substr(0, weight.name().rfind('.'));
  Tensor dst = make_tensor({x.dim(0), weight.dim(0)}, p->dst, base + ".out");
  p->fwd.execute(cpu_stream(), {{DNNL_ARG_SRC, as_memory(x)},
                                {DNNL_ARG_WEIGHTS, as_memory(weight)},
                                {DNNL_ARG_BIAS, as_memory(bias)},
                                {DNNL_ARG_DST, as_memory(dst)}});
  if (record) autograd::record(autograd::OpKind::linear, {x, weight, bias}, dst, p);
  return dst;
}

namespace detail {

void linear_backward(autograd::Node& node) {
  auto& p = *static_cast<IpPrims*>(node.saved.get());
  const Tensor& x = node.inputs[0];
  const Tensor& weight = node.inputs[1];
  const Tensor& bias = node.inputs[2];
  const Tensor& dy = node.output.grad();
  std::call_once(p.bwd_once, [&] {
    dnnl::inner_product_backward_data::desc dd(p.src, p.weights, p.dst);
    p.bwd_data_pd =
        dnnl::inner_product_backward_data::primitive_desc(dd, cpu_engine(), p.fwd_pd);
    p.bwd_data = dnnl::inner_product_backward_data(p.bwd_data_pd);
    note_primitive("ip_bwd_data", p.bwd_data_pd);
    dnnl::inner_product_backward_weights::desc dw(p.src, p.weights, p.bias, p.dst);
    p.bwd_weights_pd =
        dnnl::inner_product_backward_weights::primitive_desc(dw, cpu_engine(), p.fwd_pd);
    p.bwd_weights = dnnl::inner_product_backward_weights(p.bwd_weights_pd);
    note_primitive("ip_bwd_weights", p.bwd_weights_pd);
  });
  if (wants_grad(x)) {
    auto sink = autograd::grad_sink(x, p.src);
    p.bwd_data.execute(cpu_stream(), {{DNNL_ARG_DIFF_DST, as_memory(dy)},
                                      {DNNL_ARG_WEIGHTS, as_memory(weight)},
                                      {DNNL_ARG_DIFF_SRC, as_memory(sink.target)}});
    autograd::finish_grad(x, sink);
  }
  if (wants_grad(weight) || wants_grad(bias)) {
    autograd::GradSink sw, sb;
    if (wants_grad(weight)) sw = autograd::grad_sink(weight, p.weights);
    else sw.target = make_tensor(weight.shape(), p.weights, "scratch");
    if (wants_grad(bias)) sb = autograd::grad_sink(bias, p.bias);
    else sb.target = make_tensor(bias.shape(), p.bias, "scratch");
    p.bwd_weights.execute(cpu_stream(), {{DNNL_ARG_SRC, as_memory(x)},
                                         {DNNL_ARG_DIFF_DST, as_memory(dy)},
                                         {DNNL_ARG_DIFF_WEIGHTS, as_memory(sw.target)},
                                         {DNNL_ARG_DIFF_BIAS, as_memory(sb.target)}});
    if (wants_grad(weight)) autograd::finish_grad(weight, sw);
    if (wants_grad(bias)) autograd::finish_grad(bias, sb);
  }
}

}  // namespace detail
}  // namespace kiln::ops
