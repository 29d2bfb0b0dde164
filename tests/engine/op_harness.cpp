// The generic driver of the op harness (see op_harness.h).
#include "op_harness.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kiln/engine/tensor_impl.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"

namespace kiln::test {

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace {

double dot(const Buf& a, const Buf& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<float> to_f32(const Buf& b) { return std::vector<float>(b.begin(), b.end()); }

}  // namespace

void check_op(const OpCase& c, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<Buf> in(c.inputs.size());
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    in[i].resize(static_cast<size_t>(numel(c.inputs[i])));
    if (i < c.input_init.size() && c.input_init[i]) {
      c.input_init[i](in[i]);
    } else {
      for (double& v : in[i]) v = uni(gen);
    }
    // Round to fp32 so kiln and the reference see the same values.
    for (double& v : in[i]) v = static_cast<double>(static_cast<float>(v));
  }
  Buf R(static_cast<size_t>(numel(c.out_shape)));
  for (double& v : R) v = static_cast<double>(static_cast<float>(uni(gen)));

  // kiln forward + backward
  std::vector<Tensor> t;
  for (size_t i = 0; i < in.size(); ++i) {
    auto f = to_f32(in[i]);
    Tensor x = Tensor::from_plain(c.inputs[i], f.data(), "in" + std::to_string(i));
    if (i == 0 && c.blocked_input0) {
      int64_t block = detected_isa() == Isa::avx512 ? 16 : 8;
      auto md = dnnl::memory::desc(to_dims(c.inputs[0]), dnnl::memory::data_type::f32,
                                   block == 16 ? dnnl::memory::format_tag::nChw16c
                                               : dnnl::memory::format_tag::nChw8c);
      x = reordered(x, md);
    }
    x.set_requires_grad(i < c.grad_inputs);
    t.push_back(x);
  }
  Tensor out = c.run(t);
  REQUIRE_MESSAGE(out.shape() == c.out_shape, c.name, ": output shape");
  Buf ref = c.reference(in);
  auto got = out.to_plain_vector();
  double ref_max = 0, worst = 0;
  for (double v : ref) ref_max = std::max(ref_max, std::fabs(v));
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
  CHECK_MESSAGE(worst <= c.fwd_tol * (1 + ref_max), c.name, ": forward max |kiln - ref| = ",
                worst, ", allowed ", c.fwd_tol * (1 + ref_max));
  if (c.grad_inputs == 0) return;

  auto rf = to_f32(R);
  out.backward(Tensor::from_plain(c.out_shape, rf.data(), "R"));
  for (size_t i = 0; i < c.grad_inputs; ++i) {
    REQUIRE_MESSAGE(t[i].has_grad(), c.name, ": no gradient for input ", i);
    auto g = t[i].grad().to_plain_vector();
    // Finite differences on the double-precision reference, at a sample of components.
    size_t n = in[i].size();
    std::vector<size_t> idx;
    for (size_t k = 0; k < std::min<size_t>(n, 24); ++k) idx.push_back(n <= 24 ? k : gen() % n);
    std::vector<double> fd(idx.size());
    std::vector<bool> skip(idx.size(), false);
    double fd_max = 0;
    for (size_t k = 0; k < idx.size(); ++k) {
      std::vector<Buf> p = in;
      double x0 = in[i][idx[k]], h = c.fd_step;
      p[i][idx[k]] = x0 + h;
      double up = dot(c.reference(p), R);
      p[i][idx[k]] = x0 - h;
      double down = dot(c.reference(p), R);
      double mid = dot(ref, R);
      fd[k] = (up - down) / (2 * h);
      (void)mid;
      if (c.kinks) {
        // Kink rule: where the function is smooth, the central difference barely moves when
        // the step shrinks 4x; one that moves straddles a kink (or a max tie): skip it.
        double q = h / 4;
        p[i][idx[k]] = x0 + q;
        double up4 = dot(c.reference(p), R);
        p[i][idx[k]] = x0 - q;
        double down4 = dot(c.reference(p), R);
        double fd4 = (up4 - down4) / (2 * q);
        if (std::fabs(fd4 - fd[k]) > 1e-4 * (1 + std::fabs(fd[k]))) skip[k] = true;
      }
      if (!skip[k]) fd_max = std::max(fd_max, std::fabs(fd[k]));
    }
    size_t skipped = static_cast<size_t>(std::count(skip.begin(), skip.end(), true));
    CHECK_MESSAGE(skipped * 2 <= idx.size(), c.name, ": the kink rule skipped ", skipped, " of ",
                  idx.size(), " components of input ", i);
    for (size_t k = 0; k < idx.size(); ++k) {
      if (skip[k]) continue;
      double err = std::fabs(g[idx[k]] - fd[k]);
      double allowed = c.grad_tol * (fd_max + std::fabs(fd[k])) + 1e-7;
      CHECK_MESSAGE(err <= allowed, c.name, ": d/d input", i, "[", idx[k], "] kiln ", g[idx[k]],
                    " finite-difference ", fd[k], " (allowed error ", allowed, ")");
    }
  }
}

}  // namespace kiln::test
