// Data-parallel training (see data_parallel.h): train::Trainer's hooks wired to the reducer
// and to a few small collectives. Every collective happens at the same point on every rank:
// the buckets during each step's backward, one 4-number sum after each step (metrics and the
// stop flag), the checksums at fixed steps, one sum per validation.
#include "kiln/dist/data_parallel.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/train/evaluate.h"
#include "kiln/train/stop_signal.h"

namespace kiln::dist {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
};

std::string hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The whole job's validation result from this rank's part: sums over the ranks.
void reduce_eval(Mpi& mpi, train::EvalResult& v) {
  const size_t k = v.class_total.size();
  std::vector<double> sums(3 + 2 * k);
  sums[0] = v.loss * static_cast<double>(v.count);
  sums[1] = v.acc * static_cast<double>(v.count);
  sums[2] = static_cast<double>(v.count);
  for (size_t c = 0; c < k; ++c) {
    sums[3 + c] = static_cast<double>(v.class_total[c]);
    sums[3 + k + c] = static_cast<double>(v.class_correct[c]);
  }
  sums.push_back(v.interrupted ? 1 : 0);
  mpi.allreduce_sum(sums.data(), static_cast<int64_t>(sums.size()));
  v.count = static_cast<int64_t>(sums[2]);
  v.loss = v.count > 0 ? sums[0] / sums[2] : 0;
  v.acc = v.count > 0 ? sums[1] / sums[2] : 0;
  for (size_t c = 0; c < k; ++c) {
    v.class_total[c] = static_cast<int64_t>(sums[3 + c]);
    v.class_correct[c] = static_cast<int64_t>(sums[3 + k + c]);
  }
  v.interrupted = sums.back() > 0;
  if (v.interrupted && !train::stop_requested()) train::request_stop(SIGTERM);
}

// Per-host data: the ranks whose (host name, --data folder) is the same read the same records
// and form one group; groups are numbered in the order of their lowest rank (rank 0's is 0).
void group_by_data(Mpi& mpi, const train::TrainOptions& opt, train::Rank& rank) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::error_code ec;
  fs::path data = fs::weakly_canonical(opt.data, ec);
  if (ec) data = fs::absolute(opt.data);
  Fnv f;
  const std::string key = std::string(host) + '\0' + data.string();
  f.add(key.data(), key.size());
  std::vector<uint64_t> keys(static_cast<size_t>(mpi.size()));
  mpi.allgather(f.h, keys.data());
  std::vector<uint64_t> firsts;
  for (size_t r = 0; r < keys.size(); ++r) {
    if (std::find(firsts.begin(), firsts.end(), keys[r]) == firsts.end()) firsts.push_back(keys[r]);
    if (keys[r] == f.h) rank.host_ranks.push_back(static_cast<int>(r));
  }
  rank.hosts = static_cast<int>(firsts.size());
  rank.host = static_cast<int>(std::find(firsts.begin(), firsts.end(), f.h) - firsts.begin());
}

}  // namespace

uint64_t replica_checksum(models::Classifier& clf, int64_t global_step) {
  Fnv f;
  for (const auto& a : clf.net().state_dict()) f.add(a.bytes.data(), a.bytes.size());
  for (const auto& a : clf.optimizer().state_dict()) f.add(a.bytes.data(), a.bytes.size());
  f.add(&global_step, sizeof(global_step));
  return f.h;
}

void check_replicas(Mpi& mpi, models::Classifier& clf, int64_t global_step, const std::string& where) {
  const uint64_t mine = replica_checksum(clf, global_step);
  std::vector<uint64_t> all(static_cast<size_t>(mpi.size()));
  mpi.allgather(mine, all.data());
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r) + " (" + hex(all[r]) + ")";
  if (!differ.empty())
    throw Error("replicas differ " + where + ": the weights of rank " + differ + " are not rank 0's (" + hex(all[0]) +
                    ")",
                "every rank must run the same kiln build with the same --threads and --isa on the same kind of "
                "CPU, and a resumed job must find the same checkpoint on every host");
}

