// One description per op (shapes, tolerances, FD step) run through the generic driver in
// op_harness.cpp, with each of kiln's kernel paths (scalar, avx2, avx512) forced in turn;
// paths the CPU lacks are skipped. oneDNN's ISA is fixed per process (ONEDNN_MAX_CPU_ISA).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "op_harness.h"

#include <random>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/engine/tensor_impl.h"

using namespace kiln;
using namespace kiln::test;

namespace {

// ---- slow, obviously-right references (double, C order) ----

Buf ref_conv(const Buf& x, const Buf& w, const Buf* b, Shape xs, Shape ws, int64_t s,
             int64_t p) {
  int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], OC = ws[0], K = ws[2];
  int64_t OH = (H + 2 * p - K) / s + 1, OW = (W + 2 * p - K) / s + 1;
  Buf y(static_cast<size_t>(N * OC * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = b ? (*b)[static_cast<size_t>(o)] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t kh = 0; kh < K; ++kh)
              for (int64_t kw = 0; kw < K; ++kw) {
                int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x[static_cast<size_t>(((n * C + c) * H + ih) * W + iw)] *
                       w[static_cast<size_t>(((o * C + c) * K + kh) * K + kw)];
              }
          y[static_cast<size_t>(((n * OC + o) * OH + oh) * OW + ow)] = acc;
        }
  return y;
}

Buf ref_bn(const Buf& x, const Buf& g, const Buf& b, const Buf& rm, const Buf& rv, Shape xs,
           bool training, bool relu) {
  int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Buf y(x.size());
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, var = 0;
    if (training) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) mean += x[static_cast<size_t>((n * C + c) * HW + i)];
      mean /= static_cast<double>(N * HW);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          double d = x[static_cast<size_t>((n * C + c) * HW + i)] - mean;
          var += d * d;
        }
      var /= static_cast<double>(N * HW);
    } else {
      mean = rm[static_cast<size_t>(c)];
      var = rv[static_cast<size_t>(c)];
    }
    double inv = 1.0 / std::sqrt(var + 1e-5);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        size_t k = static_cast<size_t>((n * C + c) * HW + i);
        double v = (x[k] - mean) * inv * g[static_cast<size_t>(c)] + b[static_cast<size_t>(c)];
        y[k] = relu ? std::max(v, 0.0) : v;
      }
  }
  return y;
}

Buf ref_maxpool(const Buf& x, Shape xs, int64_t k, int64_t s, int64_t p) {
  int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
  Buf y(static_cast<size_t>(N * C * OH * OW));
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double m = -1e300;
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t kw = 0; kw < k; ++kw) {
            int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W)
              m = std::max(m, x[static_cast<size_t>((nc * H + ih) * W + iw)]);
          }
        y[static_cast<size_t>((nc * OH + oh) * OW + ow)] = m;
      }
  return y;
}

Buf ref_log_softmax(const Buf& x, int64_t N, int64_t K) {
  Buf y(x.size());
  for (int64_t n = 0; n < N; ++n) {
    double mx = -1e300, s = 0;
    for (int64_t k = 0; k < K; ++k) mx = std::max(mx, x[static_cast<size_t>(n * K + k)]);
    for (int64_t k = 0; k < K; ++k) s += std::exp(x[static_cast<size_t>(n * K + k)] - mx);
    for (int64_t k = 0; k < K; ++k)
      y[static_cast<size_t>(n * K + k)] = x[static_cast<size_t>(n * K + k)] - mx - std::log(s);
  }
  return y;
}

Shape conv_out(Shape xs, Shape ws, int64_t s, int64_t p) {
  return {xs[0], ws[0], (xs[2] + 2 * p - ws[2]) / s + 1, (xs[3] + 2 * p - ws[3]) / s + 1};
}

