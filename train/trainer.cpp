// The reference training loop (see trainer.h). Metric conventions follow Lightning's on_epoch
// logging: train_loss/train_acc are means over the epoch's samples (batch means weighted by batch
// size), validation runs at every epoch end with the test transform (kiln fixes the reference's
// quirk of augmenting validation images), and the test runs once at the end with batch 4.
#include "kiln/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <optional>

#include "kiln/core/error.h"
#include "kiln/core/parse.h"
#include "kiln/data/dataset.h"
#include "kiln/data/pretrained.h"
#include "kiln/data/split.h"
#include "kiln/engine/cpu.h"
#include "kiln/io/weights.h"
#include "kiln/models/model_dir.h"
#include "kiln/train/evaluate.h"
#include "kiln/train/lr_schedule.h"
#include "kiln/train/metrics_log.h"
#include "kiln/train/stop_signal.h"

namespace kiln::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string fmt_g(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

const char* signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

// Installs the engine's grad-ready hook for one train_step when the hooks need it; after_backward
// runs when the last parameter is reported, i.e. at the end of backward, before SGD's step.
class GradHookScope {
 public:
  GradHookScope(const StepHooks& hooks, const StepInfo& info, size_t params)
      : hooks_(hooks), info_(info), params_(params) {
    active_ = hooks_.grad_ready || hooks_.after_backward;
    if (!active_) return;
    set_grad_ready_hook([this](const Tensor& p) {
      if (hooks_.grad_ready) hooks_.grad_ready(p);
      if (++reported_ == params_ && hooks_.after_backward) hooks_.after_backward(info_);
    });
  }
  ~GradHookScope() {
    if (active_) set_grad_ready_hook({});
  }
  void check() const {
    KILN_ASSERT(!active_ || reported_ == params_, "backward reported " + std::to_string(reported_) + " of " +
                                                      std::to_string(params_) + " parameters");
  }

 private:
  const StepHooks& hooks_;
  const StepInfo& info_;
  size_t params_, reported_ = 0;
  bool active_ = false;
};

}  // namespace

struct Trainer::Impl {
  TrainOptions opt;
  Rank rank;
  StepHooks hooks;

  data::Cifar100 ds;
  data::Dataset test_set;
  std::filesystem::path pretrained_path;  // --pretrained, with "imagenet" resolved to a file
  bool synthetic = false;
  int64_t num_classes = 0, val_size = 0;
  data::SplitIndices split;
  data::LoaderConfig train_cfg, eval_cfg;
  std::unique_ptr<data::Loader> train_loader;
  std::unique_ptr<models::Classifier> clf;
  size_t num_params = 0;
  int64_t steps_per_epoch = 0, total_steps = 0;
  int64_t host_batch = 0;  // per-host data: this host's records in each global batch
  LrSchedule sched;
  std::map<std::string, std::string> settings;  // what a resume must match

  TrainState state;
  std::unique_ptr<MetricsLog> log;  // rank 0 only
  TrainOutcome out;
  Clock::time_point last_checkpoint_time = Clock::now();
  bool max_steps_reached = false, early_stopped = false;

  void note(const std::string& line) {
    if (log) log->note(line);
  }
  bool resume_from_checkpoint();
  EpochEnd interrupted(const std::string& where);
  bool train_one_step(const data::Batch& b, double& lr_used);
  EvalResult validate();
  void setup_per_host();
};

// The validation set, or with reduce_eval this rank's contiguous part of it, combined by the hook.
EvalResult Trainer::Impl::validate() {
  if (!hooks.reduce_eval) {
    data::Loader val_loader(ds.train, split.val, eval_cfg);
    return evaluate_loader(*clf, val_loader, num_classes, /*stop_on_signal=*/true);
  }
  // Per-host data: this host's ranks share out its own held-out records; else every rank's part
  // of the one validation set.
  const int part = rank.per_host() ? static_cast<int>(train_cfg.shard_rank) : rank.rank;
  const int parts = rank.per_host() ? static_cast<int>(rank.host_ranks.size()) : rank.world;
  const auto n = static_cast<int64_t>(split.val.size());
  const int64_t begin = n * part / parts, end = n * (part + 1) / parts;
  EvalResult v;
  if (end > begin) {
    data::Loader val_loader(ds.train, {split.val.begin() + begin, split.val.begin() + end}, eval_cfg);
    v = evaluate_loader(*clf, val_loader, num_classes, /*stop_on_signal=*/true);
  } else {
    v.class_total.assign(static_cast<size_t>(num_classes), 0);
    v.class_correct.assign(static_cast<size_t>(num_classes), 0);
  }
  hooks.reduce_eval(v);
  return v;
}

