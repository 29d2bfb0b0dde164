// `kiln train`: the reference training run, or, with no data options and
// <opt-ml>/input/config/hyperparameters.json present, the SageMaker training container
// (hyperparameters from the JSON file, data from the `training` channel, model to model/,
// checkpoints to checkpoints/ with automatic resume, failures to output/failure).
// The flags, defaults and help come from the training library's option table (train/options.h).
// Started by mpirun (OMPI_COMM_WORLD_SIZE set), it is one rank of a data-parallel job
// (dist/data_parallel.h); as a container whose resourceconfig.json lists several hosts, it is
// this host's part of the SageMaker launch (dist/launcher.h), which starts the ranks.
#include <cstdio>
#include <map>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/dist/data_parallel.h"
#include "kiln/dist/launcher.h"
#include "kiln/dist/mpi.h"
#include "tools/args.h"
#include "tools/command.h"
#include "tools/process.h"
#include "kiln/train/container.h"
#include "kiln/train/options.h"
#include "kiln/train/trainer.h"

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

// One rank of mpirun's job. An error on any rank ends every rank (MPI_Abort) after saying
// which rank failed and why; in a container it also goes to the failure file.
int run_rank(const kiln::train::TrainOptions& o, const fs::path* container_root) {
  kiln::dist::Mpi& mpi = kiln::dist::Mpi::init();
  if (mpi.rank() == 0)
    std::printf("kiln train: data-parallel, rank 0 of %d (%s)\n", mpi.size(), mpi.library_version().c_str());
  std::fflush(stdout);
  int code = 0;
  try {
    code = kiln::dist::train_data_parallel(o, mpi).outcome.exit_code;
  } catch (const std::exception& e) {
    const auto* ke = dynamic_cast<const kiln::Error*>(&e);
    const std::string msg = "kiln train: rank " + std::to_string(mpi.rank()) + " of " + std::to_string(mpi.size()) +
                            ": " + (ke ? ke->full_message() : std::string(e.what()));
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
    if (container_root) kiln::train::write_failure(*container_root, msg);
    mpi.abort(1);
  }
  if (code == 0 && container_root) kiln::write_file_atomic(kiln::dist::rank_done_marker(*container_root), "0\n");
  mpi.finalize();
  return code;
}

// Every `kiln train` argument given here, for the ranks the launcher starts.
std::vector<std::string> given_args(const Args& a) {
  std::vector<std::string> args;
  for (const auto& spec : kiln::train::option_table()) {
    if (!a.given("--" + spec.name)) continue;
    args.push_back("--" + spec.name);
    if (!spec.is_flag()) args.push_back(a.get("--" + spec.name));
  }
  return args;
}

int run_container(const Args& a, const fs::path& root) {
  try {
    const char* rank_env = std::getenv("OMPI_COMM_WORLD_RANK");
    const bool quiet_rank = rank_env && std::string(rank_env) != "0";  // only rank 0 of mpirun's job talks
    if (!quiet_rank) std::printf("kiln train: SageMaker training container, /opt/ml root %s\n", root.string().c_str());
    std::vector<std::string> notes;
    kiln::train::TrainOptions o = kiln::train::container_options(root, given_values(a), &notes);
    const kiln::train::ContainerInputs in = kiln::train::read_container_inputs(root);
    if (in.distributed() && !kiln::dist::launched_by_mpirun()) {
      kiln::dist::HostLaunchOptions lo = kiln::dist::HostLaunchOptions::from_env();
      lo.opt_ml = root;
      lo.kiln = kiln::cli::self_exe();
      lo.rank_args = given_args(a);
      return kiln::dist::run_sagemaker_host(in, lo);
    }
    const bool rank = kiln::dist::launched_by_mpirun();
    if (!quiet_rank)
      for (const auto& n : notes) std::printf("%s\n", n.c_str());
    return rank ? run_rank(o, &root) : kiln::train::run_training(o).exit_code;
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
  const kiln::train::TrainOptions o = kiln::train::options_from(given_values(a));
  return kiln::dist::launched_by_mpirun() ? run_rank(o, nullptr) : kiln::train::run_training(o).exit_code;
}

}  // namespace

KILN_COMMAND("train", "train a ResNet on CIFAR-100 (or as a SageMaker training container)", run_train);