// ---- the cases ----

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  struct ConvShape { Shape x, w; int64_t s, p; bool bias; bool blocked; };
  for (const ConvShape& cs : std::vector<ConvShape>{
           {{2, 3, 9, 9}, {16, 3, 3, 3}, 1, 1, false, false},   // stem-like: plain NCHW input
           {{2, 3, 11, 11}, {16, 3, 7, 7}, 2, 3, false, false},
           {{2, 16, 6, 6}, {32, 16, 3, 3}, 1, 1, true, true},
           {{3, 16, 7, 7}, {16, 16, 3, 3}, 2, 1, false, true},
           {{2, 16, 8, 8}, {32, 16, 1, 1}, 2, 0, false, true},  // downsample 1x1 stride 2
           {{2, 32, 4, 4}, {64, 32, 1, 1}, 1, 0, true, true},   // bottleneck 1x1
           {{2, 16, 1, 1}, {16, 16, 3, 3}, 1, 1, false, true},  // layer4 at 32x32: 1x1 maps
           // The small-map path (every input position reaches every output position):
           {{16, 16, 2, 2}, {32, 16, 3, 3}, 1, 1, false, true},  // layer3 at 32x32: 2x2 maps
           {{16, 8, 2, 2}, {16, 8, 3, 3}, 1, 1, false, false},   //   the same on plain NCHW
           {{16, 16, 2, 2}, {32, 16, 3, 3}, 2, 1, false, true},  // layer4.0.conv1: 2x2 -> 1x1
           {{2, 8, 1, 1}, {16, 8, 3, 3}, 1, 1, false, false},   // 1x1 map, plain
       }) {
    OpCase c;
    c.name = "conv2d x" + std::to_string(cs.x[1]) + "x" + std::to_string(cs.x[2]) + " k" +
             std::to_string(cs.w[2]) + " s" + std::to_string(cs.s) + (cs.bias ? " bias" : "");
    c.inputs = {cs.x, cs.w};
    if (cs.bias) c.inputs.push_back({cs.w[0]});
    c.grad_inputs = c.inputs.size();
    c.blocked_input0 = cs.blocked;
    c.out_shape = conv_out(cs.x, cs.w, cs.s, cs.p);
    c.run = [cs](const std::vector<Tensor>& t) {
      return ops::conv2d(t[0], t[1], cs.bias ? t[2] : Tensor(), cs.s, cs.p);
    };
    c.reference = [cs](const std::vector<Buf>& in) {
      return ref_conv(in[0], in[1], cs.bias ? &in[2] : nullptr, cs.x, cs.w, cs.s, cs.p);
    };
    c.fwd_tol = 1e-5;
    c.grad_tol = 2e-3;
    cases.push_back(c);
  }
  for (bool training : {true, false})
    for (bool relu : {false, true})
      for (Shape xs : {Shape{4, 16, 3, 3}, Shape{2, 32, 2, 2}}) {
        OpCase c;
        c.name = std::string("batch_norm ") + (training ? "train" : "eval") +
                 (relu ? "+relu" : "") + " C" + std::to_string(xs[1]);
        int64_t C = xs[1];
        c.inputs = {xs, {C}, {C}, {C}, {C}};
        c.grad_inputs = 3;
        c.blocked_input0 = true;
        c.out_shape = xs;
        c.input_init = {nullptr,
                        [](Buf& b) { for (size_t i = 0; i < b.size(); ++i) b[i] = 0.5 + 0.1 * static_cast<double>(i % 7); },
                        nullptr,
                        [](Buf& b) { for (size_t i = 0; i < b.size(); ++i) b[i] = 0.05 * static_cast<double>(i % 5); },
                        [](Buf& b) { for (size_t i = 0; i < b.size(); ++i) b[i] = 0.6 + 0.1 * static_cast<double>(i % 4); }};
        c.run = [training, relu](const std::vector<Tensor>& t) {
          return ops::batch_norm(t[0], t[1], t[2], t[3], t[4], training, relu);
        };
        c.reference = [xs, training, relu](const std::vector<Buf>& in) {
          return ref_bn(in[0], in[1], in[2], in[3], in[4], xs, training, relu);
        };
        c.fwd_tol = 2e-5;
        c.grad_tol = 3e-3;
        c.kinks = relu;
        cases.push_back(c);
      }
  for (Shape xs : {Shape{2, 16, 9, 9}, Shape{2, 16, 8, 8}, Shape{1, 16, 2, 2}}) {
    OpCase c;
    c.name = "max_pool2d 3x3/2 pad 1 on " + std::to_string(xs[2]) + "x" + std::to_string(xs[3]);
    c.inputs = {xs};
    c.grad_inputs = 1;
    c.blocked_input0 = true;
    c.out_shape = {xs[0], xs[1], (xs[2] - 1) / 2 + 1, (xs[3] - 1) / 2 + 1};
    c.run = [](const std::vector<Tensor>& t) { return ops::max_pool2d(t[0], 3, 2, 1); };
    c.reference = [xs](const std::vector<Buf>& in) { return ref_maxpool(in[0], xs, 3, 2, 1); };
    c.kinks = true;
    cases.push_back(c);
  }
  for (bool blocked : {false, true}) {
    OpCase c;
    Shape xs{2, 32, 3, 3};
    c.name = std::string("adaptive_avg_pool2d + flatten, ") + (blocked ? "blocked" : "plain");
    c.inputs = {xs};
    c.grad_inputs = 1;
    c.blocked_input0 = blocked;
    c.out_shape = {2, 32};
    c.run = [](const std::vector<Tensor>& t) {
      return ops::flatten(ops::adaptive_avg_pool2d_1x1(t[0]));
    };
    c.reference = [](const std::vector<Buf>& in) {
      Buf y(64, 0.0);
      for (size_t i = 0; i < in[0].size(); ++i) y[i / 9] += in[0][i] / 9.0;
      return y;
    };
    cases.push_back(c);
  }
  {
    OpCase c;
    c.name = "linear 5x24 -> 7";
    c.inputs = {{5, 24}, {7, 24}, {7}};
    c.grad_inputs = 3;
    c.out_shape = {5, 7};
    c.run = [](const std::vector<Tensor>& t) { return ops::linear(t[0], t[1], t[2]); };
    c.reference = [](const std::vector<Buf>& in) {
      Buf y(35);
      for (int n = 0; n < 5; ++n)
        for (int o = 0; o < 7; ++o) {
          double acc = in[2][static_cast<size_t>(o)];
          for (int i = 0; i < 24; ++i)
            acc += in[0][static_cast<size_t>(n * 24 + i)] * in[1][static_cast<size_t>(o * 24 + i)];
          y[static_cast<size_t>(n * 7 + o)] = acc;
        }
      return y;
    };
    cases.push_back(c);
  }
  for (bool relu : {false, true})
    for (bool blocked : {false, true}) {
      OpCase c;
      c.name = std::string("add") + (relu ? "+relu" : "") + (blocked ? " blocked" : " plain");
      Shape xs{2, 16, 3, 5};
      c.inputs = {xs, xs};
      c.grad_inputs = 2;
      c.blocked_input0 = blocked;  // b is plain: add reorders it to a's layout
      c.out_shape = xs;
      c.run = [relu](const std::vector<Tensor>& t) { return ops::add(t[0], t[1], relu); };
      c.reference = [relu](const std::vector<Buf>& in) {
        Buf y(in[0].size());
        for (size_t i = 0; i < y.size(); ++i) {
          y[i] = in[0][i] + in[1][i];
          if (relu) y[i] = std::max(y[i], 0.0);
        }
        return y;
      };
      c.kinks = relu;
      cases.push_back(c);
    }
  for (bool blocked : {false, true}) {
    OpCase c;
    c.name = std::string("relu") + (blocked ? " blocked" : " plain");
    Shape xs{2, 16, 4, 3};
    c.inputs = {xs};
    c.grad_inputs = 1;
    c.blocked_input0 = blocked;
    c.out_shape = xs;
    c.run = [](const std::vector<Tensor>& t) { return ops::relu(t[0]); };
    c.reference = [](const std::vector<Buf>& in) {
      Buf y(in[0]);
      for (double& v : y) v = std::max(v, 0.0);
      return y;
    };
    c.kinks = true;
    cases.push_back(c);
  }
  for (int64_t K : {10, 100}) {
    OpCase c;
    c.name = "log_softmax (6, " + std::to_string(K) + ")";
    c.inputs = {{6, K}};
    c.grad_inputs = 1;
    c.out_shape = {6, K};
    c.input_init = {[](Buf& b) { for (size_t i = 0; i < b.size(); ++i) b[i] = 4.0 * std::sin(static_cast<double>(i)); }};
    c.run = [](const std::vector<Tensor>& t) { return ops::log_softmax(t[0]); };
    c.reference = [K](const std::vector<Buf>& in) { return ref_log_softmax(in[0], 6, K); };
    cases.push_back(c);
  }
  {
    OpCase c;
    static const int64_t labels[6] = {3, 0, 9, 9, 5, 1};
    c.name = "nll_loss of log_softmax (6, 10)";
    c.inputs = {{6, 10}};
    c.grad_inputs = 1;
    c.out_shape = {};
    c.run = [](const std::vector<Tensor>& t) {
      return ops::nll_loss(ops::log_softmax(t[0]), labels);
    };
    c.reference = [](const std::vector<Buf>& in) {
      Buf lp = ref_log_softmax(in[0], 6, 10);
      double s = 0;
      for (int n = 0; n < 6; ++n) s -= lp[static_cast<size_t>(n * 10 + labels[n])];
      return Buf{s / 6};
    };
    cases.push_back(c);
  }
  return cases;
}

