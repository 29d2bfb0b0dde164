// A threaded loader that prefetches augmented, normalized batches into pooled 64-byte aligned
// buffers: images (n,3,32,32) plain fp32 NCHW, labels n int64. Every batch is a pure function
// of (seed, epoch, batch index): the same for any worker count, and a restored LoaderState
// continues exactly where the saved one stopped (checkpoint resume).
//
//   data::Loader loader(ds, split.train, {.batch_size = 128, .seed = 1});
//   data::Batch b;
//   while (loader.next(b)) train_step(b.images, b.labels, b.n);   // one epoch
//   // next() returned false: the epoch is over, loader.state().epoch advanced by one.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/data/dataset.h"
#include "kiln/data/transforms.h"

namespace kiln::data {

struct LoaderConfig {
  int64_t batch_size = 128;
  bool shuffle = true;     // a new permutation of `indices` each epoch
  bool augment = true;     // the reference's train transform; false = test transform
  bool drop_last = false;  // PyTorch's DataLoader default: the last batch may be short
  uint64_t seed = 0;
  int workers = 1;         // prefetch threads (0 = fill batches on the caller's thread)
  int prefetch = 4;        // batches buffered ahead (>= 1)
  Normalization norm{};
  // Data-parallel sharding in the epoch order's index space: batch_size is the global batch;
  // of each global batch's records (k*batch_size ... in the epoch's order), shard `shard_rank`
  // of `shard_count` gets its contiguous, nearly equal part (the first len % count shards one
  // record more). The shards of a batch together are exactly the unsharded batch, record for
  // record and byte for byte (augmentation depends on (seed, epoch, record) only). A shard of a
  // short last batch can be empty (n == 0). Defaults: one shard, the whole batch.
  int64_t shard_rank = 0, shard_count = 1;
};

// What a checkpoint stores to resume the loader.
struct LoaderState {
  int64_t epoch = 0;     // epochs completed
  int64_t position = 0;  // batches already returned in this epoch
  uint64_t seed = 0;
};

struct Batch {
  const float* images = nullptr;    // (n,3,32,32); valid until the next next()/restore()
  const int64_t* labels = nullptr;  // n
  int64_t n = 0;                    // this shard's records (the whole batch's when unsharded)
  int64_t epoch = 0, index = 0;     // which batch this is
};

// How often the consumer found its batch not ready yet (the training loop waited).
struct LoaderStats {
  int64_t batches = 0;  // returned by next()
  int64_t waited = 0;   // of which the caller had to wait for a worker
  double wait_s = 0;    // total time the caller waited
};

class Loader {
 public:
  // `indices` are records of `ds` (e.g. SplitIndices::train); `ds` must outlive the loader.
  Loader(const Dataset& ds, std::vector<int64_t> indices, LoaderConfig cfg);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch of the current epoch; false (and epoch+1) when the epoch is over.
  bool next(Batch& out);
  int64_t batches_per_epoch() const;
  int64_t size() const;  // records per epoch (all shards)
  int64_t shard_capacity() const;  // the most records one shard of a batch holds
  LoaderState state() const;
  void restore(const LoaderState& s);
  const LoaderConfig& config() const;
  LoaderStats stats() const;

  // The synchronous building block the workers use: fills this shard of batch `index` of
  // `epoch` into images (shard_capacity()*3072 floats) and labels; returns the shard's n.
  int64_t fill(int64_t epoch, int64_t index, float* images, int64_t* labels) const;
  // Records (indices into ds) of the given epoch in visiting order.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::data
