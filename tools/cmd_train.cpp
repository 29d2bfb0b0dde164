// `kiln train`: the reference training run, or, with no data options and
// <opt-ml>/input/config/hyperparameters.json present, the SageMaker training container
// (hyperparameters from the JSON file, data from the `training` channel, model to model/,
// checkpoints to checkpoints/ with automatic resume, failures to output/failure).
// The flags, defaults and help come from the training library's option table (train/options.h).
#include <cstdio>
#include <map>

#include "core/error.h"
#include "tools/args.h"
#include "tools/command.h"
#include "train/container.h"
#include "train/options.h"
#include "train/trainer.h"

namespace {

using kiln::cli::Args;
namespace fs = std::filesystem;

void declare(Args& a) {
  const kiln::train::TrainOptions defaults;
  for (const auto& spec : kiln::train::option_table()) {
    if (spec.is_flag())
      a.flag("--" + spec.name, spec.help);
    else
      a.option("--" + spec.name, spec.metavar, spec.help, spec.get(defaults));
  }
  a.option("--opt-ml", "DIR", "SageMaker /opt/ml root (default: $KILN_OPT_ML or /opt/ml)");
}

// Option name -> text for what the command line gave (defaults stay TrainOptions' own).
std::map<std::string, std::string> given_values(const Args& a) {
  std::map<std::string, std::string> values;
  for (const auto& spec : kiln::train::option_table())
    if (a.given("--" + spec.name)) values[spec.name] = a.get("--" + spec.name);
  return values;
}

int run_container(const Args& a, const fs::path& root) {
  try {
    std::printf("kiln train: SageMaker training container, /opt/ml root %s\n", root.string().c_str());
    std::vector<std::string> notes;
    kiln::train::TrainOptions o = kiln::train::container_options(root, given_values(a), &notes);
    for (const auto& n : notes) std::printf("%s\n", n.c_str());
    return kiln::train::run_training(o).exit_code;
  } catch (const kiln::Error& e) {
    kiln::train::write_failure(root, "kiln train: " + e.full_message());
    throw;
  } catch (const std::exception& e) {
    kiln::train::write_failure(root, std::string("kiln train: ") + e.what());
    throw;
  }
}

int run_train(const std::vector<std::string>& argv) {
  Args a("kiln train", "Train a ResNet on CIFAR-100 like the reference (SGD, log_softmax + nll_loss).\n"
                       "With no --data and <opt-ml>/input/config/hyperparameters.json present, runs as a\n"
                       "SageMaker training container.");
  declare(a);
  if (!a.parse(argv)) return 0;
  const fs::path root = kiln::train::opt_ml_root(a.get_or("--opt-ml", ""));
  if (!a.has("--data") && kiln::train::is_container_mode(root)) return run_container(a, root);
  if (!a.has("--data"))
    throw kiln::Error("kiln train: no --data",
                      "pass --data DIR (CIFAR-100, `kiln download cifar100`, or `kiln synth --dir DIR`), "
                      "or run as a SageMaker container with " + (root / "input/config/hyperparameters.json").string());
  return kiln::train::run_training(kiln::train::options_from(given_values(a))).exit_code;
}

}  // namespace

KILN_COMMAND("train", "train a ResNet on CIFAR-100 (or as a SageMaker training container)", run_train);