// The op a case checks: its name up to the first ' ' or '+' ("batch_norm train+relu C16" ->
// "batch_norm"). Each op is its own TEST_CASE below, so one op runs alone:
// test_engine --test-case='conv2d*'.
std::string op_of(const OpCase& c) { return c.name.substr(0, c.name.find_first_of(" +")); }

const std::vector<std::string> kHarnessOps = {"conv2d", "batch_norm", "max_pool2d",
                                              "adaptive_avg_pool2d", "linear", "add",
                                              "relu", "log_softmax", "nll_loss"};

// Runs every case of `op` with each of kiln's kernel paths the CPU has. A case keeps the seed
// of its position in all_cases(), so its data does not depend on which ops run.
void check_harness_op(const std::string& op) {
  Isa detected = detected_isa();
  auto cases = all_cases();
  int64_t ran = 0;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(detected)) {
      MESSAGE("skipping the ", isa_name(isa), " path: this CPU lacks it");
      continue;
    }
    force_isa(isa, /*cap_onednn=*/false);
    CAPTURE(isa_name(isa));
    for (size_t i = 0; i < cases.size(); ++i) {
      if (op_of(cases[i]) != op) continue;
      CAPTURE(cases[i].name);
      check_op(cases[i], 1000 + i);
      ++ran;
    }
  }
  force_isa(detected, false);
  CHECK_MESSAGE(ran > 0, "no harness case checks ", op);
}

}  // namespace

