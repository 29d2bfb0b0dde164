// The reference training loop (see trainer.h). Metric conventions follow Lightning's on_epoch
// logging: train_loss/train_acc are means over the epoch's samples (batch means weighted by batch
// size), validation runs at every epoch end with the test transform (kiln fixes the reference's
// quirk of augmenting validation images), and the test runs once at the end with batch 4.
#include "tools/train/trainer.h"

#include <chrono>
#include <csignal>
#include <map>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "core/error.h"
#include "data/split.h"
#include "engine/cpu.h"
#include "io/weights.h"
#include "tools/args.h"
#include "tools/train/checkpoint.h"
#include "tools/train/lr_schedule.h"
#include "tools/train/metrics_log.h"
#include "tools/train/model_dir.h"
#include "tools/train/stop_signal.h"

namespace kiln::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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
    fail("--val-size", "fewer than the " + std::to_string(n) + " training records",
         std::to_string(v), "use --val-size 0 to train on every record");
  return v;
}

EvalResult evaluate_loader(models::Classifier& clf, data::Loader& loader, int64_t num_classes,
                           bool stop_on_signal) {
  EvalResult r;
  r.class_total.assign(static_cast<size_t>(num_classes), 0);
  r.class_correct.assign(static_cast<size_t>(num_classes), 0);
  std::vector<float> log_probs;
  double loss_sum = 0;
  int64_t correct = 0;
  data::Batch b;
  while (loader.next(b)) {
    if (stop_on_signal && stop_requested()) {
      r.interrupted = true;
      break;
    }
    log_probs.resize(static_cast<size_t>(b.n * num_classes));
    clf.predict_log_probs(b.images, b.n, log_probs.data());
    for (int64_t i = 0; i < b.n; ++i) {
      const float* lp = log_probs.data() + i * num_classes;
      int64_t best = 0;
      for (int64_t k = 1; k < num_classes; ++k)
        if (lp[k] > lp[best]) best = k;
      int64_t y = b.labels[i];
      loss_sum -= lp[y];
      r.class_total[static_cast<size_t>(y)]++;
      if (best == y) {
        ++correct;
        r.class_correct[static_cast<size_t>(y)]++;
      }
    }
    r.count += b.n;
  }
  if (r.count > 0) {
    r.loss = loss_sum / static_cast<double>(r.count);
    r.acc = static_cast<double>(correct) / static_cast<double>(r.count);
  }
  return r;
}

