// The data loader's throughput: augmented, normalized images per second, per core (one worker
// thread) and with the threaded loader as `kiln train` uses it, on synthetic records in memory.
// "waited" = fraction of next() calls that found their batch not ready (a consumer that does
// no work waits often; the training loop, ~250 ms per batch, should never).
//   build/bench/bench_loader --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "kiln/data/loader.h"
#include "kiln/data/synth.h"
#include "kiln/data/transforms.h"

using namespace kiln::data;

namespace {

const Dataset& dataset() {
  static const Dataset ds = [] {
    Dataset d;
    const int64_t n = 4096;
    for (int c = 0; c < 100; ++c) d.class_names.push_back("c" + std::to_string(c));
    d.images.resize(static_cast<size_t>(n * kImageBytes));
    for (int64_t i = 0; i < n; ++i) {
      d.labels.push_back(i % 100);
      draw_synthetic(i % 100, 100, static_cast<uint64_t>(i), d.images.data() + i * kImageBytes);
    }
    return d;
  }();
  return ds;
}

std::vector<int64_t> all_indices() {
  std::vector<int64_t> v(static_cast<size_t>(dataset().size()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

// One image through crop + flip + rotate + ToTensor + Normalize on the calling thread.
void BM_augment_normalize(benchmark::State& st) {
  const Dataset& ds = dataset();
  Normalizer norm;
  Rng rng(1);
  alignas(64) uint8_t tmp[kImageBytes];
  alignas(64) float out[kImageBytes];
  int64_t i = 0;
  for (auto _ : st) {
    augment(ds.image(i % ds.size()), draw_augment(rng), tmp);
    norm.apply(tmp, out);
    benchmark::DoNotOptimize(out);
    ++i;
  }
  st.SetItemsProcessed(st.iterations());
  st.SetBytesProcessed(st.iterations() * kImageBytes * 4);
}
BENCHMARK(BM_augment_normalize);

// Test transform only (validation/test batches).
void BM_normalize(benchmark::State& st) {
  const Dataset& ds = dataset();
  Normalizer norm;
  alignas(64) float out[kImageBytes];
  int64_t i = 0;
  for (auto _ : st) {
    norm.apply(ds.image(i % ds.size()), out);
    benchmark::DoNotOptimize(out);
    ++i;
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_normalize);

// The threaded loader, batch 128, augmented and shuffled; arg = worker threads (0 = caller's).
void BM_loader(benchmark::State& st) {
  Loader l(dataset(), all_indices(), {.batch_size = 128, .seed = 1, .workers = static_cast<int>(st.range(0))});
  Batch b;
  int64_t images = 0;
  for (auto _ : st) {
    if (!l.next(b)) l.next(b);
    benchmark::DoNotOptimize(b.images);
    images += b.n;
  }
  st.SetItemsProcessed(images);
  const LoaderStats s = l.stats();
  st.counters["waited"] = static_cast<double>(s.waited) / static_cast<double>(std::max<int64_t>(s.batches, 1));
}
BENCHMARK(BM_loader)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