DataParallelReport train_data_parallel(const train::TrainOptions& opt, Mpi& mpi) {
  DataParallelReport report;
  std::unique_ptr<GradReducer> reducer;
  train::Trainer* trainer = nullptr;
  Clock::time_point step_t0;
  mpi.set_deadline(opt.dist_timeout_s + 10);  // the reducer's own, clearer timeout comes first

  train::StepHooks h;
  h.after_start = [&](train::Trainer& t) {
    trainer = &t;
    ReducerOptions ro;
    ro.bucket_bytes = static_cast<int64_t>(opt.bucket_mb * 1024 * 1024);
    ro.timeout_s = opt.dist_timeout_s;
    reducer = std::make_unique<GradReducer>(
        t.classifier().net().named_parameters(), t.classifier().net().named_buffers(),
        [&mpi](float* data, int64_t n) { mpi.allreduce_sum(data, n); }, ro);
    report.buckets = reducer->bucket_count();
    check_replicas(mpi, t.classifier(), t.state().global_step, "at the start (after initialisation or resume)");
  };
  h.before_step = [&](const train::StepInfo& i) {
    step_t0 = Clock::now();
    reducer->begin_step(static_cast<double>(i.batch->n) / static_cast<double>(i.global_n));
  };
  h.grad_ready = [&](const Tensor& p) { reducer->grad_ready(p); };
  h.after_backward = [&](const train::StepInfo&) { reducer->finish_step(); };
  h.after_step = [&](const train::StepInfo& i, models::BatchResult& r) {
    double v[4] = {r.loss * static_cast<double>(r.count), static_cast<double>(r.correct),
                   static_cast<double>(r.count), train::stop_requested() ? 1.0 : 0.0};
    mpi.allreduce_sum(v, 4);
    r.loss = v[0] / v[2];
    r.correct = static_cast<int64_t>(v[1]);
    r.count = static_cast<int64_t>(v[2]);
    if (v[3] > 0 && !train::stop_requested()) train::request_stop(SIGTERM);
    report.step_s += std::chrono::duration<double>(Clock::now() - step_t0).count();
    report.steps++;
    const int64_t done = i.global_step + 1;
    if (opt.replica_check_steps > 0 && done % opt.replica_check_steps == 0)
      check_replicas(mpi, trainer->classifier(), done, "at step " + std::to_string(done));
  };
  h.reduce_eval = [&](train::EvalResult& v) { reduce_eval(mpi, v); };
  h.before_finish = [&](train::Trainer& t) {
    check_replicas(mpi, t.classifier(), t.state().global_step, "at the end of training");
  };

  train::Rank rank(mpi.rank(), mpi.size());
  if (opt.data_per_host) {
    group_by_data(mpi, opt, rank);
    h.max_over_ranks = [&mpi](int64_t* values, int n) {
      std::vector<double> v(values, values + n);  // exact: counts are far below 2^53
      mpi.allreduce_max(v.data(), n);
      for (int i = 0; i < n; ++i) values[i] = static_cast<int64_t>(v[static_cast<size_t>(i)]);
    };
  }
  report.outcome = train::run_training(opt, rank, h);
  if (reducer) report.reducer = reducer->stats();
  if (mpi.rank() == 0 && report.steps > 0) {
    const double n = static_cast<double>(report.steps);
    std::printf("data-parallel: %d ranks, %lld steps, %.1f ms/step; allreduce %.1f ms/step in %zu buckets of "
                "~%g MB, %.0f%% of it hidden behind backward (%.1f ms/step waited); copies %.1f ms/step\n",
                mpi.size(), static_cast<long long>(report.steps), 1e3 * report.step_s / n,
                1e3 * report.reducer.comm_s / n, report.buckets, opt.bucket_mb, 100 * report.reducer.hidden_share(),
                1e3 * report.reducer.exposed_s / n, 1e3 * report.reducer.copy_s / n);
    std::fflush(stdout);
  }
  return report;
}

}  // namespace kiln::dist