namespace {

std::string fmt_g(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

// Applies the schedule's lr (and momentum, when the engine's Sgd can change it) for `step`.
template <typename S>
constexpr bool kCanCycleMomentum = requires(S& s) { s.set_momentum(0.9); };

template <typename S>
void apply_schedule(S& sgd, const LrSchedule& sched, int64_t step) {
  LrMomentum v = sched.at(step);
  sgd.set_lr(v.lr);
  if constexpr (kCanCycleMomentum<S>) {
    if (sched.cycles_momentum()) sgd.set_momentum(v.momentum);
  }
}


}  // namespace

TrainOutcome run_training(const TrainOptions& opt) {
  TrainOutcome out;
  if (opt.threads > 0) set_num_threads(opt.threads);
  if (opt.epochs < 1) fail("--epochs", "1 or more", std::to_string(opt.epochs));
  if (opt.batch_size < 1) fail("--batch-size", "1 or more", std::to_string(opt.batch_size));
  if (opt.test_batch_size < 1) fail("--test-batch-size", "1 or more", std::to_string(opt.test_batch_size));
  if (opt.max_steps < 0) fail("--max-steps", "0 (no limit) or more", std::to_string(opt.max_steps));
  if (!opt.pretrained.empty() && !opt.weights.empty())
    throw Error("--pretrained and --weights both given", "use one: --pretrained swaps the head, --weights loads as is");

  // Data.
  data::Cifar100 ds = data::load_cifar100(opt.data);
  data::Dataset test_set;
  bool test_synthetic = ds.synthetic;
  if (!opt.test_data.empty()) {
    data::Cifar100 t = data::load_cifar100(opt.test_data);
    test_set = std::move(t.test);
    test_synthetic = t.synthetic;
  } else {
    test_set = std::move(ds.test);
  }
  const bool synthetic = ds.synthetic || test_synthetic;
  const int64_t num_classes = opt.num_classes > 0 ? opt.num_classes : ds.train.num_classes();
  if (num_classes != ds.train.num_classes())
    fail("--num-classes", std::to_string(ds.train.num_classes()) + " (the dataset's classes)",
         std::to_string(num_classes));
  const int64_t val_size = resolve_val_size(opt.val_size, ds.train.size());
  data::SplitIndices split = data::split(ds.train.size(), val_size, opt.seed);
  std::printf("data: %s (%s%s): %lld train, %lld validation, %lld test images, %lld classes\n",
              ds.root.string().c_str(), ds.format.c_str(), synthetic ? ", SYNTHETIC" : "",
              static_cast<long long>(split.train.size()), static_cast<long long>(split.val.size()),
              static_cast<long long>(opt.test_size >= 0 ? std::min(opt.test_size, test_set.size()) : test_set.size()),
              static_cast<long long>(num_classes));

  data::LoaderConfig train_cfg;
  train_cfg.batch_size = opt.batch_size;
  train_cfg.shuffle = opt.shuffle;
  train_cfg.augment = opt.augment;
  train_cfg.seed = opt.seed;
  train_cfg.workers = opt.loader_workers;
  data::Loader train_loader(ds.train, split.train, train_cfg);
  data::LoaderConfig eval_cfg = train_cfg;
  eval_cfg.shuffle = false;
  eval_cfg.augment = false;

  // Model.
  models::ResNetConfig mcfg{opt.arch, num_classes};
  models::Classifier clf(mcfg, opt.seed, SgdConfig{opt.lr, opt.momentum, opt.weight_decay});
  const int64_t steps_per_epoch = train_loader.batches_per_epoch();
  int64_t total_steps = opt.epochs * steps_per_epoch;
  if (opt.max_steps > 0) total_steps = std::min(total_steps, opt.max_steps);
  LrSchedule sched = LrSchedule::parse(opt.lr_schedule, opt.lr, opt.momentum, opt.max_lr, total_steps);
  if (sched.cycles_momentum() && !kCanCycleMomentum<Sgd>)
    std::fprintf(stderr, "note: this engine's SGD cannot change momentum: onecycle cycles the lr only\n");

  std::map<std::string, std::string> settings = {
      {"arch", opt.arch}, {"num-classes", std::to_string(num_classes)},
      {"batch-size", std::to_string(opt.batch_size)}, {"seed", std::to_string(opt.seed)},
      {"val-size", std::to_string(val_size)}, {"shuffle", opt.shuffle ? "1" : "0"},
      {"augment", opt.augment ? "1" : "0"}, {"train-records", std::to_string(split.train.size())},
      {"lr-schedule", opt.lr_schedule}};

  TrainState state;
  state.loader_seed = opt.seed;
  std::optional<fs::path> resume_from;
  if (opt.resume) {
    if (opt.checkpoint_dir.empty()) throw Error("--resume needs --checkpoint-dir", "name the folder with the checkpoints");
    resume_from = find_latest_checkpoint(opt.checkpoint_dir);
    if (!resume_from) std::printf("resume: no checkpoint in %s, starting fresh\n", opt.checkpoint_dir.string().c_str());
  }
  if (resume_from) {
    Checkpoint c = read_checkpoint(*resume_from);
    for (const auto& [k, v] : settings) {
      auto it = c.state.settings.find(k);
      if (it != c.state.settings.end() && it->second != v)
        fail(resume_from->string() + ": setting " + k, v + " (this run's)", it->second,
             "resume with the same settings, or use another --checkpoint-dir");
    }
    clf.net().load_state_dict(c.model);
    clf.optimizer().load_state_dict(c.optimizer);
    state = c.state;
    std::printf("resume: %s (epoch %lld, batch %lld, step %lld)\n", resume_from->string().c_str(),
                static_cast<long long>(state.epoch + 1), static_cast<long long>(state.position),
                static_cast<long long>(state.global_step));
  } else if (!opt.pretrained.empty()) {
    std::string note = clf.net().load_state_dict(io::read_weights(opt.pretrained), /*allow_head_reinit=*/true);
    if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  } else if (!opt.weights.empty()) {
    clf.net().load_state_dict(io::read_weights(opt.weights));
  }
  state.settings = settings;
  int64_t params = 0;
  for (const auto& [name, t] : clf.net().named_parameters()) params += t.numel();
  std::printf("model: %s, %lld classes, %.1f M parameters; SGD lr %s momentum %s weight decay %s, "
              "schedule %s; batch %lld, %lld steps/epoch, %lld epochs%s; %d threads, isa %s\n",
              opt.arch.c_str(), static_cast<long long>(num_classes), static_cast<double>(params) / 1e6,
              fmt_g(opt.lr).c_str(), fmt_g(opt.momentum).c_str(), fmt_g(opt.weight_decay).c_str(),
              sched.cycles_momentum()
                  ? ("onecycle (max_lr " + fmt_g(opt.max_lr) + " over " + std::to_string(total_steps) +
                     " steps, momentum 0.95-0.85" + (kCanCycleMomentum<Sgd> ? "" : " NOT cycled") + ")").c_str()
                  : sched.name().c_str(),
              static_cast<long long>(opt.batch_size),
              static_cast<long long>(steps_per_epoch), static_cast<long long>(opt.epochs),
              opt.max_steps > 0 ? (", at most " + std::to_string(opt.max_steps) + " steps").c_str() : "",
              num_threads(), isa_name(active_isa()));
  std::fflush(stdout);

  MetricsLog log(opt.log_dir, opt.plain_progress);
  auto save = [&]() {
    if (opt.checkpoint_dir.empty()) return;
    Checkpoint c;
    c.state = state;
    c.model = clf.net().state_dict();
    c.optimizer = clf.optimizer().state_dict();
    out.last_checkpoint = write_checkpoint(opt.checkpoint_dir, c);
  };

  // SIGTERM/SIGINT: checkpoint the state as it is (a resumed run redoes an unfinished validation).
  auto interrupted = [&](const std::string& where) {
    out.interrupted = true;
    int sig = stop_signal();
    save();
    log.note(std::string("interrupted by ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + where + " at epoch " +
             std::to_string(state.epoch + 1) + " batch " + std::to_string(state.position) + " (step " +
             std::to_string(state.global_step) + ")" +
             (out.last_checkpoint.empty() ? "; no --checkpoint-dir, nothing saved"
                                          : "; checkpoint " + out.last_checkpoint.string() + "; continue with --resume"));
    out.exit_code = 128 + sig;
    out.global_step = state.global_step;
    return out;
  };
  install_stop_handlers();
  struct Restore {
    ~Restore() { remove_stop_handlers(); }
  } restore_handlers;
  auto last_checkpoint_time = Clock::now();
  bool max_steps_reached = opt.max_steps > 0 && state.global_step >= opt.max_steps;
  bool early_stopped = state.bad_epochs >= opt.patience && opt.patience > 0 && val_size > 0;

  while (state.epoch < opt.epochs && !max_steps_reached && !early_stopped) {
    train_loader.restore({state.epoch, state.position, state.loader_seed});
    log.start_epoch(state.epoch + 1, opt.epochs, steps_per_epoch, state.position);
    auto t0 = Clock::now();
    int64_t images = 0;
    double lr_used = 0;
    data::Batch b;
    while (!stop_requested() && train_loader.next(b)) {
      apply_schedule(clf.optimizer(), sched, state.global_step);
      lr_used = clf.optimizer().lr();
      models::BatchResult r = clf.train_step(b.images, b.labels, b.n);
      if (!std::isfinite(r.loss))
        fail("training loss at step " + std::to_string(state.global_step + 1), "a finite number",
             fmt_g(r.loss), "lower --lr");
      state.global_step++;
      state.position++;
      state.epoch_loss_sum += r.loss * static_cast<double>(r.count);
      state.epoch_correct += r.correct;
      state.epoch_count += r.count;
      images += r.count;
      double n = static_cast<double>(state.epoch_count);
      log.step(state.position, r.count, state.epoch_loss_sum / n, static_cast<double>(state.epoch_correct) / n,
               r.loss, lr_used, state.global_step);
      if (opt.interrupt_after > 0 && state.global_step == opt.interrupt_after) request_stop_for_test(SIGTERM);
      if (opt.max_steps > 0 && state.global_step >= opt.max_steps) {
        max_steps_reached = true;
        break;
      }
      if (opt.checkpoint_every_min > 0 &&
          std::chrono::duration<double>(Clock::now() - last_checkpoint_time).count() >= opt.checkpoint_every_min * 60) {
        save();
        last_checkpoint_time = Clock::now();
      }
    }
    if (stop_requested()) return interrupted("");
    double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    EpochMetrics m;
    m.epoch = state.epoch + 1;
    double n = std::max<double>(1, static_cast<double>(state.epoch_count));
    m.train_loss = state.epoch_loss_sum / n;
    m.train_acc = static_cast<double>(state.epoch_correct) / n;
    m.lr = lr_used;
    m.seconds = seconds;
    m.images_per_s = seconds > 0 ? static_cast<double>(images) / seconds : 0;
    if (val_size > 0) {
      data::Loader val_loader(ds.train, split.val, eval_cfg);
      EvalResult v = evaluate_loader(clf, val_loader, num_classes, /*stop_on_signal=*/true);
      if (v.interrupted) return interrupted(" during validation");
      m.val_loss = v.loss;
      m.val_acc = v.acc;
      // Lightning's EarlyStopping(monitor="val_loss", mode="min", min_delta=0, patience).
      if (v.loss < state.best_val_loss) {
        state.best_val_loss = v.loss;
        state.bad_epochs = 0;
      } else {
        state.bad_epochs++;
      }
    }
    log.end_epoch(m, state.global_step);
    state.epoch++;
    state.position = 0;
    state.epoch_loss_sum = 0;
    state.epoch_correct = state.epoch_count = 0;
    save();
    last_checkpoint_time = Clock::now();
    if (opt.patience > 0 && state.bad_epochs >= opt.patience) {
      early_stopped = true;
      log.note("early stopping: val_loss did not improve for " + std::to_string(state.bad_epochs) + " epochs");
    }
  }
  if (max_steps_reached) log.note("stopped after --max-steps " + std::to_string(opt.max_steps) + " steps");
  out.global_step = state.global_step;

  if (!opt.model_dir.empty()) {
    ModelConfig cfg;
    cfg.arch = opt.arch;
    cfg.num_classes = num_classes;
    cfg.class_names = ds.train.class_names;
    cfg.mean = train_cfg.norm.mean;
    cfg.std = train_cfg.norm.std;
    cfg.image_size = 32;
    cfg.dataset = synthetic ? "synthetic" : "cifar100";
    write_model_dir(opt.model_dir, cfg, clf.net().state_dict());
    log.note("model: " + opt.model_dir.string() + " (config.json, model.safetensors, model.pth)");
  }

  std::vector<int64_t> test_idx(static_cast<size_t>(opt.test_size >= 0 ? std::min(opt.test_size, test_set.size())
                                                                       : test_set.size()));
  for (size_t i = 0; i < test_idx.size(); ++i) test_idx[i] = static_cast<int64_t>(i);
  if (!test_idx.empty()) {
    if (test_set.num_classes() != num_classes)
      fail("test set " + test_set.source, std::to_string(num_classes) + " classes", std::to_string(test_set.num_classes()));
    data::LoaderConfig test_cfg = eval_cfg;
    test_cfg.batch_size = opt.test_batch_size;
    data::Loader test_loader(test_set, test_idx, test_cfg);
    EvalResult t = evaluate_loader(clf, test_loader, num_classes, /*stop_on_signal=*/true);
    if (t.interrupted) {
      // Training is over and the model directory written: the test is simply skipped.
      int sig = stop_signal();
      log.note(std::string("interrupted by ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
               " during the test: training finished, test skipped");
      out.interrupted = true;
      out.exit_code = 128 + sig;
      return out;
    }
    out.tested = true;
    out.test_loss = t.loss;
    out.test_acc = t.acc;
    log.test(t.loss, t.acc, state.global_step);
  }
  return out;
}

}  // namespace kiln::cli