TEST_CASE("op harness: every case belongs to one of the per-op test cases") {
  for (const OpCase& c : all_cases()) {
    CAPTURE(c.name);
    CHECK(std::find(kHarnessOps.begin(), kHarnessOps.end(), op_of(c)) != kHarnessOps.end());
  }
}

TEST_CASE("conv2d: forward vs reference, gradients vs finite differences") { check_harness_op("conv2d"); }
TEST_CASE("batch_norm: forward vs reference, gradients vs finite differences") {
  check_harness_op("batch_norm");
}
TEST_CASE("max_pool2d: forward vs reference, gradients vs finite differences") {
  check_harness_op("max_pool2d");
}
TEST_CASE("adaptive_avg_pool2d: forward vs reference, gradients vs finite differences") {
  check_harness_op("adaptive_avg_pool2d");
}
TEST_CASE("linear: forward vs reference, gradients vs finite differences") { check_harness_op("linear"); }
TEST_CASE("add: forward vs reference, gradients vs finite differences") { check_harness_op("add"); }
TEST_CASE("relu: forward vs reference, gradients vs finite differences") { check_harness_op("relu"); }
TEST_CASE("log_softmax: forward vs reference, gradients vs finite differences") {
  check_harness_op("log_softmax");
}
TEST_CASE("nll_loss: forward vs reference, gradients vs finite differences") {
  check_harness_op("nll_loss");
}

TEST_CASE("batch_norm training updates running stats with momentum 0.1 and unbiased variance") {
  Shape xs{2, 3, 2, 2};
  std::vector<float> x(24);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 5) - 1.5f * static_cast<float>(i % 3);
  Tensor tx = Tensor::from_plain(xs, x.data());
  std::vector<float> ones(3, 1.0f), zeros(3, 0.0f), rm0{0.1f, 0.2f, 0.3f}, rv0{1.0f, 2.0f, 3.0f};
  Tensor w = Tensor::from_plain({3}, ones.data()), b = Tensor::from_plain({3}, zeros.data());
  Tensor rm = Tensor::from_plain({3}, rm0.data()), rv = Tensor::from_plain({3}, rv0.data());
  ops::batch_norm(tx, w, b, rm, rv, true, false);
  for (int c = 0; c < 3; ++c) {
    double mean = 0, var = 0;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 4; ++i) mean += x[static_cast<size_t>((n * 3 + c) * 4 + i)] / 8.0;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 4; ++i) {
        double d = x[static_cast<size_t>((n * 3 + c) * 4 + i)] - mean;
        var += d * d / 7.0;  // unbiased: M - 1
      }
    CHECK(rm.plain_data()[c] == doctest::Approx(0.9 * rm0[static_cast<size_t>(c)] + 0.1 * mean).epsilon(1e-6));
    CHECK(rv.plain_data()[c] == doctest::Approx(0.9 * rv0[static_cast<size_t>(c)] + 0.1 * var).epsilon(1e-6));
  }
}

