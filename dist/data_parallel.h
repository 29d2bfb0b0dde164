// Data-parallel training on MPI (docs/train.md, "Several instances"): kiln::train's loop run as
// one rank of mpirun's job. Every rank trains on its shard of each global batch; gradients are
// averaged over the ranks in buckets while backward runs (dist/reducer.h), weighted by each
// shard's records; every rank applies the same SGD step, so the replicas stay identical, which a
// checksum of the weights compared across ranks checks at the start, every
// --replica-check-steps and at the end. Batch norm normalises with each rank's own batch
// statistics (as DDP without SyncBatchNorm); the running statistics are averaged every step.
// Logged metrics, validation and early stopping are the whole job's; rank 0 alone logs and
// writes checkpoints and the model. A signal to any rank stops every rank after the same step.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/dist/mpi.h"
#include "kiln/dist/reducer.h"
#include "kiln/models/classifier.h"
#include "kiln/train/trainer.h"

namespace kiln::dist {

// FNV-1a over the plain bytes of every parameter, float buffer and momentum buffer, and the
// step count: equal on two ranks exactly when their replicas are bit-identical.
uint64_t replica_checksum(models::Classifier& clf, int64_t global_step);

// Compares this rank's checksum with every other rank's; throws kiln::Error naming the ranks
// that differ from rank 0 and `where` ("at step 200") when they drift.
void check_replicas(Mpi& mpi, models::Classifier& clf, int64_t global_step, const std::string& where);

struct DataParallelReport {
  train::TrainOutcome outcome;
  ReducerStats reducer;
  size_t buckets = 0;
  int64_t steps = 0;     // steps timed (this run's, not a resumed run's earlier ones)
  double step_s = 0;     // their total wall time, before_step to after_step
};

// The training run as rank mpi.rank() of mpi.size(), with SIGTERM/SIGINT handled (what
// `kiln train` runs under mpirun). Rank 0 prints a line of communication figures at the end.
DataParallelReport train_data_parallel(const train::TrainOptions& opt, Mpi& mpi);

}  // namespace kiln::dist
