// Google Benchmark: kiln's own kernels (engine/kernels.h) on each ISA path the CPU has
// (scalar, avx2, avx512) against a naive loop on identical data, validated before timing.
// Sizes are ResNet34's: the SGD update runs over all 21.3 M parameters at once (one arena
// pass), residual add+ReLU over a layer1 activation at batch 128 (128x64x8x8), log_softmax +
// nll over the (128,100) logits. bytes_processed reads as GB/s (these kernels are memory-bound).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kiln/engine/cpu.h"
#include "kiln/engine/kernels.h"

namespace {

using kiln::Isa;

constexpr int64_t kParams = 21335972;          // resnet34, 100 classes
constexpr int64_t kActivation = 128 * 64 * 8 * 8;  // layer1 residual at batch 128
constexpr int64_t kRows = 128, kCols = 100;

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// --- naive references: the obvious loops ---
void naive_sgd(float* p, const float* g, float* buf, int64_t n, float lr, float mom, float wd,
               bool first) {
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] + wd * p[i];
    buf[i] = first ? gi : mom * buf[i] + gi;
    p[i] -= lr * buf[i];
  }
}
void naive_add_relu(const float* a, const float* b, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = std::max(a[i] + b[i], 0.0f);
}
double naive_log_softmax_nll(const float* src, float* dst, const int64_t* labels) {
  double loss = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const float* s = src + r * kCols;
    float mx = s[0];
    for (int64_t c = 1; c < kCols; ++c) mx = std::max(mx, s[c]);
    double sum = 0;
    for (int64_t c = 0; c < kCols; ++c) sum += std::exp(static_cast<double>(s[c] - mx));
    for (int64_t c = 0; c < kCols; ++c)
      dst[r * kCols + c] = static_cast<float>(s[c] - mx - std::log(sum));
    loss -= dst[r * kCols + labels[r]];
  }
  return loss / kRows;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const kiln::kernels::Table* table_or_skip(benchmark::State& state, Isa isa) {
  if (isa > kiln::detected_isa()) {
    state.SkipWithError("this CPU cannot run this ISA path");
    return nullptr;
  }
  return &kiln::kernels::table_for(isa);
}

// ---------- SGD update over the whole parameter arena ----------
void BM_sgd_update(benchmark::State& state, Isa isa, bool naive) {
  auto p = random_vector(kParams, 1, 0.05f), g = random_vector(kParams, 2, 0.01f);
  auto buf = random_vector(kParams, 3, 0.01f);
  const kiln::kernels::Table* t = naive ? nullptr : table_or_skip(state, isa);
  if (!naive && !t) return;
  if (!naive) {  // validate one step against the naive loop on identical data
    auto p1 = p, b1 = buf, p2 = p, b2 = buf;
    t->sgd_update(p1.data(), g.data(), b1.data(), kParams, 0.01f, 0.9f, 5e-4f, false);
    naive_sgd(p2.data(), g.data(), b2.data(), kParams, 0.01f, 0.9f, 5e-4f, false);
    if (max_abs_diff(p1, p2) > 1e-6f || max_abs_diff(b1, b2) > 1e-6f) {
      state.SkipWithError("kiln's SGD update disagrees with the naive loop");
      return;
    }
  }
  for (auto _ : state) {
    if (naive) naive_sgd(p.data(), g.data(), buf.data(), kParams, 2e-4f, 0.9f, 5e-4f, false);
    else t->sgd_update(p.data(), g.data(), buf.data(), kParams, 2e-4f, 0.9f, 5e-4f, false);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kParams);
  state.SetBytesProcessed(state.iterations() * kParams * 5 * 4);  // read p,g,buf; write p,buf
}

