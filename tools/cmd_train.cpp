// `kiln train`: the reference training run, or, with no data options and
// <opt-ml>/input/config/hyperparameters.json present, the SageMaker training container
// (hyperparameters from the JSON file, data from the `training` channel, model to model/,
// checkpoints to checkpoints/ with automatic resume, failures to output/failure).
#include <cstdio>
#include <cstdlib>

#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/cpu.h"
#include "tools/args.h"
#include "tools/command.h"
#include "tools/train/container.h"
#include "tools/train/trainer.h"

namespace {

using kiln::cli::Args;

void declare(Args& a) {
  a.option("--data", "DIR", "CIFAR-100 (binary or python version) or `kiln synth` folder");
  a.option("--test-data", "DIR", "take the test images from this folder instead of --data");
  a.option("--epochs", "N", "epochs", "4");
  a.option("--max-steps", "N", "stop after N optimizer steps in all (0 = no limit)", "0");
  a.option("--batch-size", "N", "training batch size", "128");
  a.option("--lr", "LR", "learning rate (constant schedule)", "0.0002");
  a.option("--momentum", "M", "SGD momentum", "0.9");
  a.option("--weight-decay", "WD", "SGD weight decay", "0.0005");
  a.option("--lr-schedule", "NAME", "constant | onecycle (PyTorch OneCycleLR, max_lr --max-lr)", "constant");
  a.option("--max-lr", "LR", "onecycle's max_lr", "0.1");
  a.option("--val-size", "N|P%", "validation records taken from the training file (0 = none)", "10%");
  a.option("--test-size", "N|all", "test on the first N test images only (0 = no test)", "all");
  a.option("--test-batch-size", "N", "test batch size (the reference uses 4)", "4");
  a.option("--seed", "S", "seed for initialisation, split, shuffling and augmentation", "0");
  a.option("--threads", "N", "compute threads (0 = all cores)", "0");
  a.option("--loader-workers", "N", "data loader threads (0 = load on the training thread)", "1");
  a.flag("--no-augment", "no random crop/flip/rotation");
  a.flag("--no-shuffle", "visit training records in file order");
  a.option("--arch", "NAME", "resnet18 | resnet34 | resnet50", "resnet34");
  a.option("--num-classes", "N", "classes (default: the dataset's)", "0");
  a.option("--pretrained", "FILE", "ImageNet weights (.pth/.safetensors); fc is re-initialised for the classes");
  a.option("--weights", "FILE", "start from these weights as they are");
  a.option("--model-dir", "DIR", "write config.json, model.safetensors and model.pth here");
  a.option("--checkpoint-dir", "DIR", "write checkpoints here (each epoch, every --checkpoint-every minutes, on SIGTERM)");
  a.option("--checkpoint-every", "MIN", "also checkpoint every MIN minutes (0 = epoch ends only)", "0");
  a.flag("--resume", "continue from the newest checkpoint in --checkpoint-dir");
  a.option("--log-dir", "DIR", "metrics.jsonl and TensorBoard event files");
  a.option("--patience", "N", "early stopping: epochs without val_loss improvement (0 = off)", "20");
  a.flag("--plain", "plain progress lines even on a terminal");
  a.option("--isa", "NAME", "force kiln's kernels to scalar | avx2 | avx512");
  a.option("--interrupt-after", "STEP", "testing: behave as if SIGTERM arrived after this step", "0");
  a.option("--opt-ml", "DIR", "SageMaker /opt/ml root (default: $KILN_OPT_ML or /opt/ml)");
}

// Options a hyperparameters.json may set (the rest are fixed by the container layout).
std::vector<kiln::cli::HyperOption> hyper_options() {
  std::vector<kiln::cli::HyperOption> out;
  for (const char* n : {"epochs", "max-steps", "batch-size", "lr", "momentum", "weight-decay", "lr-schedule",
                        "max-lr", "val-size", "test-size", "test-batch-size", "seed", "threads", "loader-workers",
                        "arch", "num-classes", "patience", "checkpoint-every", "isa"})
    out.push_back({n, false});
  for (const char* n : {"no-augment", "no-shuffle"}) out.push_back({n, true});
  return out;
}

kiln::cli::TrainOptions to_options(const Args& a) {
  kiln::cli::TrainOptions o;
  o.data = a.get_or("--data", "");
  o.test_data = a.get_or("--test-data", "");
  o.epochs = a.get_int("--epochs");
  o.max_steps = a.get_int("--max-steps");
  o.batch_size = a.get_int("--batch-size");
  o.lr = a.get_double("--lr");
  o.momentum = a.get_double("--momentum");
  o.weight_decay = a.get_double("--weight-decay");
  o.lr_schedule = a.get("--lr-schedule");
  o.max_lr = a.get_double("--max-lr");
  o.val_size = a.get("--val-size");
  o.test_size = a.get("--test-size") == "all" ? -1 : a.get_int("--test-size");
  o.test_batch_size = a.get_int("--test-batch-size");
  o.seed = static_cast<uint64_t>(a.get_int("--seed"));
  o.threads = static_cast<int>(a.get_int("--threads"));
  o.loader_workers = static_cast<int>(a.get_int("--loader-workers"));
  o.augment = !a.flag_set("--no-augment");
  o.shuffle = !a.flag_set("--no-shuffle");
  o.arch = a.get("--arch");
  o.num_classes = a.get_int("--num-classes");
  o.pretrained = a.get_or("--pretrained", "");
  o.weights = a.get_or("--weights", "");
  o.model_dir = a.get_or("--model-dir", "");
  o.checkpoint_dir = a.get_or("--checkpoint-dir", "");
  o.checkpoint_every_min = a.get_double("--checkpoint-every");
  o.resume = a.flag_set("--resume");
  o.log_dir = a.get_or("--log-dir", "");
  o.patience = a.get_int("--patience");
  o.plain_progress = a.flag_set("--plain");
  o.interrupt_after = a.get_int("--interrupt-after");
  if (a.has("--isa")) kiln::force_isa(kiln::parse_isa(a.get("--isa")));
  return o;
}

int run_container(Args& a, const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  try {
    std::printf("kiln train: SageMaker training container, /opt/ml root %s\n", root.string().c_str());
    fs::path hp_path = root / "input" / "config" / "hyperparameters.json";
    std::vector<std::string> notes;
    auto hp = kiln::cli::parse_hyperparameters(kiln::read_file(hp_path), hp_path.string(), hyper_options(), &notes);
    for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
    for (const auto& [name, value] : hp) {
      if (!a.given(name)) a.set(name, value);
      std::printf("hyperparameter %s = %s\n", name.c_str() + 2, value.c_str());
    }
    kiln::cli::ContainerInputs in = kiln::cli::read_container_inputs(root);
    kiln::cli::TrainOptions o = to_options(a);
    o.data = in.training;
    o.test_data = in.test;
    o.model_dir = root / "model";
    o.checkpoint_dir = root / "checkpoints";
    o.resume = true;
    if (o.log_dir.empty()) o.log_dir = root / "output" / "tensorboard";
    o.plain_progress = true;  // CloudWatch is no terminal
    kiln::cli::TrainOutcome r = kiln::cli::run_training(o);
    return r.exit_code;
  } catch (const kiln::Error& e) {
    kiln::cli::write_failure(root, "kiln train: " + e.full_message());
    throw;
  } catch (const std::exception& e) {
    kiln::cli::write_failure(root, std::string("kiln train: ") + e.what());
    throw;
  }
}

int run_train(const std::vector<std::string>& argv) {
  Args a("kiln train", "Train a ResNet on CIFAR-100 like the reference (SGD, log_softmax + nll_loss).\n"
                       "With no --data and <opt-ml>/input/config/hyperparameters.json present, runs as a\n"
                       "SageMaker training container.");
  declare(a);
  if (!a.parse(argv)) return 0;
  std::filesystem::path root = kiln::cli::opt_ml_root(a.get_or("--opt-ml", ""));
  if (!a.has("--data") && kiln::cli::is_container_mode(root)) return run_container(a, root);
  if (!a.has("--data"))
    throw kiln::Error("kiln train: no --data",
                      "pass --data DIR (CIFAR-100, `kiln download cifar100`, or `kiln synth --dir DIR`), "
                      "or run as a SageMaker container with " + (root / "input/config/hyperparameters.json").string());
  kiln::cli::TrainOutcome r = kiln::cli::run_training(to_options(a));
  return r.exit_code;
}

}  // namespace

KILN_COMMAND("train", "train a ResNet on CIFAR-100 (or as a SageMaker training container)", run_train);