Trainer::Trainer(const TrainOptions& opt, Rank rank, StepHooks hooks) : impl_(std::make_unique<Impl>()) {
  if (rank.world < 1 || rank.rank < 0 || rank.rank >= rank.world)
    fail("rank", "rank in [0, world) and world >= 1",
         std::to_string(rank.rank) + " of " + std::to_string(rank.world));
  impl_->opt = opt;
  impl_->rank = rank;
  impl_->hooks = std::move(hooks);
}

Trainer::~Trainer() = default;

void Trainer::setup() {
  Impl& m = *impl_;
  const TrainOptions& opt = m.opt;
  check_options(opt);
  if (!opt.isa.empty()) force_isa(parse_isa(opt.isa));
  if (opt.threads > 0) set_num_threads(opt.threads);
  if (opt.data.empty()) throw Error("no training data given", "pass --data DIR");
  if (!opt.pretrained.empty() && !opt.weights.empty())
    throw Error("--pretrained and --weights both given", "use one: --pretrained swaps the head, --weights loads as is");
  if (opt.pretrained == "imagenet") {
    // Resolved (found, or downloaded and verified) before any data is read, so an offline
    // machine fails in the first second with where to put the file.
    data::PretrainedOptions po;
    po.search = opt.pretrained_search;
    po.url = opt.pretrained_url;
    m.pretrained_path = data::fetch_pretrained(opt.arch, po);
    if (m.rank.is_root())
      std::printf("pretrained: %s (torchvision's ImageNet weights for %s)\n", m.pretrained_path.string().c_str(),
                  opt.arch.c_str());
  } else {
    m.pretrained_path = opt.pretrained;
  }

  // The test folder first: a folder of training parts takes its class names from there.
  bool test_synthetic = false;
  if (!opt.test_data.empty()) {
    data::Cifar100 t = data::load_cifar100(opt.test_data);
    m.test_set = std::move(t.test);
    test_synthetic = t.synthetic;
  }
  m.ds = data::load_cifar100(opt.data, m.test_set.class_names);
  if (opt.test_data.empty()) {
    m.test_set = std::move(m.ds.test);
    test_synthetic = m.ds.synthetic;
  }
  if (m.ds.train.size() == 0)
    fail(m.rank.per_host() ? "host " + std::to_string(m.rank.host + 1) + " of " + std::to_string(m.rank.hosts) +
                                 " (rank " + std::to_string(m.rank.rank) + "): --data " + opt.data.string()
                           : "--data " + opt.data.string(),
         "training records", "none (" + m.ds.format + " folder)",
         m.rank.per_host() ? "a ShardedByS3Key channel needs at least as many S3 objects (parts) as instances"
                           : "point --data at the training records");
  m.synthetic = m.ds.synthetic || test_synthetic;
  m.num_classes = opt.num_classes > 0 ? opt.num_classes : m.ds.train.num_classes();
  if (m.num_classes != m.ds.train.num_classes())
    fail("--num-classes", std::to_string(m.ds.train.num_classes()) + " (the dataset's classes)",
         std::to_string(m.num_classes));
  m.val_size = resolve_val_size(opt.val_size, m.ds.train.size());
  m.split = data::split(m.ds.train.size(), m.val_size, opt.seed);
  const int64_t test_count = opt.test_size >= 0 ? std::min(opt.test_size, m.test_set.size()) : m.test_set.size();
  if (m.rank.is_root() && !m.rank.per_host())
    std::printf("data: %s (%s%s): %lld train, %lld validation, %lld test images, %lld classes\n",
                m.ds.root.string().c_str(), m.ds.format.c_str(), m.synthetic ? ", SYNTHETIC" : "",
                static_cast<long long>(m.split.train.size()), static_cast<long long>(m.split.val.size()),
                static_cast<long long>(test_count), static_cast<long long>(m.num_classes));

  m.train_cfg.batch_size = opt.batch_size;
  m.train_cfg.shuffle = opt.shuffle;
  m.train_cfg.augment = opt.augment;
  m.train_cfg.seed = opt.seed;
  m.train_cfg.workers = opt.loader_workers;
  m.train_cfg.shard_rank = m.rank.rank;
  m.train_cfg.shard_count = m.rank.world;
  if (m.rank.per_host()) m.setup_per_host();
  m.train_loader = std::make_unique<data::Loader>(m.ds.train, m.split.train, m.train_cfg);
  m.eval_cfg = m.train_cfg;
  m.eval_cfg.batch_size = opt.batch_size;  // not a host's share (per-host data) ...
  m.eval_cfg.drop_last = false;            // ... nor its full batches only: every record counts
  m.eval_cfg.shuffle = false;
  m.eval_cfg.augment = false;
  m.eval_cfg.shard_rank = 0;  // every rank evaluates the whole set (replicas are identical)
  m.eval_cfg.shard_count = 1;

  // With --weights or --pretrained every weight comes from a file (a checkpoint when resuming,
  // else that file; pretrained's new head is initialised by load_state_dict from the seed, as
  // the constructor would), so the random initialisation is skipped.
  const bool weights_from_file = !opt.weights.empty() || !opt.pretrained.empty();
  m.clf = std::make_unique<models::Classifier>(models::ResNetConfig{opt.arch, m.num_classes}, opt.seed,
                                               SgdConfig{opt.lr, opt.momentum, opt.weight_decay},
                                               /*init=*/!weights_from_file);
  m.num_params = m.clf->net().named_parameters().size();
  if (!m.rank.per_host()) m.steps_per_epoch = m.train_loader->batches_per_epoch();
  m.total_steps = opt.epochs * m.steps_per_epoch;
  if (opt.max_steps > 0) m.total_steps = std::min(m.total_steps, opt.max_steps);
  m.sched = LrSchedule::parse(opt.lr_schedule, opt.lr, opt.momentum, opt.max_lr, m.total_steps);

  m.settings = {{"arch", opt.arch}, {"num-classes", std::to_string(m.num_classes)},
                {"batch-size", std::to_string(opt.batch_size)}, {"seed", std::to_string(opt.seed)},
                {"val-size", std::to_string(m.val_size)}, {"shuffle", opt.shuffle ? "1" : "0"},
                {"augment", opt.augment ? "1" : "0"}, {"train-records", std::to_string(m.split.train.size())},
                {"lr-schedule", opt.lr_schedule}};
  if (m.rank.per_host()) {  // the same on every host: what a checkpoint of the job must match
    m.settings["val-size"] = opt.val_size;
    m.settings["train-records"] = std::to_string(m.steps_per_epoch * opt.batch_size);
  }
  m.settings.merge(hyperparameter_settings(opt));
  m.state.loader_seed = opt.seed;
  if (m.rank.is_root()) m.log = std::make_unique<MetricsLog>(opt.log_dir, opt.plain_progress);
}

