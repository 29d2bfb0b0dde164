// Two ranks on this machine under Open MPI's mpirun (TCP between them, 1 thread each): the
// averaged gradient equals the single-process one over the two halves; drifted replicas are
// reported; a rank that dies or sticks ends the job with a clear error in bounded time; `kiln
// train` keeps the replicas bit-identical (checked every step) and a 2-rank run resumed from its
// checkpoint ends with exactly the weights of an uninterrupted one.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "kiln/data/synth.h"
#include "tests/support/support.h"

namespace fs = std::filesystem;
using kiln::test::quote;

namespace {

// mpirun as CI runs it: as root, two ranks on a 2-core machine, TCP, every run bounded.
std::string mpirun(int seconds) {
  return "timeout -k 5 " + std::to_string(seconds) +
         " mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none --mca btl self,tcp ";
}

std::string worker() {
  const char* b = std::getenv("KILN_BUILD_ROOT");
  return quote(std::string(b ? b : ".") + "/tests/dist/mpi_worker");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string train_cmd(const fs::path& data, const std::string& extra) {
  return mpirun(180) + quote(kiln::test::kiln_bin()) + " train --data " + quote(data.string()) +
         " --arch resnet18 --batch-size 6 --val-size 4 --test-size 0 --threads 1 --loader-workers 0 --plain"
         " --lr 0.05 --replica-check-steps 1 --bucket-mb 2 " + extra;
}

}  // namespace

TEST_CASE("mpi: the averaged gradient of 2 ranks is the single-process gradient over their halves") {
  auto r = kiln::test::run_command(mpirun(120) + worker() + " grad");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("ok grad") != std::string::npos);
}

TEST_CASE("mpi: replicas that differ by one ulp are reported, naming the rank") {
  auto r = kiln::test::run_command(mpirun(60) + worker() + " drift");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("ok drift") != std::string::npos);
}

TEST_CASE("mpi: a rank that dies ends the job, non-zero, within seconds") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = kiln::test::run_command(mpirun(60) + worker() + " die");
  INFO(r.output);
  CHECK(r.status != 0);
  CHECK(r.status != 124);  // ended by Open MPI, not by the test's timeout
  CHECK(r.output.find("rank 1") != std::string::npos);
  CHECK(seconds_since(t0) < 45);
}

TEST_CASE("mpi: a rank that stops answering ends the job after the deadline, naming the bucket") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = kiln::test::run_command(mpirun(60) + worker() + " stuck");
  INFO(r.output);
  CHECK(r.status != 0);
  CHECK(r.status != 124);
  CHECK(r.output.find("did not complete within 2 s: another rank is stuck") != std::string::npos);
  CHECK(seconds_since(t0) < 45);
}

TEST_CASE("mpi: kiln train on 2 ranks: identical replicas every step; resume gives the uninterrupted weights") {
  kiln::test::TempDir tmp("mpi-train");
  kiln::data::write_synthetic(tmp.path / "syn", {4, 28, 4, 3});  // 24 train records: 4 steps of 6 per epoch
  // Uninterrupted: 2 epochs.
  auto a = kiln::test::run_command(train_cmd(tmp.path / "syn", "--epochs 2 --model-dir " +
                                                                   quote((tmp.path / "a").string())));
  INFO(a.output);
  REQUIRE(a.status == 0);
  CHECK(a.output.find("data-parallel, rank 0 of 2") != std::string::npos);
  CHECK(a.output.find("data-parallel: 2 ranks, 8 steps") != std::string::npos);
  CHECK(a.output.find("replicas differ") == std::string::npos);
  CHECK(a.output.find("epoch=2 ") != std::string::npos);

  // Interrupted after step 5 (as if SIGTERM came), then resumed by both ranks.
  const std::string ck = " --checkpoint-dir " + quote((tmp.path / "ck").string()) + " --model-dir " +
                         quote((tmp.path / "b").string());
  auto b1 = kiln::test::run_command(train_cmd(tmp.path / "syn", "--epochs 2 --interrupt-after 5" + ck));
  INFO(b1.output);
  CHECK(b1.status == 143);
  CHECK_FALSE(fs::exists(tmp.path / "b" / "model.safetensors"));
  auto b2 = kiln::test::run_command(train_cmd(tmp.path / "syn", "--epochs 2 --resume" + ck));
  INFO(b2.output);
  REQUIRE(b2.status == 0);
  CHECK(b2.output.find("resume: ") != std::string::npos);
  CHECK(b2.output.find("data-parallel: 2 ranks, 3 steps") != std::string::npos);
  const std::string wa = kiln::test::read_text(tmp.path / "a" / "model.safetensors");
  const std::string wb = kiln::test::read_text(tmp.path / "b" / "model.safetensors");
  CHECK(!wa.empty());
  CHECK_MESSAGE(wa == wb, "the resumed 2-rank run's weights differ from the uninterrupted run's");
}