// ---------- residual add with fused ReLU ----------
void BM_add_relu(benchmark::State& state, Isa isa, bool naive) {
  auto a = random_vector(kActivation, 4), b = random_vector(kActivation, 5);
  std::vector<float> dst(a.size()), ref(a.size());
  const kiln::kernels::Table* t = naive ? nullptr : table_or_skip(state, isa);
  if (!naive && !t) return;
  if (!naive) {
    t->add(a.data(), b.data(), dst.data(), kActivation, true);
    naive_add_relu(a.data(), b.data(), ref.data(), kActivation);
    if (max_abs_diff(dst, ref) != 0.0f) {
      state.SkipWithError("kiln's add+relu disagrees with the naive loop");
      return;
    }
  }
  for (auto _ : state) {
    if (naive) naive_add_relu(a.data(), b.data(), dst.data(), kActivation);
    else t->add(a.data(), b.data(), dst.data(), kActivation, true);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kActivation);
  state.SetBytesProcessed(state.iterations() * kActivation * 3 * 4);
}

// ---------- log_softmax + nll_loss forward and backward on (128,100) logits ----------
void BM_log_softmax_nll(benchmark::State& state, Isa isa, bool naive) {
  auto src = random_vector(kRows * kCols, 6, 3.0f);
  std::vector<int64_t> labels(kRows);
  for (int64_t r = 0; r < kRows; ++r) labels[static_cast<size_t>(r)] = (r * 37) % kCols;
  std::vector<float> dst(src.size()), ref(src.size()), diff_logp(src.size()), diff_src(src.size());
  const kiln::kernels::Table* t = naive ? nullptr : table_or_skip(state, isa);
  if (!naive && !t) return;
  if (!naive) {
    t->log_softmax_forward(src.data(), dst.data(), kRows, kCols);
    double loss = t->nll_forward(dst.data(), labels.data(), kRows, kCols);
    double ref_loss = naive_log_softmax_nll(src.data(), ref.data(), labels.data());
    if (max_abs_diff(dst, ref) > 1e-5f || std::fabs(loss - ref_loss) > 1e-5) {
      state.SkipWithError("kiln's log_softmax/nll disagrees with the naive loop");
      return;
    }
  }
  for (auto _ : state) {
    if (naive) {
      double loss = naive_log_softmax_nll(src.data(), dst.data(), labels.data());
      benchmark::DoNotOptimize(loss);
      // backward: d/dsrc of mean nll = softmax - onehot, / rows
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t c = 0; c < kCols; ++c)
          diff_src[r * kCols + c] =
              (std::exp(dst[r * kCols + c]) - (c == labels[r] ? 1.0f : 0.0f)) / kRows;
    } else {
      t->log_softmax_forward(src.data(), dst.data(), kRows, kCols);
      double loss = t->nll_forward(dst.data(), labels.data(), kRows, kCols);
      benchmark::DoNotOptimize(loss);
      t->nll_backward(labels.data(), diff_logp.data(), 1.0f, kRows, kCols);
      t->log_softmax_backward(dst.data(), diff_logp.data(), diff_src.data(), kRows, kCols);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4 * 4);
}

void register_all() {
  struct Path {
    const char* name;
    Isa isa;
  };
  const Path paths[] = {{"scalar", Isa::scalar}, {"avx2", Isa::avx2}, {"avx512", Isa::avx512}};
  benchmark::RegisterBenchmark("sgd_update/naive", BM_sgd_update, Isa::scalar, true);
  for (const auto& p : paths)
    benchmark::RegisterBenchmark((std::string("sgd_update/") + p.name).c_str(), BM_sgd_update,
                                 p.isa, false);
  benchmark::RegisterBenchmark("add_relu/naive", BM_add_relu, Isa::scalar, true);
  for (const auto& p : paths)
    benchmark::RegisterBenchmark((std::string("add_relu/") + p.name).c_str(), BM_add_relu, p.isa,
                                 false);
  benchmark::RegisterBenchmark("log_softmax_nll/naive", BM_log_softmax_nll, Isa::scalar, true);
  for (const auto& p : paths)
    benchmark::RegisterBenchmark((std::string("log_softmax_nll/") + p.name).c_str(),
                                 BM_log_softmax_nll, p.isa, false);
}

}  // namespace

int main(int argc, char** argv) {
  kiln::set_num_threads(1);  // per-core kernel speed; the engine parallelises over the arena
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
