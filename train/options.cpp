// The training option table (see options.h). Each row's `set` checks its value's range, so
// `kiln train --epochs 0` and a hyperparameters.json with "epochs": "0" fail alike.
#include "kiln/train/options.h"

#include <cmath>

#include "kiln/core/error.h"
#include "kiln/core/parse.h"
#include "kiln/engine/cpu.h"

namespace kiln::train {

namespace {

int64_t int_in(const std::string& v, const std::string& what, int64_t lo, int64_t hi, const char* expected) {
  int64_t x = parse_int(v, what);
  if (x < lo || x > hi) fail(what, expected, v);
  return x;
}

double number_in(const std::string& v, const std::string& what, double lo, const char* expected) {
  double x = parse_double(v, what);
  if (!(x >= lo) || !std::isfinite(x)) fail(what, expected, v);
  return x;
}

std::string i2s(int64_t v) { return std::to_string(v); }
std::string flag(bool on) { return on ? "1" : ""; }

constexpr int64_t kMax = int64_t{1} << 40;

std::vector<OptionSpec> make_table() {
  using O = TrainOptions;
  using S = const std::string&;
  return {
      {"data", "DIR", "CIFAR-100 (binary or python version) or `kiln synth` folder", false, {},
       [](O& o, S v, S) { o.data = v; }, [](const O& o) { return o.data.string(); }},
      {"test-data", "DIR", "take the test images from this folder instead of --data", false, {},
       [](O& o, S v, S) { o.test_data = v; }, [](const O& o) { return o.test_data.string(); }},
      {"data-per-host", "", "each host's --data is its own part of the training records (SageMaker's "
       "ShardedByS3Key): the ranks of a host share out that part; see docs/train.md", false, {},
       [](O& o, S, S) { o.data_per_host = true; }, [](const O& o) { return flag(o.data_per_host); }},
      {"epochs", "N", "epochs", true, {},
       [](O& o, S v, S w) { o.epochs = int_in(v, w, 1, kMax, "1 or more"); },
       [](const O& o) { return i2s(o.epochs); }},
      {"max-steps", "N", "stop after N optimizer steps in all (0 = no limit)", true, {},
       [](O& o, S v, S w) { o.max_steps = int_in(v, w, 0, kMax, "0 (no limit) or more"); },
       [](const O& o) { return i2s(o.max_steps); }},
      {"batch-size", "N", "training batch size", true, {},
       [](O& o, S v, S w) { o.batch_size = int_in(v, w, 1, 1 << 20, "a batch size of 1 or more"); },
       [](const O& o) { return i2s(o.batch_size); }},
      {"lr", "LR", "learning rate (constant schedule)", true, {"learning-rate"},
       [](O& o, S v, S w) { o.lr = number_in(v, w, 0, "a learning rate >= 0"); },
       [](const O& o) { return format_double(o.lr); }},
      {"momentum", "M", "SGD momentum", true, {},
       [](O& o, S v, S w) { o.momentum = number_in(v, w, 0, "a momentum >= 0"); },
       [](const O& o) { return format_double(o.momentum); }},
      {"weight-decay", "WD", "SGD weight decay", true, {},
       [](O& o, S v, S w) { o.weight_decay = number_in(v, w, 0, "a weight decay >= 0"); },
       [](const O& o) { return format_double(o.weight_decay); }},
      {"lr-schedule", "NAME", "constant | onecycle (PyTorch OneCycleLR, max_lr --max-lr)", true, {},
       [](O& o, S v, S w) {
         if (v != "constant" && v != "onecycle") fail(w, "constant or onecycle", "'" + v + "'");
         o.lr_schedule = v;
       },
       [](const O& o) { return o.lr_schedule; }},
      {"max-lr", "LR", "onecycle's max_lr", true, {},
       [](O& o, S v, S w) { o.max_lr = number_in(v, w, 0, "a learning rate >= 0"); },
       [](const O& o) { return format_double(o.max_lr); }},
      {"val-size", "N|P%", "validation records taken from the training file (0 = none)", true, {},
       [](O& o, S v, S) { o.val_size = v; }, [](const O& o) { return o.val_size; }},
      {"test-size", "N|all", "test on the first N test images only (0 = no test)", true, {},
       [](O& o, S v, S w) { o.test_size = v == "all" ? -1 : int_in(v, w, 0, kMax, "a count >= 0 or all"); },
       [](const O& o) { return o.test_size < 0 ? std::string("all") : i2s(o.test_size); }},
      {"test-batch-size", "N", "test batch size (the reference uses 4)", true, {},
       [](O& o, S v, S w) { o.test_batch_size = int_in(v, w, 1, 1 << 20, "a batch size of 1 or more"); },
       [](const O& o) { return i2s(o.test_batch_size); }},
      {"seed", "S", "seed for initialisation, split, shuffling and augmentation", true, {},
       [](O& o, S v, S w) { o.seed = parse_uint(v, w); }, [](const O& o) { return std::to_string(o.seed); }},
      {"threads", "N", "compute threads (0 = all cores)", true, {},
       [](O& o, S v, S w) {
         o.threads = static_cast<int>(int_in(v, w, 0, 4096, "a thread count in [0, 4096] (0 = all cores)"));
       },
       [](const O& o) { return i2s(o.threads); }},
      {"loader-workers", "N", "data loader threads (0 = load on the training thread)", true, {},
       [](O& o, S v, S w) { o.loader_workers = static_cast<int>(int_in(v, w, 0, 256, "0 to 256 threads")); },
       [](const O& o) { return i2s(o.loader_workers); }},
      {"no-augment", "", "no random crop/flip/rotation", true, {},
       [](O& o, S, S) { o.augment = false; }, [](const O& o) { return flag(!o.augment); }},
      {"no-shuffle", "", "visit training records in file order", true, {},
       [](O& o, S, S) { o.shuffle = false; }, [](const O& o) { return flag(!o.shuffle); }},
      {"arch", "NAME", "resnet18 | resnet34 | resnet50", true, {},
       [](O& o, S v, S) { o.arch = v; }, [](const O& o) { return o.arch; }},
      {"num-classes", "N", "classes (default: the dataset's)", true, {},
       [](O& o, S v, S w) { o.num_classes = int_in(v, w, 0, 1000000, "0 (the dataset's) or a class count"); },
       [](const O& o) { return o.num_classes ? i2s(o.num_classes) : std::string(); }},
      {"pretrained", "FILE|imagenet",
       "ImageNet weights (.pth/.safetensors), or 'imagenet': torchvision's published weights for --arch, "
       "downloaded once into $TORCH_HOME/hub/checkpoints; fc is re-initialised for the classes",
       true, {},
       [](O& o, S v, S) { o.pretrained = v; }, [](const O& o) { return o.pretrained.string(); }},
      {"pretrained-url", "URL",
       "--pretrained imagenet from this https:// mirror instead of download.pytorch.org (the file name must "
       "carry its SHA-256 prefix, as torchvision's do)",
       true, {}, [](O& o, S v, S) { o.pretrained_url = v; }, [](const O& o) { return o.pretrained_url; }},
      {"weights", "FILE", "start from these weights as they are", false, {},
       [](O& o, S v, S) { o.weights = v; }, [](const O& o) { return o.weights.string(); }},
      {"model-dir", "DIR", "write config.json, model.safetensors and model.pth here", false, {},
       [](O& o, S v, S) { o.model_dir = v; }, [](const O& o) { return o.model_dir.string(); }},
      {"checkpoint-dir", "DIR",
       "write checkpoints here (each epoch, every --checkpoint-every minutes or --checkpoint-steps steps, on SIGTERM)",
       false, {}, [](O& o, S v, S) { o.checkpoint_dir = v; }, [](const O& o) { return o.checkpoint_dir.string(); }},
      {"checkpoint-every", "MIN", "also checkpoint every MIN minutes (0 = epoch ends only)", true, {},
       [](O& o, S v, S w) { o.checkpoint_every_min = number_in(v, w, 0, "minutes >= 0"); },
       [](const O& o) { return format_double(o.checkpoint_every_min); }},
      {"checkpoint-steps", "N", "also checkpoint every N optimizer steps (0 = off)", true, {},
       [](O& o, S v, S w) { o.checkpoint_every_steps = int_in(v, w, 0, kMax, "0 (off) or a step count"); },
       [](const O& o) { return i2s(o.checkpoint_every_steps); }},
      {"resume", "", "continue from the newest readable checkpoint in --checkpoint-dir", false, {},
       [](O& o, S, S) { o.resume = true; }, [](const O& o) { return flag(o.resume); }},
      {"resume-override", "", "resume even if lr, momentum, weight decay, schedule, epochs (onecycle) or batch size changed", false, {},
       [](O& o, S, S) { o.resume_override = true; }, [](const O& o) { return flag(o.resume_override); }},
      {"log-dir", "DIR", "metrics.jsonl and TensorBoard event files", false, {},
       [](O& o, S v, S) { o.log_dir = v; }, [](const O& o) { return o.log_dir.string(); }},
      {"patience", "N", "early stopping: epochs without val_loss improvement (0 = off)", true, {},
       [](O& o, S v, S w) { o.patience = int_in(v, w, 0, kMax, "0 (off) or more epochs"); },
       [](const O& o) { return i2s(o.patience); }},
      {"plain", "", "plain progress lines even on a terminal", false, {},
       [](O& o, S, S) { o.plain_progress = true; }, [](const O& o) { return flag(o.plain_progress); }},
      {"isa", "NAME", "force kiln's kernels to scalar | avx2 | avx512", true, {},
       [](O& o, S v, S) {
         parse_isa(v);  // throws on an unknown name
         o.isa = v;
       },
       [](const O& o) { return o.isa; }},
      {"bucket-mb", "MB", "distributed: gradients are averaged in buckets of about MB megabytes, each as soon as "
       "its layers' backward is done", true, {},
       [](O& o, S v, S w) {
         o.bucket_mb = number_in(v, w, 0, "megabytes > 0");
         if (!(o.bucket_mb > 0)) fail(w, "megabytes > 0", v);
       },
       [](const O& o) { return format_double(o.bucket_mb); }},
      {"replica-check-steps", "N", "distributed: compare the ranks' weight checksums every N steps (0 = only at "
       "the start and the end)", true, {},
       [](O& o, S v, S w) { o.replica_check_steps = int_in(v, w, 0, kMax, "0 or a step count"); },
       [](const O& o) { return i2s(o.replica_check_steps); }},
      {"dist-timeout", "S", "distributed: fail when the other ranks do not answer within S seconds", true, {},
       [](O& o, S v, S w) {
         o.dist_timeout_s = number_in(v, w, 0, "seconds > 0");
         if (!(o.dist_timeout_s > 0)) fail(w, "seconds > 0", v);
       },
       [](const O& o) { return format_double(o.dist_timeout_s); }},
      {"interrupt-after", "STEP", "testing: behave as if SIGTERM arrived after this step", false, {},
       [](O& o, S v, S w) { o.interrupt_after = int_in(v, w, 0, kMax, "a step >= 0"); },
       [](const O& o) { return i2s(o.interrupt_after); }},
  };
}

}  // namespace

const std::vector<OptionSpec>& option_table() {
  static const std::vector<OptionSpec> table = make_table();
  return table;
}

const OptionSpec* find_option(const std::string& name) {
  for (const auto& s : option_table())
    if (s.name == name) return &s;
  return nullptr;
}

TrainOptions options_from(const std::map<std::string, std::string>& values,
                          const std::map<std::string, std::string>& what_of) {
  for (const auto& [name, value] : values) KILN_ASSERT(find_option(name) != nullptr, "unknown option " + name);
  TrainOptions o;
  for (const auto& spec : option_table()) {
    auto it = values.find(spec.name);
    if (it == values.end()) continue;
    auto w = what_of.find(spec.name);
    spec.set(o, it->second, w != what_of.end() ? w->second : "--" + spec.name);
  }
  return o;
}

void check_options(const TrainOptions& o) {
  for (const auto& spec : option_table()) {
    if (spec.is_flag()) continue;
    const std::string v = spec.get(o);
    TrainOptions scratch;
    if (!v.empty()) spec.set(scratch, v, "--" + spec.name);
  }
}

int64_t resolve_val_size(const std::string& text, int64_t n) {
  int64_t v = 0;
  if (!text.empty() && text.back() == '%') {
    double pct = parse_double(text.substr(0, text.size() - 1), "--val-size");
    if (!(pct >= 0 && pct < 100)) fail("--val-size", "a percentage in [0, 100)", "'" + text + "'");
    v = static_cast<int64_t>(std::llround(static_cast<double>(n) * pct / 100.0));
  } else {
    char* end = nullptr;
    long long x = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || x < 0)
      fail("--val-size", "a record count or a percentage such as 10%", "'" + text + "'");
    v = x;
  }
  if (v >= n)
    fail("--val-size", "fewer than the " + std::to_string(n) + " training records", std::to_string(v),
         "use --val-size 0 to train on every record");
  return v;
}

}  // namespace kiln::train