// Per-host data: this host's share of every global batch (its ranks' parts of it, as the loader
// would split a full batch over all ranks), full batches only, and the steps per epoch that
// every rank can take (the fewest of any host), agreed through max_over_ranks.
void Trainer::Impl::setup_per_host() {
  const auto& hr = rank.host_ranks;
  const auto local = std::find(hr.begin(), hr.end(), rank.rank);
  KILN_ASSERT(local != hr.end(), "rank " + std::to_string(rank.rank) + " is not among its host's ranks");
  const std::string who = "host " + std::to_string(rank.host + 1) + " of " + std::to_string(rank.hosts) + " (rank " +
                          std::to_string(rank.rank) + ", --data " + opt.data.string() + ")";
  host_batch = 0;
  for (int r : hr) host_batch += opt.batch_size / rank.world + (r < opt.batch_size % rank.world ? 1 : 0);
  if (host_batch < static_cast<int64_t>(hr.size()))
    fail(who, "at least one record per rank in each global batch",
         "--batch-size " + std::to_string(opt.batch_size) + " over " + std::to_string(rank.world) + " ranks",
         "raise --batch-size to at least the number of ranks");
  const auto records = static_cast<int64_t>(split.train.size());
  if (records < host_batch)
    fail(who, "at least its share of one global batch: " + std::to_string(host_batch) + " of the " +
                  std::to_string(opt.batch_size) + " records",
         std::to_string(records) + " training records (after holding out " + std::to_string(val_size) + ")",
         "give this host more of the parts (more S3 objects than instances, of similar sizes) or lower --batch-size");
  train_cfg.batch_size = host_batch;
  train_cfg.drop_last = true;
  train_cfg.shard_rank = local - hr.begin();
  train_cfg.shard_count = static_cast<int64_t>(hr.size());
  int64_t agree[2] = {-(records / host_batch), val_size};
  if (hooks.max_over_ranks) hooks.max_over_ranks(agree, 2);
  steps_per_epoch = -agree[0];
  const int64_t local_val = val_size;
  val_size = agree[1];  // validation runs on every rank when any host holds records out
  const int64_t unused = records - steps_per_epoch * host_batch;
  if (rank.rank == hr.front())
    std::printf("data: %s: %s (%s%s): %lld train, %lld validation records; %lld steps/epoch of %lld records here "
                "(%lld of the global batch of %lld): %lld records left unused per epoch\n",
                who.c_str(), ds.root.string().c_str(), ds.format.c_str(), synthetic ? ", SYNTHETIC" : "",
                static_cast<long long>(records), static_cast<long long>(local_val),
                static_cast<long long>(steps_per_epoch), static_cast<long long>(host_batch),
                static_cast<long long>(host_batch), static_cast<long long>(opt.batch_size),
                static_cast<long long>(unused));
  if (rank.is_root())
    std::printf("data: per host (ShardedByS3Key): %d hosts, %d ranks; %lld steps/epoch (the fewest any host can "
                "take), %lld classes\n",
                rank.hosts, rank.world, static_cast<long long>(steps_per_epoch), static_cast<long long>(num_classes));
  std::fflush(stdout);
}

