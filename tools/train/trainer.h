// The reference training loop (docs/train.md) behind `kiln train`: ResNet +
// log_softmax + nll_loss, SGD, per-epoch train/val metrics, early stopping on val_loss, test at
// the end with batch 4, the model directory, checkpoints and SIGTERM/SIGINT handling.
// Everything random in training comes from the data loader, a pure function of
// (seed, epoch, batch): a checkpoint's (epoch, position) is the whole RNG state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "models/classifier.h"

namespace kiln::cli {

struct TrainOptions {
  std::filesystem::path data;       // CIFAR-100 (or `kiln synth`) directory
  std::filesystem::path test_data;  // where the test half comes from; empty = data
  std::filesystem::path model_dir, checkpoint_dir, log_dir;
  std::filesystem::path pretrained;  // ImageNet weights: fc re-initialised when shapes differ
  std::filesystem::path weights;     // start from these weights as they are
  bool resume = false;               // continue from the newest checkpoint in checkpoint_dir
  std::string arch = "resnet34";
  int64_t num_classes = 0;           // 0: the dataset's
  int64_t epochs = 4, max_steps = 0, batch_size = 128, patience = 20;
  std::string val_size = "10%";      // records or a percentage of the training file
  int64_t test_batch_size = 4, test_size = -1;  // -1: the whole test set; 0: no test
  double lr = 2e-4, momentum = 0.9, weight_decay = 5e-4, max_lr = 0.1;
  std::string lr_schedule = "constant";
  uint64_t seed = 0;
  bool augment = true, shuffle = true;
  int threads = 0;                    // 0: all cores
  int loader_workers = 1;
  double checkpoint_every_min = 0;    // 0: only at epoch ends (and on a signal)
  bool plain_progress = false;        // never draw a progress bar
  int64_t interrupt_after = 0;        // tests: act as if SIGTERM arrived after this global step
};

struct TrainOutcome {
  int exit_code = 0;          // 0, or 128+signal when interrupted
  bool interrupted = false;
  int64_t global_step = 0;
  bool tested = false;
  double test_loss = 0, test_acc = 0;
  std::filesystem::path last_checkpoint;
};

TrainOutcome run_training(const TrainOptions& opt);

// Evaluation over a loader's epoch (eval mode, no grad): mean per-sample loss, accuracy, and
// per-class counts (predictions via log-probabilities).
struct EvalResult {
  double loss = 0, acc = 0;
  int64_t count = 0;
  std::vector<int64_t> class_total, class_correct;
  bool interrupted = false;  // stopped early by SIGTERM/SIGINT (only when stop_on_signal)
};
EvalResult evaluate_loader(models::Classifier& clf, data::Loader& loader, int64_t num_classes,
                           bool stop_on_signal = false);

// "10%" or "5000" -> records out of n (throws kiln::Error when malformed or > n).
int64_t resolve_val_size(const std::string& text, int64_t n);

}  // namespace kiln::cli
