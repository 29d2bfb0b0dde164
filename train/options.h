// What a training run is told: TrainOptions, and the one table of options from which
// `kiln train`'s flags, defaults and --help, and the container's hyperparameters.json names, all
// come. A default is the TrainOptions member initializer (shown by --help through the table's
// `get`); every text value goes through the table's `set`, which checks it and names the source.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kiln::train {

struct TrainOptions {
  std::filesystem::path data;       // CIFAR-100 (or `kiln synth`) directory
  std::filesystem::path test_data;  // where the test half comes from; empty = data
  // Data-parallel jobs: every host's `data` holds its own records (ShardedByS3Key), which the
  // ranks sharing that host and folder share out; false: every rank sees the same records.
  bool data_per_host = false;
  std::filesystem::path model_dir, checkpoint_dir, log_dir;
  std::filesystem::path pretrained;  // ImageNet weights: fc re-initialised when shapes differ;
                                     // "imagenet": torchvision's published file for --arch (data/pretrained.h)
  std::string pretrained_url;  // "imagenet" from this https:// mirror (its file name carries the SHA-256 prefix)
  std::vector<std::filesystem::path> pretrained_search;  // looked in first for "imagenet" (the container's channel)
  std::filesystem::path weights;     // start from these weights as they are
  bool resume = false;               // continue from the newest readable checkpoint
  bool resume_override = false;      // resume even when lr, momentum, ... differ from the checkpoint's
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
  std::string isa;                    // "": the CPU's best; else scalar | avx2 | avx512
  double checkpoint_every_min = 0;    // 0: only at epoch ends (and on a signal)
  int64_t checkpoint_every_steps = 0; // 0: off
  bool plain_progress = false;        // never draw a progress bar
  int64_t interrupt_after = 0;        // tests: act as if SIGTERM arrived after this global step
  // Data-parallel jobs only (under mpirun; docs/train.md): ignored by a single process.
  double bucket_mb = 25;              // gradient bucket size for the overlapped allreduce
  int64_t replica_check_steps = 100;  // compare the replicas' weight checksums this often
  double dist_timeout_s = 300;        // longest wait for the other ranks at any one point
};

// One row of the table. `name` is the flag without dashes ("batch-size" -> --batch-size) and the
// hyperparameter name (`_` and `-` are interchangeable there: batch_size works).
struct OptionSpec {
  std::string name;
  std::string metavar;  // "N", "DIR"; empty for a flag (no value; set means "1")
  std::string help;
  bool hyperparameter = false;       // settable from hyperparameters.json
  std::vector<std::string> aliases;  // more accepted hyperparameter names ("learning-rate")
  // Applies a text value; throws kiln::Error naming `what` ("--lr", "hyperparameter lr").
  void (*set)(TrainOptions& o, const std::string& value, const std::string& what) = nullptr;
  // The value as text ("" = unset); of TrainOptions{} it is the default --help shows.
  std::string (*get)(const TrainOptions& o) = nullptr;
  bool is_flag() const { return metavar.empty(); }
};

const std::vector<OptionSpec>& option_table();
const OptionSpec* find_option(const std::string& name);  // by name (not alias); nullptr if none

// TrainOptions{} with `values` (option name -> text) applied in table order; `what_of` labels a
// value's source in errors (default "--name"). Unknown names are an invariant failure.
TrainOptions options_from(const std::map<std::string, std::string>& values,
                          const std::map<std::string, std::string>& what_of = {});

// Checks every value of `o` as if it had been given as text (ranges, names): what the library
// does first, so a TrainOptions built in code is held to the same rules as the command line.
void check_options(const TrainOptions& o);

// "10%" or "5000" -> records out of n (throws kiln::Error when malformed or >= n).
int64_t resolve_val_size(const std::string& text, int64_t n);

}  // namespace kiln::train