bool Trainer::Impl::resume_from_checkpoint() {
  if (opt.checkpoint_dir.empty()) throw Error("--resume needs --checkpoint-dir", "name the folder with the checkpoints");
  std::vector<std::string> notes;
  std::optional<ResumePoint> point = load_resume_point(opt.checkpoint_dir, settings, [&](const Checkpoint& c) {
    clf->net().load_state_dict(c.model);  // throws for a model of another shape: an older one is tried
  }, notes);
  if (point) check_resume_settings(point->path, point->checkpoint.state.settings, settings, opt.resume_override, notes);
  if (rank.is_root())
    for (const auto& n : notes) std::printf("%s\n", n.c_str());
  if (!point) {
    if (rank.is_root()) std::printf("resume: no checkpoint in %s, starting fresh\n", opt.checkpoint_dir.string().c_str());
    return false;
  }
  const std::optional<fs::path> from = point->path;
  Checkpoint& c = point->checkpoint;
  clf->net().load_state_dict(c.model);
  clf->optimizer().load_state_dict(c.optimizer);
  state = c.state;
  if (rank.is_root())
    std::printf("resume: %s (epoch %lld, batch %lld, step %lld)\n", from->string().c_str(),
                static_cast<long long>(state.epoch + 1), static_cast<long long>(state.position),
                static_cast<long long>(state.global_step));
  return true;
}

