// Training checkpoints: one safetensors file per checkpoint holding the model's state_dict
// ("model.<torch key>": weights, running stats, num_batches_tracked), the SGD momentum buffers
// ("optimizer.<param>.momentum_buffer") and, in the safetensors __metadata__, the loop state
// (epoch, batch position, global step, loader seed, early-stopping and epoch-mean accumulators;
// doubles as hex floats so they round-trip exactly). kiln's only training randomness is the
// loader's, which is a pure function of (seed, epoch, batch), so this is the whole RNG state.
// Files are checkpoint-<global step, 10 digits>.safetensors, written atomically; the newest is
// the one with the highest step; older ones beyond `keep` are removed after a write.
// Nothing half-written ever sits in the checkpoint folder (SageMaker uploads everything under
// /opt/ml/checkpoints): a file is written in a staging folder next to it (.<name>.kiln-staging,
// same file system), fsync'ed and renamed in; a kill -9 leaves its temporary file there (or, when
// the staging folder cannot be used, a *.tmp.* file in the folder), and clean_checkpoint_dir()
// removes both at the next start. Resuming takes the newest checkpoint that reads and fits,
// saying why each newer one was passed over, and refuses changed hyperparameters unless told.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/io/array.h"
#include "kiln/train/options.h"

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

// Removes what a killed write left behind (temporary files in dir and its staging folder);
// returns the paths removed.
std::vector<std::filesystem::path> clean_checkpoint_dir(const std::filesystem::path& dir);

// The settings a saved optimizer state and schedule depend on: lr, momentum, weight-decay,
// lr-schedule, batch-size, and for onecycle max-lr, epochs and max-steps (its length).
std::map<std::string, std::string> hyperparameter_settings(const TrainOptions& opt);

// Compares a checkpoint's settings with this run's. A changed hyperparameter_settings() key is
// refused (kiln::Error naming every difference) unless `override_hyperparameters`, which notes
// each; any other changed setting (seed, data split, augmentation) is always refused.
void check_resume_settings(const std::filesystem::path& from, const std::map<std::string, std::string>& saved,
                           const std::map<std::string, std::string>& current, bool override_hyperparameters,
                           std::vector<std::string>& notes);

struct ResumePoint {
  std::filesystem::path path;
  Checkpoint checkpoint;
};
// The newest checkpoint in dir that reads and that `fits` accepts (it throws kiln::Error for a
// model of another shape; "arch"/"num-classes" settings that differ from `current` are checked
// first). Each one passed over is noted with its reason. nullopt when dir has no checkpoint;
// kiln::Error listing them all when none is usable.
std::optional<ResumePoint> load_resume_point(const std::filesystem::path& dir,
                                             const std::map<std::string, std::string>& current,
                                             const std::function<void(const Checkpoint&)>& fits,
                                             std::vector<std::string>& notes);

}  // namespace kiln::train
