// One rank of the MPI tests in tests/dist/test_mpi.cpp, started by mpirun (never by meson):
//   mpi_worker grad   one training step of resnet18 over a global batch of 5 images split 3 + 2;
//                     the averaged gradient (GradReducer over MPI, small buckets) is compared with
//                     the one this process computes alone over the two halves (each half's BN
//                     statistics, gradients weighted 3/5 and 2/5), and with the other rank's
//   mpi_worker drift  rank 1 changes one weight: check_replicas must say so
//   mpi_worker die    rank 1 kills itself (SIGKILL) before the allreduce
//   mpi_worker stuck  rank 1 sleeps instead of reducing; rank 0's reducer times out after 2 s
// Prints "ok" lines, or a reason, and exits non-zero on any failure.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/dist/data_parallel.h"
#include "kiln/dist/mpi.h"
#include "kiln/dist/reducer.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/classifier.h"

using namespace kiln;

namespace {

constexpr int64_t kGlobal = 5, kImage = 3 * 32 * 32;

struct Batch {
  std::vector<float> images;
  std::vector<int64_t> labels;
};

// Records [begin, end) of a fixed pseudo-random global batch.
Batch records(int64_t begin, int64_t end) {
  Batch b;
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t i = 0; i < kImage; ++i)
      b.images.push_back(static_cast<float>(((r + 1) * 7919 + i * 104729) % 1013) / 1013.0f - 0.5f);
    b.labels.push_back(r % 4);
  }
  return b;
}

std::unique_ptr<models::Classifier> make_classifier() {
  // lr 0: the step leaves the weights as they were; only the gradients matter here.
  return std::make_unique<models::Classifier>(models::ResNetConfig{"resnet18", 4}, 7, SgdConfig{0, 0, 0});
}

// One train_step on `b`; `at_end` runs when backward has reported every parameter, before SGD.
void step(models::Classifier& clf, const Batch& b, const std::function<void(const Tensor&)>& ready,
          const std::function<void()>& at_end) {
  const size_t n_params = clf.net().named_parameters().size();
  size_t reported = 0;
  set_grad_ready_hook([&](const Tensor& p) {
    if (ready) ready(p);
    if (++reported == n_params) at_end();
  });
  clf.train_step(b.images.data(), b.labels.data(), static_cast<int64_t>(b.labels.size()));
  set_grad_ready_hook({});
}

std::vector<std::vector<float>> grads_of(models::Classifier& clf) {
  std::vector<std::vector<float>> g;
  for (auto& [name, p] : clf.net().named_parameters()) g.push_back(p.grad().to_plain_vector());
  return g;
}

