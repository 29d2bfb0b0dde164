// A SageMaker training job on several instances, the way SageMaker's own training toolkit runs
// MPI jobs: SageMaker starts this same container on every host and gives them nothing but
// resourceconfig.json's host names and a network. Every host starts an sshd that accepts the key
// the image carries; the first host in sorted order (algo-1) waits until every other host's ssh
// port answers, then runs mpirun over all of them, one rank per host, each rank `kiln train` in
// container mode on its own host's /opt/ml; the other hosts wait until the job has come and gone
// on them (Open MPI's orted) and exit 0 when their rank finished, 1 otherwise. Any failure writes
// <opt_ml>/output/failure. Every wait has a deadline.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kiln/train/container.h"

namespace kiln::dist {

struct HostLaunchOptions {
  std::filesystem::path opt_ml;          // the /opt/ml root, passed to every rank as --opt-ml
  std::filesystem::path kiln;            // the program each rank runs (this one)
  std::vector<std::string> rank_args;    // more `kiln train` arguments for every rank
  std::filesystem::path ssh_dir;         // id_ed25519 and id_ed25519.pub: the image's key
  int ssh_port = 22;
  double host_wait_s = 300;              // algo-1: for every other host's ssh port
  double job_start_wait_s = 900;         // the others: for algo-1 to start the job on them
  // From the environment (tests and unusual images): KILN_SSH_DIR (default /etc/kiln/ssh),
  // KILN_SSH_PORT, KILN_HOST_WAIT, KILN_JOB_START_WAIT (seconds).
  static HostLaunchOptions from_env();
};

// The marker a rank leaves in <opt_ml>/output when its training returned 0, which tells its
// host's launcher the job went well there.
std::filesystem::path rank_done_marker(const std::filesystem::path& opt_ml);

// This host's part of the job; returns the container's exit code (0 or 1; 128+signal when
// stopped). Writes the failure file itself; throws only for what happens before sshd starts.
int run_sagemaker_host(const train::ContainerInputs& in, const HostLaunchOptions& opt);

}  // namespace kiln::dist