void Trainer::start() {
  Impl& m = *impl_;
  const TrainOptions& opt = m.opt;
  if (!opt.checkpoint_dir.empty() && m.rank.is_root())  // what a kill -9 left mid-write
    for (const fs::path& p : clean_checkpoint_dir(opt.checkpoint_dir))
      std::printf("checkpoints: removed %s (left by an interrupted write)\n", p.string().c_str());
  const bool resumed = opt.resume && m.resume_from_checkpoint();
  if (!resumed) {
    if (!opt.pretrained.empty()) {
      std::string note = m.clf->net().load_state_dict(io::read_weights(m.pretrained_path), /*allow_head_reinit=*/true);
      if (!note.empty() && m.rank.is_root()) std::fprintf(stderr, "%s\n", note.c_str());
    } else if (!opt.weights.empty()) {
      m.clf->net().load_state_dict(io::read_weights(opt.weights));
    }
  }
  m.state.settings = m.settings;
  m.max_steps_reached = opt.max_steps > 0 && m.state.global_step >= opt.max_steps;
  m.early_stopped = m.state.bad_epochs >= opt.patience && opt.patience > 0 && m.val_size > 0;

  if (m.rank.is_root()) {
    int64_t params = 0;
    for (const auto& [name, t] : m.clf->net().named_parameters()) params += t.numel();
    std::printf("model: %s, %lld classes, %.1f M parameters; SGD lr %s momentum %s weight decay %s, "
                "schedule %s; batch %lld, %lld steps/epoch, %lld epochs%s; %d threads, isa %s\n",
                opt.arch.c_str(), static_cast<long long>(m.num_classes), static_cast<double>(params) / 1e6,
                fmt_g(opt.lr).c_str(), fmt_g(opt.momentum).c_str(), fmt_g(opt.weight_decay).c_str(),
                m.sched.cycles_momentum() ? ("onecycle (max_lr " + fmt_g(opt.max_lr) + " over " +
                                             std::to_string(m.total_steps) + " steps, momentum 0.95-0.85)").c_str()
                                          : m.sched.name().c_str(),
                static_cast<long long>(opt.batch_size), static_cast<long long>(m.steps_per_epoch),
                static_cast<long long>(opt.epochs),
                opt.max_steps > 0 ? (", at most " + std::to_string(opt.max_steps) + " steps").c_str() : "",
                num_threads(), isa_name(active_isa()));
    std::fflush(stdout);
  }
  m.last_checkpoint_time = Clock::now();
  if (m.hooks.after_start) m.hooks.after_start(*this);
}

bool Trainer::done() const {
  const Impl& m = *impl_;
  return m.state.epoch >= m.opt.epochs || m.max_steps_reached || m.early_stopped;
}

void Trainer::save_checkpoint() {
  Impl& m = *impl_;
  if (m.opt.checkpoint_dir.empty() || !m.rank.is_root()) return;
  Checkpoint c;
  c.state = m.state;
  c.model = m.clf->net().state_dict();
  c.optimizer = m.clf->optimizer().state_dict();
  m.out.last_checkpoint = write_checkpoint(m.opt.checkpoint_dir, c);
  m.last_checkpoint_time = Clock::now();
}

// SIGTERM/SIGINT: checkpoint the state as it is (a resumed run redoes an unfinished validation).
EpochEnd Trainer::Impl::interrupted(const std::string& where) {
  out.interrupted = true;
  const int sig = stop_signal();
  out.exit_code = 128 + sig;
  out.global_step = state.global_step;
  note(std::string("interrupted by ") + signal_name(sig) + where + " at epoch " + std::to_string(state.epoch + 1) +
       " batch " + std::to_string(state.position) + " (step " + std::to_string(state.global_step) + ")" +
       (out.last_checkpoint.empty() ? "; no --checkpoint-dir, nothing saved"
                                    : "; checkpoint " + out.last_checkpoint.string() + "; continue with --resume"));
  return EpochEnd::interrupted;
}

