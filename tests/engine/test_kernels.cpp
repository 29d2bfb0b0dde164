// kiln's own kernels, each ISA path against the scalar formula on identical data: the SGD
// update (first step and momentum steps), add (+relu), relu backward, accumulate. Lengths
// are chosen to exercise vector tails and the multi-threaded split.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kiln/engine/kernels.h"

using namespace kiln;

namespace {

std::vector<float> data(size_t n, float phase) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(static_cast<float>(i) * 0.37f + phase);
  return v;
}

std::vector<Isa> paths() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (static_cast<int>(isa) <= static_cast<int>(detected_isa())) v.push_back(isa);
  return v;
}

}  // namespace

TEST_CASE("sgd_update matches PyTorch's formula on every ISA path") {
  for (Isa isa : paths()) {
    CAPTURE(isa_name(isa));
    const auto& k = kernels::table_for(isa);
    CHECK(k.isa == isa);
    for (size_t n : {size_t{1}, size_t{17}, size_t{100003}}) {
      auto p = data(n, 0.1f), g = data(n, 1.3f), buf = data(n, 2.0f);
      auto p_ref = p, buf_ref = buf;
      const float lr = 0.05f, m = 0.9f, wd = 5e-4f;
      for (int step = 0; step < 3; ++step) {
        bool first = step == 0;
        k.sgd_update(p.data(), g.data(), buf.data(), static_cast<int64_t>(n), lr, m, wd, first);
        for (size_t i = 0; i < n; ++i) {
          float d = g[i] + wd * p_ref[i];
          buf_ref[i] = first ? d : m * buf_ref[i] + d;  // first step: buf = g (no momentum)
          p_ref[i] -= lr * buf_ref[i];
        }
      }
      double worst = 0;
      for (size_t i = 0; i < n; ++i)
        worst = std::max(worst, static_cast<double>(std::fabs(p[i] - p_ref[i])) +
                                    std::fabs(buf[i] - buf_ref[i]));
      CHECK_MESSAGE(worst < 1e-6, "n=", n, " max error ", worst);
    }
  }
}

TEST_CASE("add, add+relu, relu backward and accumulate on every ISA path") {
  for (Isa isa : paths()) {
    CAPTURE(isa_name(isa));
    const auto& k = kernels::table_for(isa);
    for (size_t n : {size_t{5}, size_t{64}, size_t{70001}}) {
      CAPTURE(n);
      auto a = data(n, 0.0f), b = data(n, 0.5f), out(a);
      size_t bad = 0;
      k.add(a.data(), b.data(), out.data(), static_cast<int64_t>(n), false);
      for (size_t i = 0; i < n; ++i) bad += out[i] != a[i] + b[i];
      CHECK_MESSAGE(bad == 0, "add: ", bad, " wrong elements");
      k.add(a.data(), b.data(), out.data(), static_cast<int64_t>(n), true);
      for (size_t i = 0; i < n; ++i) bad += out[i] != std::max(a[i] + b[i], 0.0f);
      CHECK_MESSAGE(bad == 0, "add+relu: ", bad, " wrong elements");
      std::vector<float> dx(n);
      k.relu_backward(out.data(), b.data(), dx.data(), static_cast<int64_t>(n));
      for (size_t i = 0; i < n; ++i) bad += dx[i] != (out[i] > 0 ? b[i] : 0.0f);
      CHECK_MESSAGE(bad == 0, "relu backward: ", bad, " wrong elements");
      auto acc = a;
      k.accumulate(acc.data(), b.data(), static_cast<int64_t>(n));
      for (size_t i = 0; i < n; ++i) bad += acc[i] != a[i] + b[i];
      CHECK_MESSAGE(bad == 0, "accumulate: ", bad, " wrong elements");
    }
  }
}
