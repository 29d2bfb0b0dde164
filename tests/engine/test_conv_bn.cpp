// ops::conv2d_bn: in inference the batch norm is folded into the convolution (and the residual add
// and ReLU run as its post-ops, or after the small-map product); it must give what the separate
// ops give, on oneDNN's path and on the small-map path, and follow changes to any of the five
// tensors it folds. In training it is the separate ops, so those must match exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "kiln/engine/tensor_impl.h"
#include "kiln/models/resnet.h"

using namespace kiln;

namespace {

std::vector<float> pattern(size_t n, uint32_t seed, float lo, float hi) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + (hi - lo) * static_cast<float>(s >> 8) / static_cast<float>(1u << 24);
  }
  return v;
}

Tensor make(std::vector<int64_t> shape, uint32_t seed, float lo, float hi, const char* name) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  auto v = pattern(n, seed, lo, hi);
  return Tensor::from_plain(shape, v.data(), name);
}

struct Case {
  int64_t n, ic, oc, hw, k, stride, pad;
};

struct Params {
  Tensor w, g, b, mean, var;
};

Params params(const Case& c) {
  return {make({c.oc, c.ic, c.k, c.k}, 1, -0.2f, 0.2f, "t.conv.weight"), make({c.oc}, 2, 0.5f, 1.5f, "t.bn.weight"),
          make({c.oc}, 3, -0.5f, 0.5f, "t.bn.bias"), make({c.oc}, 4, -0.3f, 0.3f, "t.bn.running_mean"),
          make({c.oc}, 5, 0.2f, 2.0f, "t.bn.running_var")};
}

// The separate ops, as a ResNet ran them before conv2d_bn.
Tensor reference(const Tensor& x, const Params& p, const Case& c, bool relu, const Tensor& residual) {
  Tensor y = ops::batch_norm(ops::conv2d(x, p.w, Tensor(), c.stride, c.pad), p.g, p.b, p.mean, p.var,
                             /*training=*/false, relu && !residual.defined());
  return residual.defined() ? ops::add(y, residual, relu) : y;
}

void check_close(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  auto a = got.to_plain_vector(), b = want.to_plain_vector();
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::fmax(worst, std::fabs(a[i] - b[i]));
    scale = std::fmax(scale, std::fabs(b[i]));
  }
  // Folding reorders the fp32 arithmetic (w * s summed, instead of the sum scaled): a few ulps
  // of the largest value.
  CHECK_MESSAGE(worst <= 1e-5 * (1 + scale), "max |fused - separate| = ", worst, " (max |value| ", scale, ")");
}

int64_t out_hw(const Case& c) { return (c.hw + 2 * c.pad - c.k) / c.stride + 1; }

}  // namespace

TEST_CASE("conv2d_bn in inference equals conv2d + batch_norm [+ add] [+ relu]") {
  // oneDNN's path (8x8 maps; a 2x2 map at batch 2) and the small-map path (1x1 maps; a 2x2 map at
  // batch 16), 3x3 and the stride-2 1x1 downsample.
  const Case cases[] = {{2, 16, 16, 8, 3, 1, 1}, {2, 16, 32, 8, 1, 2, 0}, {2, 32, 32, 2, 3, 1, 1},
                        {3, 32, 32, 1, 3, 1, 1}, {16, 16, 16, 2, 3, 1, 1}, {4, 16, 32, 2, 3, 2, 1}};
  for (const Case& c : cases) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool relu = variant & 1, with_residual = variant & 2;
      CAPTURE(c.n);
      CAPTURE(c.hw);
      CAPTURE(c.k);
      CAPTURE(c.stride);
      CAPTURE(relu);
      CAPTURE(with_residual);
      NoGrad no_grad;
      Params p = params(c);
      Tensor x = make({c.n, c.ic, c.hw, c.hw}, 6, -1.0f, 1.0f, "t.x");
      // The input in the layout a previous convolution would leave (the conv chooses).
      x = ops::conv2d(x, make({c.ic, c.ic, 1, 1}, 7, -0.3f, 0.3f, "t.pre.weight"), Tensor(), 1, 0);
      const int64_t ohw = out_hw(c);
      Tensor residual;
      if (with_residual) {
        residual = make({c.n, c.oc, ohw, ohw}, 8, -1.0f, 1.0f, "t.residual");
        residual = ops::conv2d(residual, make({c.oc, c.oc, 1, 1}, 9, -0.3f, 0.3f, "t.res.weight"), Tensor(), 1, 0);
      }
      Tensor want = reference(x, p, c, relu, residual);
      Tensor got = ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, false, relu, residual);
      check_close(got, want);
      if (relu) {
        auto v = got.to_plain_vector();
        bool any_negative = false;
        for (float f : v) any_negative |= f < 0;
        CHECK_FALSE(any_negative);
      }
    }
  }
}

TEST_CASE("conv2d_bn refolds when the weights or the batch-norm statistics change") {
  const Case c{2, 16, 16, 8, 3, 1, 1};
  NoGrad no_grad;
  Params p = params(c);
  Tensor x = make({c.n, c.ic, c.hw, c.hw}, 6, -1.0f, 1.0f, "t.x");
  Tensor first = ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, false, true);
  check_close(first, reference(x, p, c, true, Tensor()));
  // Each of the five tensors in turn: the cached fold must not be reused.
  Tensor* changed[] = {&p.g, &p.b, &p.mean, &p.var};
  for (Tensor* t : changed) {
    float* d = t->plain_data_mutable();
    for (int64_t i = 0; i < t->numel(); ++i) d[i] = d[i] * 1.25f + 0.05f;
    check_close(ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, false, true),
                reference(x, p, c, true, Tensor()));
  }
  std::vector<float> w(static_cast<size_t>(p.w.numel()));
  p.w.copy_to_plain(w.data());
  for (float& f : w) f = -f;
  p.w.copy_from_plain(w.data());
  Tensor flipped = ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, false, true);
  check_close(flipped, reference(x, p, c, true, Tensor()));
  // Batch-norm training updates the running statistics in place: a later inference refolds.
  {
    Tensor train_out = ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, true, true);
    (void)train_out;
  }
  check_close(ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, false, true),
              reference(x, p, c, true, Tensor()));
}

