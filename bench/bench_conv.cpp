// Google Benchmark: ResNet34's convolutions at 32x32 input, forward, through kiln's op
// (ops::conv2d: oneDNN with the layout it chooses) against a naive direct convolution on
// identical data (validated at batch 8 before any timing). items_processed = multiply-adds,
// so items/s x 2 reads as FLOP/s (the counter `GFLOPS` shows it directly; padded taps count,
// the "full padded FLOPs" of a direct convolution). Wall-clock time: oneDNN runs multi-threaded.
// kiln's input here is a plain NCHW tensor, so each call includes the reorder into the
// blocked layout that a steady-state training step avoids: a lower bound on conv speed.
// conv_train_small/conv_train_padded: the small-map path against oneDNN's padded convolution
// in all three training passes (BM_conv_train below).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "kiln/engine/tensor_impl.h"

namespace {

struct ConvShape {
  const char* name;
  int64_t IC, OC, H, K, stride, pad;  // input H = W
  int64_t out() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t macs(int64_t N) const { return N * OC * out() * out() * IC * K * K; }
};

// Every distinct convolution in torchvision's resnet34 for a 32x32 input.
const ConvShape kShapes[] = {
    {"conv1_3x64_7x7s2_32", 3, 64, 32, 7, 2, 3},
    {"layer1_64x64_3x3_8", 64, 64, 8, 3, 1, 1},
    {"layer2.0.conv1_64x128_3x3s2_8", 64, 128, 8, 3, 2, 1},
    {"layer2.0.downsample_64x128_1x1s2_8", 64, 128, 8, 1, 2, 0},
    {"layer2_128x128_3x3_4", 128, 128, 4, 3, 1, 1},
    {"layer3.0.conv1_128x256_3x3s2_4", 128, 256, 4, 3, 2, 1},
    {"layer3.0.downsample_128x256_1x1s2_4", 128, 256, 4, 1, 2, 0},
    {"layer3_256x256_3x3_2", 256, 256, 2, 3, 1, 1},
    {"layer4.0.conv1_256x512_3x3s2_2", 256, 512, 2, 3, 2, 1},
    {"layer4.0.downsample_256x512_1x1s2_2", 256, 512, 2, 1, 2, 0},
    {"layer4_512x512_3x3_1", 512, 512, 1, 3, 1, 1},
};

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// src (N,IC,H,H), weights (OC,IC,K,K), no bias -> dst (N,OC,OH,OH); double accumulation.
void naive_conv(const ConvShape& s, int64_t N, const float* src, const float* weights, float* dst) {
  const int64_t OH = s.out();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OH; ++ow) {
          double acc = 0;
          for (int64_t ic = 0; ic < s.IC; ++ic)
            for (int64_t kh = 0; kh < s.K; ++kh) {
              int64_t ih = oh * s.stride - s.pad + kh;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.K; ++kw) {
                int64_t iw = ow * s.stride - s.pad + kw;
                if (iw < 0 || iw >= s.H) continue;
                acc += static_cast<double>(src[((n * s.IC + ic) * s.H + ih) * s.H + iw]) *
                       weights[((oc * s.IC + ic) * s.K + kh) * s.K + kw];
              }
            }
          dst[((n * s.OC + oc) * OH + oh) * OH + ow] = static_cast<float>(acc);
        }
}

struct Data {
  std::vector<float> src, weights;
  Data(const ConvShape& s, int64_t N)
      : src(random_vector(N * s.IC * s.H * s.H, 1, 1.0f)),
        weights(random_vector(s.OC * s.IC * s.K * s.K, 2,
                              static_cast<float>(std::sqrt(2.0 / static_cast<double>(s.IC * s.K * s.K))))) {}
};

kiln::Tensor kiln_conv(const ConvShape& s, int64_t N, const kiln::Tensor& src, const kiln::Tensor& w) {
  (void)N;
  return kiln::ops::conv2d(src, w, kiln::Tensor(), s.stride, s.pad);
}

