// Gradient averaging that overlaps backward, as PyTorch DDP's buckets and Horovod's tensor fusion
// do: parameters are grouped, in reverse registration order (the order backward finishes them),
// into buckets of about `bucket_bytes`; when a bucket's last gradient is final (the engine's
// grad-ready hook) its gradients are copied, in plain layout and scaled by this rank's share of
// the global batch, into the bucket's flat buffer, and a thread of the reducer's own sums the
// bucket over the ranks while backward goes on. Buckets are summed in index order on every rank
// (collectives must match). finish_step() waits for the last one and writes the averages back.
// Float buffers (batch norm's running statistics) ride in one more bucket, averaged alike, so
// the replicas stay identical.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/engine/tensor.h"

namespace kiln::dist {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// In-place sum of n floats over every rank (Mpi::allreduce_sum in a job; a stand-in in tests).
using AllreduceFn = std::function<void(float* data, int64_t n)>;

struct ReducerOptions {
  int64_t bucket_bytes = 25 << 20;  // DDP's default bucket_cap_mb = 25
  double timeout_s = 300;           // finish_step waits no longer for the other ranks
};

// Per-step timings on the training thread's and the reducer thread's clocks (seconds, summed).
struct ReducerStats {
  int64_t steps = 0;
  double comm_s = 0;     // the reducer thread inside allreduce
  double exposed_s = 0;  // finish_step waiting for it: the part backward did not hide
  double copy_s = 0;     // gradients into buckets and back (training thread)
  // The share of the allreduce time spent while backward ran (0 when nothing was reduced).
  double hidden_share() const { return comm_s > 0 ? std::max(0.0, 1.0 - exposed_s / comm_s) : 0.0; }
};

class GradReducer {
 public:
  GradReducer(NamedTensors params, NamedTensors buffers, AllreduceFn allreduce, ReducerOptions opt = {});
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // A new step: `weight` is this rank's records over the global batch's, so the sum of the
  // weighted per-rank mean gradients is the global batch's mean gradient.
  void begin_step(double weight);
  // From the grad-ready hook, once per parameter, on the training thread.
  void grad_ready(const Tensor& param);
  // Waits for every bucket (at most timeout_s; then throws kiln::Error saying which bucket and
  // that a rank is stuck or gone) and writes the summed gradients and buffers back.
  void finish_step();

  size_t bucket_count() const;  // gradient buckets (the buffers' bucket not counted)
  // The parameter names of bucket i, in the order they are packed.
  std::vector<std::string> bucket_names(size_t i) const;
  const ReducerStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::dist