TEST_CASE("conv2d_bn in training is exactly the separate ops, gradients included") {
  const Case c{4, 8, 8, 4, 3, 1, 1};
  auto run = [&](bool fused, std::vector<float>* dx, std::vector<float>* dw, std::vector<float>* mean) {
    Params p = params(c);
    Tensor x = make({c.n, c.ic, c.hw, c.hw}, 6, -1.0f, 1.0f, "t.x");
    Tensor r = make({c.n, c.oc, c.hw, c.hw}, 8, -1.0f, 1.0f, "t.residual");
    for (Tensor* t : {&x, &p.w, &p.g, &p.b}) t->set_requires_grad(true);
    Tensor y;
    if (fused) {
      y = ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var}, true, true, r);
    } else {
      y = ops::add(ops::batch_norm(ops::conv2d(x, p.w, Tensor(), c.stride, c.pad), p.g, p.b, p.mean, p.var, true,
                                   false),
                   r, true);
    }
    y.backward(make(y.shape(), 10, -1.0f, 1.0f, "t.dy"));
    *dx = x.grad().to_plain_vector();
    *dw = p.w.grad().to_plain_vector();
    *mean = p.mean.to_plain_vector();
  };
  std::vector<float> dx1, dw1, m1, dx2, dw2, m2;
  run(true, &dx1, &dw1, &m1);
  run(false, &dx2, &dw2, &m2);
  CHECK(dx1 == dx2);
  CHECK(dw1 == dw2);
  CHECK(m1 == m2);
}

TEST_CASE("eval after a training forward without an SGD step: the small-map path equals the padded one") {
  // A training forward moves the small-map convs' weights to plain and builds their matrices;
  // the eval forward that follows (no SGD step between) must read the same weights on every path.
  std::vector<float> img(2 * 3 * 32 * 32);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<float>((i * 7919) % 255) / 255.0f - 0.5f;
  auto logits = [&](ops::ConvPath path) {
    ops::set_conv_path(ops::ConvPath::automatic);
    models::ResNet net({"resnet18", 10}, 3);
    net.train();
    Tensor x = Tensor::from_plain({2, 3, 32, 32}, img.data(), "t.images");
    (void)net.forward(x);
    net.eval();
    ops::set_conv_path(path);
    NoGrad no_grad;
    auto v = net.forward(x).to_plain_vector();
    ops::set_conv_path(ops::ConvPath::automatic);
    return v;
  };
  auto a = logits(ops::ConvPath::automatic), b = logits(ops::ConvPath::padded);
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::fmax(worst, std::fabs(a[i] - b[i]));
    scale = std::fmax(scale, std::fabs(b[i]));
  }
  CHECK_MESSAGE(worst <= 1e-4 * (1 + scale), "max |small - padded| = ", worst, " of ", scale);
}

TEST_CASE("small-map path: one weight used with inputs in different layouts gives each its own matrix") {
  // The small-map matrix M permutes rows and columns by the activation layout (nchw, nhwc,
  // nChw8c, nChw16c); a weight whose version has not moved must still get the matrix of the
  // layout at hand. Seen wrong: eval right after a training forward, when the input came in
  // another layout than in training.
  for (bool fused : {false, true}) {
    CAPTURE(fused);
    const Case c{16, 32, 32, 2, 3, 1, 1};  // 2x2 maps: each layout orders (c, h, w) differently
    Params p = params(c);
    Tensor plain = make({c.n, c.ic, 2, 2}, 9, -1.0f, 1.0f, "t.x");
    std::vector<Tensor> xs{plain};
    for (auto tag : {dnnl::memory::format_tag::nChw16c, dnnl::memory::format_tag::nhwc,
                     dnnl::memory::format_tag::nChw8c})
      xs.push_back(reordered(plain, dnnl::memory::desc({c.n, c.ic, 2, 2}, dnnl::memory::data_type::f32, tag)));
    NoGrad no_grad;
    ops::set_conv_path(ops::ConvPath::padded);
    Tensor want = fused ? ops::conv2d_bn(plain, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var, 0.1, 1e-5}, false,
                                         true, Tensor())
                        : ops::conv2d(plain, p.w, Tensor(), c.stride, c.pad);
    ops::set_conv_path(ops::ConvPath::automatic);
    const int64_t before = engine_stats().small_convs;
    for (int round = 0; round < 2; ++round)
      for (const Tensor& x : xs) {
        CAPTURE(x.layout_str());
        Tensor got = fused ? ops::conv2d_bn(x, p.w, c.stride, c.pad, {p.g, p.b, p.mean, p.var, 0.1, 1e-5}, false,
                                            true, Tensor())
                           : ops::conv2d(x, p.w, Tensor(), c.stride, c.pad);
        check_close(got, want);
      }
    CHECK(engine_stats().small_convs - before == 8);  // every call took the small-map path
  }
}