TEST_CASE("ops report shape errors clearly") {
  Tensor x = Tensor::zeros({1, 4, 5, 5}, "x");
  Tensor w = Tensor::zeros({8, 3, 3, 3}, "layer1.0.conv1.weight");
  CHECK_THROWS_WITH_AS(ops::conv2d(x, w, Tensor(), 1, 1),
                       doctest::Contains("layer1.0.conv1.weight"), kiln::Error);
  std::vector<int64_t> bad{0, 7};
  Tensor lp = Tensor::zeros({2, 5}, "log_probs");
  CHECK_THROWS_WITH_AS(ops::nll_loss(lp, bad), doctest::Contains("[0, 5)"), kiln::InvalidArgument);
  CHECK_THROWS_AS(parse_isa("sse9"), kiln::Error);
}

namespace {

struct ConvRun {
  std::vector<float> y, dx, dw;
  int64_t small = 0;
};

ConvRun run_conv(ops::ConvPath path, const Shape& xs, const Shape& ws, int64_t s, int64_t p,
                 dnnl::memory::format_tag tag, const std::vector<float>& xv, const std::vector<float>& wv,
                 const std::vector<float>& rv) {
  ops::set_conv_path(path);
  Tensor x = Tensor::from_plain(xs, xv.data(), "x");
  x = reordered(x, dnnl::memory::desc(to_dims(xs), dnnl::memory::data_type::f32, tag));
  x.set_requires_grad(true);
  Tensor w = Tensor::from_plain(ws, wv.data(), "w");
  w.set_requires_grad(true);
  reset_engine_stats();
  Tensor y = ops::conv2d(x, w, Tensor(), s, p);
  ConvRun r;
  r.small = engine_stats().small_convs;
  r.y = y.to_plain_vector();
  y.backward(Tensor::from_plain(y.shape(), rv.data(), "R"));
  r.dx = x.grad().to_plain_vector();
  r.dw = w.grad().to_plain_vector();
  ops::set_conv_path(ops::ConvPath::automatic);
  return r;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return worst / (scale + 1e-30);
}

}  // namespace

TEST_CASE("small-map convolutions match oneDNN's padded ones: forward, backward-data, backward-weights") {
  using tag = dnnl::memory::format_tag;
  struct Case { Shape x, w; int64_t s, p; tag t; };
  const std::vector<Case> cases = {
      {{16, 64, 2, 2}, {64, 64, 3, 3}, 1, 1, tag::nChw16c},   // layer3-like
      {{16, 64, 1, 1}, {128, 64, 3, 3}, 1, 1, tag::nChw16c},  // layer4-like
      {{16, 64, 2, 2}, {128, 64, 3, 3}, 2, 1, tag::nChw8c},   // the stride-2 conv between them (AVX2 layout)
      {{16, 16, 2, 2}, {32, 16, 3, 3}, 1, 1, tag::nchw},
      {{16, 16, 2, 2}, {32, 16, 3, 3}, 1, 1, tag::nhwc},
      {{1, 32, 1, 1}, {32, 32, 3, 3}, 1, 1, tag::nChw16c},    // batch 1 (serving): 1x1 maps still skip padding
  };
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> uni(-1, 1);
  for (const Case& c : cases) {
    CAPTURE(c.x[1]);
    CAPTURE(c.x[2]);
    CAPTURE(c.s);
    CAPTURE(static_cast<int>(c.t));
    Shape ys = {c.x[0], c.w[0], (c.x[2] + 2 * c.p - 3) / c.s + 1, (c.x[3] + 2 * c.p - 3) / c.s + 1};
    std::vector<float> xv(static_cast<size_t>(numel(c.x))), wv(static_cast<size_t>(numel(c.w))),
        rv(static_cast<size_t>(numel(ys)));
    for (auto* v : {&xv, &wv, &rv})
      for (float& f : *v) f = uni(gen);
    ConvRun small = run_conv(ops::ConvPath::automatic, c.x, c.w, c.s, c.p, c.t, xv, wv, rv);
    ConvRun padded = run_conv(ops::ConvPath::padded, c.x, c.w, c.s, c.p, c.t, xv, wv, rv);
    CHECK(small.small == 1);   // the automatic path took the small-map route
    CHECK(padded.small == 0);  // KILN_CONV=padded's switch really switches
    CHECK(rel_err(small.y, padded.y) < 1e-5);
    CHECK(rel_err(small.dx, padded.dx) < 1e-5);
    CHECK(rel_err(small.dw, padded.dw) < 1e-5);
    if (c.x[2] == 1) {
      // On a 1x1 map only the centre tap touches data: every other tap's gradient is exactly 0.
      for (size_t i = 0; i < small.dw.size(); ++i)
        if (i % 9 != 4) REQUIRE(small.dw[i] == 0.0f);
    }
  }
}
