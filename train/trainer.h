// The reference training loop (docs/train.md) as a library: ResNet + log_softmax + nll_loss,
// SGD, per-epoch train/val metrics, early stopping on val_loss, the test at the end with batch 4,
// the model directory, checkpoints and SIGTERM/SIGINT. `run_training` is what `kiln train` runs;
// a data-parallel loop drives the same Trainer with its Rank and StepHooks: every rank trains on
// its shard of each global batch (data::LoaderConfig's shard), rank 0 alone logs and writes. With
// per-host data (Rank::host_ranks) each host's ranks take their share of every global batch from
// that host's own records, full batches only, for the number of steps every rank can take.
// Everything random in training comes from the data loader, a pure function of
// (seed, epoch, batch): a checkpoint's (epoch, position) is the whole RNG state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "kiln/data/loader.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/classifier.h"
#include "kiln/train/checkpoint.h"
#include "kiln/train/options.h"

namespace kiln::train {

// Where this process stands in a data-parallel job; one process is rank 0 of 1.
struct Rank {
  Rank() = default;
  Rank(int rank_, int world_) : rank(rank_), world(world_) {}
  int rank = 0, world = 1;
  // Per-host data (--data-per-host, ShardedByS3Key): the ranks (ascending, this one among them)
  // that read the same local --data as this one, and which of `hosts` such groups it is. Empty:
  // every rank reads the same records and each global batch is shared out over all ranks.
  std::vector<int> host_ranks;
  int host = 0, hosts = 1;
  bool is_root() const { return rank == 0; }
  bool per_host() const { return !host_ranks.empty(); }
};

// The step in progress, as the hooks see it.
struct StepInfo {
  int64_t global_step = 0;  // optimizer steps completed before this one
  int64_t epoch = 0;        // 0-based
  int64_t position = 0;     // batch index within the epoch
  const data::Batch* batch = nullptr;  // this rank's shard of the global batch
  int64_t global_n = 0;                // records in the whole global batch (all ranks)
};

class Trainer;
struct EvalResult;

// Optional per-step hooks, all called on the training thread, in this order:
//  before_step     the batch is in hand, before the forward pass;
//  grad_ready      during backward, once per parameter as soon as its gradient is final
//                  (engine's set_grad_ready_hook: start a bucket's allreduce here);
//  after_backward  every gradient is final and SGD has not used them yet: the place to wait
//                  for the reductions and write the averaged gradients back;
//  after_step      the weights are updated; may replace the batch's loss/correct/count with
//                  the global batch's, so the logged metrics are the whole job's.
// grad_ready and after_backward run inside backward(): they must not run ops that record on
// the tape (write gradients through their data, not through ops).
// Around the steps:
//  after_start     start() is done (weights initialised or resumed): build what needs the
//                  model, check the replicas agree;
//  reduce_eval     when set, validation is sharded: each rank evaluates its contiguous part of
//                  the validation records and reduce_eval turns its result into the whole set's
//                  (the same on every rank, so early stopping decides alike);
//  before_finish   training is over, before rank 0 writes the model directory;
//  max_over_ranks  with per-host data, during setup(): replaces each of the n values with its
//                  maximum over every rank (how the ranks agree on one number of steps per epoch
//                  and on whether anyone validates).
struct StepHooks {
  std::function<void(const StepInfo&)> before_step;
  std::function<void(const Tensor& param)> grad_ready;
  std::function<void(const StepInfo&)> after_backward;
  std::function<void(const StepInfo&, models::BatchResult&)> after_step;
  std::function<void(Trainer&)> after_start;
  std::function<void(EvalResult&)> reduce_eval;
  std::function<void(Trainer&)> before_finish;
  std::function<void(int64_t* values, int n)> max_over_ranks;
};

struct TrainOutcome {
  int exit_code = 0;          // 0, or 128+signal when interrupted
  bool interrupted = false;
  int64_t global_step = 0;
  bool tested = false;
  double test_loss = 0, test_acc = 0;
  std::filesystem::path last_checkpoint;
};

enum class EpochEnd { completed, max_steps, interrupted };

class Trainer {
 public:
  Trainer(const TrainOptions& opt, Rank rank = {}, StepHooks hooks = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Threads, ISA, data, split, loaders, model and schedule; rank 0 prints what it will train.
  void setup();
  // Continues from the newest readable checkpoint (with --resume), or loads --pretrained /
  // --weights; removes what killed checkpoint writes left behind. Every rank resumes alike.
  void start();
  // One epoch, or what is left of it: steps, validation, early-stopping bookkeeping and the
  // epoch-end checkpoint. On a signal it checkpoints and reports `interrupted` (see outcome()).
  EpochEnd run_epoch();
  bool done() const;  // epochs, --max-steps or early stopping reached
  // The model directory and the test (rank 0).
  TrainOutcome finish();

  void save_checkpoint();  // rank 0 writes; others do nothing
  const TrainOutcome& outcome() const;
  const TrainState& state() const;
  const Rank& rank() const;
  models::Classifier& classifier();
  int64_t steps_per_epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// setup, start, epochs until done, finish, with SIGTERM/SIGINT handled: `kiln train`.
TrainOutcome run_training(const TrainOptions& opt, Rank rank = {}, StepHooks hooks = {});

}  // namespace kiln::train
