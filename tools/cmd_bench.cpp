// `kiln bench train|infer`: times training steps (forward + backward + SGD, train mode) or
// eval-mode inference of a freshly initialised ResNet on random data, after warm-up, and prints
// one line per timed step then, as the LAST line, `train_img_per_s=<median>` or
// `infer_ms_median=<median ms>` (what scripts grep). Same workload as bench/pytorch_bench.py.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/classifier.h"
#include "tools/args.h"
#include "tools/command.h"

namespace kiln::cli {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t positive(const Args& a, const std::string& opt, int64_t min = 1) {
  int64_t v = a.get_int(opt);
  if (v < min) fail(opt, "at least " + std::to_string(min), std::to_string(v));
  return v;
}

int run_bench(const std::vector<std::string>& argv) {
  Args a("kiln bench",
         "Time ResNet training steps (train) or inference (infer) on random data after warm-up.\n"
         "Last line: train_img_per_s=<median> or infer_ms_median=<median ms>.");
  a.positional("MODE", "train | infer");
  a.option("--arch", "NAME", "resnet18 | resnet34 | resnet50", "resnet34");
  a.option("--num-classes", "N", "classes of the fc head", "100");
  a.option("--image-size", "S", "input height and width", "32");
  a.option("--batch-size", "B", "images per step (default 128 for train, 1 for infer)");
  a.option("--steps", "N", "timed steps (default 8 for train, 20 for infer)");
  a.option("--warmup", "W", "untimed steps first (primitive creation, arena planning)", "3");
  a.option("--threads", "N", "OpenMP threads for kiln and oneDNN (0 = all cores)");
  a.option("--isa", "ISA", "cap kiln's kernels (and oneDNN's) at scalar | avx2 | avx512");
  a.option("--seed", "N", "initialisation and data seed", "0");
  if (!a.parse(argv)) return 0;
  const std::string mode = a.positionals().at(0);
  if (mode != "train" && mode != "infer") fail("kiln bench MODE", "train or infer", mode);
  const bool train = mode == "train";
  if (a.has("--isa")) force_isa(parse_isa(a.get("--isa")));
  if (a.has("--threads")) set_num_threads(static_cast<int>(positive(a, "--threads", 0)));
  if (!a.has("--batch-size")) a.set("--batch-size", train ? "128" : "1");
  if (!a.has("--steps")) a.set("--steps", train ? "8" : "20");
  const int64_t batch = positive(a, "--batch-size"), steps = positive(a, "--steps");
  const int64_t warmup = positive(a, "--warmup", 0), size = positive(a, "--image-size", 8);
  const int64_t classes = positive(a, "--num-classes");
  const auto seed = static_cast<uint64_t>(positive(a, "--seed", 0));

  models::Classifier clf({a.get("--arch"), classes}, seed);
  clf.set_image_size(size);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int64_t> label(0, classes - 1);
  std::vector<float> images(static_cast<size_t>(batch * 3 * size * size));
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (auto& v : images) v = normal(rng);
  for (auto& v : labels) v = label(rng);
  std::vector<float> out(static_cast<size_t>(batch * classes));
  clf.optimizer().set_lr(2e-4);  // the reference's learning rate; random data either way

  std::printf("kiln bench %s: %s, %lld classes, batch %lld, %lldx%lld, threads %d, isa %s, "
              "%lld warm-up + %lld timed steps\n",
              mode.c_str(), a.get("--arch").c_str(), static_cast<long long>(classes),
              static_cast<long long>(batch), static_cast<long long>(size),
              static_cast<long long>(size), num_threads(), isa_name(active_isa()),
              static_cast<long long>(warmup), static_cast<long long>(steps));
  std::fflush(stdout);
  auto run_once = [&]() -> double {
    if (train) return clf.train_step(images.data(), labels.data(), batch).loss;
    clf.predict_log_probs(images.data(), batch, out.data());
    return out[0];
  };
  for (int64_t i = 0; i < warmup; ++i) run_once();
  reset_engine_stats();
  std::vector<double> ms;
  for (int64_t i = 0; i < steps; ++i) {
    auto t0 = Clock::now();
    double v = run_once();
    double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ms.push_back(dt);
    std::printf("step %lld: %.2f ms, %.1f img/s%s%.4f\n", static_cast<long long>(i), dt,
                1000.0 * static_cast<double>(batch) / dt, train ? ", loss " : ", out[0] ", v);
    std::fflush(stdout);
  }
  EngineStats st = engine_stats();
  const double med = median(ms);
  const double per_step = 1.0 / static_cast<double>(steps);
  std::printf("steady state per step: %.1f reorders, %.1f primitives created, %.1f ref impls\n",
              static_cast<double>(st.reorders) * per_step,
              static_cast<double>(st.primitives_created) * per_step,
              static_cast<double>(st.ref_impls) * per_step);
  std::printf("median %.2f ms/step, min %.2f ms\n", med, *std::min_element(ms.begin(), ms.end()));
  if (train) {
    std::printf("train_img_per_s=%.1f\n", 1000.0 * static_cast<double>(batch) / med);
  } else {
    std::printf("infer_img_per_s=%.1f\n", 1000.0 * static_cast<double>(batch) / med);
    std::printf("infer_ms_median=%.3f\n", med);
  }
  return 0;
}

}  // namespace
}  // namespace kiln::cli

KILN_COMMAND("bench", "time ResNet training (bench train) or inference (bench infer) steps",
             kiln::cli::run_bench);