// One optimizer step on this rank's shard of the batch; false when --max-steps is reached.
bool Trainer::Impl::train_one_step(const data::Batch& b, double& lr_used) {
  if (b.n == 0)
    throw Error("rank " + std::to_string(rank.rank) + " has no records in batch " + std::to_string(b.index) +
                    " of epoch " + std::to_string(b.epoch + 1),
                "every global batch needs at least one record per rank: change --batch-size or the record count");
  LrMomentum v = sched.at(state.global_step);
  clf->optimizer().set_lr(v.lr);
  if (sched.cycles_momentum()) clf->optimizer().set_momentum(v.momentum);
  lr_used = v.lr;
  const int64_t global_n = rank.per_host() ? opt.batch_size  // full batches on every host
                                           : std::min(opt.batch_size, train_loader->size() - b.index * opt.batch_size);
  const StepInfo info{state.global_step, state.epoch, state.position, &b, global_n};
  if (hooks.before_step) hooks.before_step(info);
  models::BatchResult r;
  {
    GradHookScope grad_hooks(hooks, info, num_params);
    r = clf->train_step(b.images, b.labels, b.n);
    grad_hooks.check();
  }
  if (hooks.after_step) hooks.after_step(info, r);
  if (!std::isfinite(r.loss))
    fail("training loss at step " + std::to_string(state.global_step + 1), "a finite number", fmt_g(r.loss),
         "lower --lr");
  state.global_step++;
  state.position++;
  state.epoch_loss_sum += r.loss * static_cast<double>(r.count);
  state.epoch_correct += r.correct;
  state.epoch_count += r.count;
  const double n = static_cast<double>(state.epoch_count);
  if (log)
    log->step(state.position, r.count, state.epoch_loss_sum / n, static_cast<double>(state.epoch_correct) / n, r.loss,
              lr_used, state.global_step);
  if (opt.interrupt_after > 0 && state.global_step == opt.interrupt_after) request_stop_for_test(SIGTERM);
  if (opt.max_steps > 0 && state.global_step >= opt.max_steps) {
    max_steps_reached = true;
    return false;
  }
  return true;
}

