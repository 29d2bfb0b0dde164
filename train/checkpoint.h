// Training checkpoints: one safetensors file per checkpoint holding the model's state_dict
// ("model.<torch key>": weights, running stats, num_batches_tracked), the SGD momentum buffers
// ("optimizer.<param>.momentum_buffer") and, in the safetensors __metadata__, the loop state
// (epoch, batch position, global step, loader seed, early-stopping and epoch-mean accumulators;
// doubles as hex floats so they round-trip exactly). kiln's only training randomness is the
// loader's, which is a pure function of (seed, epoch, batch), so this is the whole RNG state.
// Files are checkpoint-<global step, 10 digits>.safetensors, written atomically; the newest is
// the one with the highest step; older ones beyond `keep` are removed after a write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "io/array.h"

namespace kiln::train {

struct TrainState {
  int64_t epoch = 0;        // epochs completed
  int64_t position = 0;     // batches already trained in epoch `epoch`
  int64_t global_step = 0;  // optimizer steps so far
  uint64_t loader_seed = 0;
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t bad_epochs = 0;   // epochs since val_loss last improved (early stopping)
  // Running sums of the unfinished epoch, so a resumed epoch reports the same means.
  double epoch_loss_sum = 0;  // sum over batches of mean loss * batch size
  int64_t epoch_correct = 0, epoch_count = 0;
  // Settings that must match for a resume (batch size, seed, arch, ...): checked by the caller.
  std::map<std::string, std::string> settings;
};

struct Checkpoint {
  TrainState state;
  io::StateDict model;      // torch keys
  io::StateDict optimizer;  // "<param>.momentum_buffer"
};

std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& ckpt,
                                       int keep = 2);
// The newest checkpoint file in dir, if any (dir may not exist).
std::optional<std::filesystem::path> find_latest_checkpoint(const std::filesystem::path& dir);
Checkpoint read_checkpoint(const std::filesystem::path& path);

}  // namespace kiln::train