int grad(dist::Mpi& mpi) {
  const int64_t begin = mpi.rank() == 0 ? 0 : 3, end = mpi.rank() == 0 ? 3 : kGlobal;
  auto clf = make_classifier();
  dist::ReducerOptions ro;
  ro.bucket_bytes = 1 << 20;  // several buckets
  ro.timeout_s = 60;
  dist::GradReducer reducer(clf->net().named_parameters(), clf->net().named_buffers(),
                            [&](float* d, int64_t n) { mpi.allreduce_sum(d, n); }, ro);
  std::vector<std::vector<float>> averaged;
  reducer.begin_step(static_cast<double>(end - begin) / kGlobal);
  step(*clf, records(begin, end), [&](const Tensor& p) { reducer.grad_ready(p); },
       [&] {
         reducer.finish_step();
         averaged = grads_of(*clf);
       });
  std::printf("rank %d: %zu buckets, %zu parameters\n", mpi.rank(), reducer.bucket_count(), averaged.size());

  // The other rank's averaged gradient must be bit-identical: compare checksums of the bytes.
  uint64_t h = 1469598103934665603ull;
  for (const auto& g : averaged)
    for (float v : g) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      h = (h ^ u) * 1099511628211ull;
    }
  uint64_t all[2] = {0, 0};
  mpi.allgather(h, all);
  if (all[0] != all[1]) {
    std::printf("FAIL: the ranks' averaged gradients differ\n");
    return 1;
  }
  if (mpi.rank() != 0) return 0;

  // Single process: each half on its own (its own BN batch statistics), weighted by its records.
  std::vector<std::vector<float>> half[2];
  for (int h2 = 0; h2 < 2; ++h2) {
    auto ref = make_classifier();
    step(*ref, h2 == 0 ? records(0, 3) : records(3, kGlobal), {}, [&] { half[h2] = grads_of(*ref); });
  }
  double max_err = 0, max_ref = 0;
  size_t nonzero = 0;
  for (size_t k = 0; k < averaged.size(); ++k)
    for (size_t i = 0; i < averaged[k].size(); ++i) {
      const double want = 3.0 / 5.0 * half[0][k][i] + 2.0 / 5.0 * half[1][k][i];
      max_err = std::max(max_err, std::fabs(averaged[k][i] - want));
      max_ref = std::max(max_ref, std::fabs(want));
      if (want != 0) ++nonzero;
    }
  std::printf("max |averaged - single process| = %.3g, max |gradient| = %.3g, %zu nonzero\n", max_err, max_ref,
              nonzero);
  if (nonzero == 0 || !(max_err <= 1e-6 * max_ref + 1e-9)) {
    std::printf("FAIL: the averaged gradient is not the single-process one to fp32 accuracy\n");
    return 1;
  }
  std::printf("ok grad\n");
  return 0;
}

int drift(dist::Mpi& mpi) {
  auto clf = make_classifier();
  dist::check_replicas(mpi, *clf, 0, "before the change");
  if (mpi.rank() == 1) {
    Tensor w = clf->net().named_parameters().back().second;  // fc.bias
    std::vector<float> v = w.to_plain_vector();
    v[0] = std::nextafter(v[0], 1.0f);  // one ulp
    w.copy_from_plain(v.data());
  }
  try {
    dist::check_replicas(mpi, *clf, 0, "after the change");
  } catch (const Error& e) {
    std::printf("rank %d: %s\n", mpi.rank(), e.what());
    if (std::strstr(e.what(), "replicas differ after the change: the weights of rank 1")) {
      std::printf("ok drift\n");
      return 0;
    }
  }
  std::printf("FAIL: drift not reported\n");
  return 1;
}

int die_or_stick(dist::Mpi& mpi, bool die) {
  auto clf = make_classifier();
  dist::ReducerOptions ro;
  ro.timeout_s = 2;
  dist::GradReducer reducer(clf->net().named_parameters(), {}, [&](float* d, int64_t n) { mpi.allreduce_sum(d, n); },
                            ro);
  if (mpi.rank() == 1) {
    std::printf("rank 1: %s\n", die ? "dying" : "stuck");
    std::fflush(stdout);
    if (die) raise(SIGKILL);
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return 0;
  }
  reducer.begin_step(1.0);
  try {
    step(*clf, records(0, 2), [&](const Tensor& p) { reducer.grad_ready(p); }, [&] { reducer.finish_step(); });
  } catch (const Error& e) {
    std::printf("rank 0: %s\n", e.what());
    std::fflush(stdout);
    mpi.abort(3);
  }
  std::printf("FAIL: rank 0 finished a step without rank 1\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    dist::Mpi& mpi = dist::Mpi::init();
    if (mpi.size() != 2) {
      std::printf("FAIL: run with mpirun -np 2\n");
      return 2;
    }
    int rc = 2;
    if (mode == "grad") rc = grad(mpi);
    else if (mode == "drift") rc = drift(mpi);
    else if (mode == "die" || mode == "stuck") rc = die_or_stick(mpi, mode == "die");
    else std::printf("FAIL: unknown mode '%s'\n", mode.c_str());
    std::fflush(stdout);
    mpi.finalize();
    return rc;
  } catch (const Error& e) {
    std::printf("FAIL: %s\n", e.full_message().c_str());
    return 1;
  }
}