EpochEnd Trainer::run_epoch() {
  Impl& m = *impl_;
  const TrainOptions& opt = m.opt;
  m.train_loader->restore({m.state.epoch, m.state.position, m.state.loader_seed});
  if (m.log) m.log->start_epoch(m.state.epoch + 1, opt.epochs, m.steps_per_epoch, m.state.position);
  const auto t0 = Clock::now();
  int64_t images = 0;
  double lr_used = 0;
  data::Batch b;
  // With per-host data an epoch ends after the agreed steps, though a host may have more batches.
  while (!stop_requested() && m.state.position < m.steps_per_epoch && m.train_loader->next(b)) {
    images += b.n;
    if (!m.train_one_step(b, lr_used)) break;
    const bool by_steps = opt.checkpoint_every_steps > 0 && m.state.global_step % opt.checkpoint_every_steps == 0;
    const bool by_time = opt.checkpoint_every_min > 0 &&
                         std::chrono::duration<double>(Clock::now() - m.last_checkpoint_time).count() >=
                             opt.checkpoint_every_min * 60;
    if ((by_steps || by_time) && !stop_requested()) save_checkpoint();
  }
  if (stop_requested()) {
    save_checkpoint();
    return m.interrupted("");
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  EpochMetrics em;
  em.epoch = m.state.epoch + 1;
  const double n = std::max<double>(1, static_cast<double>(m.state.epoch_count));
  em.train_loss = m.state.epoch_loss_sum / n;
  em.train_acc = static_cast<double>(m.state.epoch_correct) / n;
  em.lr = lr_used;
  em.seconds = seconds;
  em.images_per_s = seconds > 0 ? static_cast<double>(images * m.rank.world) / seconds : 0;
  if (m.val_size > 0) {
    EvalResult v = m.validate();
    if (v.interrupted) {
      save_checkpoint();
      return m.interrupted(" during validation");
    }
    em.val_loss = v.loss;
    em.val_acc = v.acc;
    // Lightning's EarlyStopping(monitor="val_loss", mode="min", min_delta=0, patience).
    if (v.loss < m.state.best_val_loss) {
      m.state.best_val_loss = v.loss;
      m.state.bad_epochs = 0;
    } else {
      m.state.bad_epochs++;
    }
  }
  if (m.log) m.log->end_epoch(em, m.state.global_step);
  m.state.epoch++;
  m.state.position = 0;
  m.state.epoch_loss_sum = 0;
  m.state.epoch_correct = m.state.epoch_count = 0;
  save_checkpoint();
  if (opt.patience > 0 && m.state.bad_epochs >= opt.patience) {
    m.early_stopped = true;
    m.note("early stopping: val_loss did not improve for " + std::to_string(m.state.bad_epochs) + " epochs");
  }
  return m.max_steps_reached ? EpochEnd::max_steps : EpochEnd::completed;
}

TrainOutcome Trainer::finish() {
  Impl& m = *impl_;
  const TrainOptions& opt = m.opt;
  m.out.global_step = m.state.global_step;
  if (m.hooks.before_finish) m.hooks.before_finish(*this);
  if (!m.rank.is_root()) return m.out;
  if (m.max_steps_reached) m.note("stopped after --max-steps " + std::to_string(opt.max_steps) + " steps");
  if (!opt.model_dir.empty()) {
    models::ModelConfig cfg;
    cfg.arch = opt.arch;
    cfg.num_classes = m.num_classes;
    cfg.class_names = m.ds.train.class_names;
    cfg.mean = m.train_cfg.norm.mean;
    cfg.std = m.train_cfg.norm.std;
    cfg.image_size = 32;
    cfg.dataset = m.synthetic ? "synthetic" : "cifar100";
    models::write_model_dir(opt.model_dir, cfg, m.clf->net().state_dict());
    m.note("model: " + opt.model_dir.string() + " (config.json, model.safetensors, model.pth)");
  }

  const int64_t test_count = opt.test_size >= 0 ? std::min(opt.test_size, m.test_set.size()) : m.test_set.size();
  if (test_count == 0) return m.out;
  if (m.test_set.num_classes() != m.num_classes)
    fail("test set " + m.test_set.source, std::to_string(m.num_classes) + " classes",
         std::to_string(m.test_set.num_classes()));
  std::vector<int64_t> test_idx(static_cast<size_t>(test_count));
  for (size_t i = 0; i < test_idx.size(); ++i) test_idx[i] = static_cast<int64_t>(i);
  data::LoaderConfig test_cfg = m.eval_cfg;
  test_cfg.batch_size = opt.test_batch_size;
  data::Loader test_loader(m.test_set, test_idx, test_cfg);
  EvalResult t = evaluate_loader(*m.clf, test_loader, m.num_classes, /*stop_on_signal=*/true);
  if (t.interrupted) {
    // Training is over and the model directory written: the test is simply skipped.
    const int sig = stop_signal();
    m.note(std::string("interrupted by ") + signal_name(sig) + " during the test: training finished, test skipped");
    m.out.interrupted = true;
    m.out.exit_code = 128 + sig;
    return m.out;
  }
  m.out.tested = true;
  m.out.test_loss = t.loss;
  m.out.test_acc = t.acc;
  m.log->test(t.loss, t.acc, m.state.global_step);
  return m.out;
}

const TrainOutcome& Trainer::outcome() const { return impl_->out; }
const TrainState& Trainer::state() const { return impl_->state; }
const Rank& Trainer::rank() const { return impl_->rank; }
models::Classifier& Trainer::classifier() { return *impl_->clf; }
int64_t Trainer::steps_per_epoch() const { return impl_->steps_per_epoch; }

TrainOutcome run_training(const TrainOptions& opt, Rank rank, StepHooks hooks) {
  Trainer t(opt, rank, std::move(hooks));
  t.setup();
  install_stop_handlers();
  struct Restore {
    ~Restore() { remove_stop_handlers(); }
  } restore_handlers;
  t.start();
  while (!t.done())
    if (t.run_epoch() == EpochEnd::interrupted) return t.outcome();
  return t.finish();
}

}  // namespace kiln::train