void set_counters(benchmark::State& state, const ConvShape& s, int64_t N) {
  const double macs = static_cast<double>(s.macs(N));
  state.SetItemsProcessed(state.iterations() * s.macs(N));
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * macs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv_naive(benchmark::State& state, const ConvShape& s, int64_t N) {
  Data d(s, N);
  std::vector<float> dst(static_cast<size_t>(N * s.OC * s.out() * s.out()));
  for (auto _ : state) {
    naive_conv(s, N, d.src.data(), d.weights.data(), dst.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s, N);
}

void BM_conv_kiln(benchmark::State& state, const ConvShape& s, int64_t N) {
  kiln::NoGrad no_grad;
  {  // validate at batch 8 against the naive convolution on identical data
    const int64_t NV = 8;
    Data v(s, NV);
    std::vector<float> ref(static_cast<size_t>(NV * s.OC * s.out() * s.out()));
    naive_conv(s, NV, v.src.data(), v.weights.data(), ref.data());
    kiln::Tensor src = kiln::Tensor::from_plain({NV, s.IC, s.H, s.H}, v.src.data(), "src");
    kiln::Tensor w = kiln::Tensor::from_plain({s.OC, s.IC, s.K, s.K}, v.weights.data(), "weights");
    std::vector<float> got = kiln_conv(s, NV, src, w).to_plain_vector();
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_err = std::max(max_err, static_cast<double>(std::fabs(got[i] - ref[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
    }
    if (got.size() != ref.size() || max_err > 1e-5 * max_ref + 1e-6) {
      state.SkipWithError("kiln's conv2d disagrees with the naive convolution");
      return;
    }
  }
  Data d(s, N);
  kiln::Tensor src = kiln::Tensor::from_plain({N, s.IC, s.H, s.H}, d.src.data(), "src");
  kiln::Tensor w = kiln::Tensor::from_plain({s.OC, s.IC, s.K, s.K}, d.weights.data(), "weights");
  for (auto _ : state) {
    kiln::Tensor dst = kiln_conv(s, N, src, w);
    benchmark::DoNotOptimize(dst.impl());
  }
  set_counters(state, s, N);
}

// One convolution's training passes (forward, backward-data, backward-weights) on the blocked
// input layout a training step hands it (nChw16c with AVX-512, nChw8c otherwise), through the
// path the engine chooses (`auto`: the small-map GEMM where it applies) or oneDNN's padded
// convolution (`padded`, KILN_CONV=padded). The weight's version is bumped every iteration, as an
// SGD step does, so the small path's matrix is rebuilt each time: the cost a step really pays.
// GFLOPS counts the padded multiply-adds x 3 passes, so the two paths compare on one scale.
void BM_conv_train(benchmark::State& state, const ConvShape& s, int64_t N, kiln::ops::ConvPath path) {
  kiln::ops::set_conv_path(path);
  Data d(s, N);
  const auto tag = kiln::active_isa() == kiln::Isa::avx512 ? dnnl::memory::format_tag::nChw16c
                                                            : dnnl::memory::format_tag::nChw8c;
  kiln::Tensor src = kiln::Tensor::from_plain({N, s.IC, s.H, s.H}, d.src.data(), "src");
  src = kiln::reordered(src, dnnl::memory::desc({N, s.IC, s.H, s.H}, dnnl::memory::data_type::f32, tag));
  src.set_requires_grad(true);
  kiln::Tensor w = kiln::Tensor::from_plain({s.OC, s.IC, s.K, s.K}, d.weights.data(), "weights");
  w.set_requires_grad(true);
  std::vector<float> dyv = random_vector(N * s.OC * s.out() * s.out(), 3, 1.0f);
  kiln::Tensor dy = kiln::Tensor::from_plain({N, s.OC, s.out(), s.out()}, dyv.data(), "dy");
  kiln::reset_engine_stats();
  int64_t small = 0;
  for (auto _ : state) {
    kiln::Tensor y = kiln::ops::conv2d(src, w, kiln::Tensor(), s.stride, s.pad);
    if (small == 0) {
      small = kiln::engine_stats().small_convs;
      dy = kiln::reordered(dy, y.impl()->md);  // the gradient arrives in the output's layout
    }
    y.backward(dy);
    benchmark::DoNotOptimize(w.grad().impl());
    ++w.impl()->version;  // as SGD: the weight changed
  }
  kiln::ops::set_conv_path(kiln::ops::ConvPath::automatic);
  state.SetItemsProcessed(state.iterations() * 3 * s.macs(N));
  state.counters["GFLOPS"] =
      benchmark::Counter(6.0 * static_cast<double>(s.macs(N)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["small_path"] = small > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::set_num_threads(0);
  for (const auto& s : kShapes) {
    benchmark::RegisterBenchmark((std::string("conv_naive/") + s.name + "/N8").c_str(),
                                 BM_conv_naive, s, int64_t{8})->Unit(benchmark::kMillisecond)->UseRealTime();
    for (int64_t N : {int64_t{8}, int64_t{128}})
      benchmark::RegisterBenchmark(
          (std::string("conv_kiln/") + s.name + "/N" + std::to_string(N)).c_str(), BM_conv_kiln,
          s, N)->Unit(benchmark::kMillisecond)->UseRealTime();  // oneDNN is multi-threaded
  }
  // The small-map path against oneDNN's padded convolution, per shape it applies to, at the
  // training batch: forward + backward-data + backward-weights.
  for (const auto& s : kShapes) {
    if (s.K == 1 || s.H > 2) continue;
    for (auto [path, name] : {std::pair{kiln::ops::ConvPath::automatic, "small"},
                              std::pair{kiln::ops::ConvPath::padded, "padded"}})
      benchmark::RegisterBenchmark((std::string("conv_train_") + name + "/" + s.name + "/N128").c_str(),
                                   BM_conv_train, s, int64_t{128}, path)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
