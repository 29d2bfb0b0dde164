// Two ranks on this machine under Open MPI's mpirun (TCP between them, 1 thread each): the
// averaged gradient equals the single-process one over the two halves; drifted replicas are
// reported; a rank that dies or sticks ends the job with a clear error in bounded time; `kiln
// train` keeps the replicas bit-identical (checked every step) and a 2-rank run resumed from its
// checkpoint ends with exactly the weights of an uninterrupted one; with per-host data
// (--data-per-host, two ranks on different parts of different sizes) both take the same number
// of steps, stay bit-identical and say what they left unused, and a rank with too few records
// for its share of a batch is refused.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "kiln/data/dataset.h"
#include "kiln/data/parts.h"
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

namespace {

// Rank 0 reads `data0`, rank 1 `data1` (mpirun's MPMD form: one app context per rank).
std::string per_host_cmd(const fs::path& data0, const fs::path& data1, const std::string& extra) {
  auto rank = [&](const fs::path& d) {
    return " -np 1 " + quote(kiln::test::kiln_bin()) + " train --data-per-host --data " + quote(d.string()) +
           " --arch resnet18 --threads 1 --loader-workers 0 --plain --lr 0.05 --replica-check-steps 1"
           " --bucket-mb 2 " + extra;
  };
  return "timeout -k 5 180 mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,tcp" +
         rank(data0) + " :" + rank(data1);
}

}  // namespace

TEST_CASE("mpi: per-host data: 2 ranks on parts of different sizes take the same steps, replicas identical") {
  kiln::test::TempDir tmp("mpi-parts");
  kiln::data::write_synthetic(tmp.path / "syn", {4, 30, 4, 3});
  const auto rep = kiln::data::write_train_parts(kiln::data::load_cifar100(tmp.path / "syn"), 3, tmp.path / "parts");
  // Host A has parts 0 and 1 (20 records), host B part 2 (10).
  fs::create_directories(tmp.path / "a");
  fs::create_directories(tmp.path / "b");
  for (const char* p : {"train-00000-of-00003.bin", "train-00001-of-00003.bin"})
    fs::copy_file(rep.training / p, tmp.path / "a" / p);
  fs::copy_file(rep.training / "train-00002-of-00003.bin", tmp.path / "b" / "train-00002-of-00003.bin");
  const std::string common = "--test-data " + quote(rep.test.string()) + " --val-size 10% --test-size 2 ";
  // Batch 6 over 2 ranks: 3 records per rank per step. A: 18 train + 2 held out, 6 steps' worth;
  // B: 9 + 1, 3 steps: both take 3 steps an epoch, A leaves 9 records unused.
  auto r = kiln::test::run_command(per_host_cmd(tmp.path / "a", tmp.path / "b",
                                                common + "--batch-size 6 --epochs 2 --model-dir " +
                                                    quote((tmp.path / "model").string())));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("data: per host (ShardedByS3Key): 2 hosts, 2 ranks; 3 steps/epoch") != std::string::npos);
  CHECK(r.output.find("host 1 of 2 (rank 0") != std::string::npos);
  CHECK(r.output.find("18 train, 2 validation records; 3 steps/epoch of 3 records here (3 of the global batch of 6): "
                      "9 records left unused per epoch") != std::string::npos);
  CHECK(r.output.find("host 2 of 2 (rank 1") != std::string::npos);
  CHECK(r.output.find("9 train, 1 validation records; 3 steps/epoch of 3 records here (3 of the global batch of 6): "
                      "0 records left unused per epoch") != std::string::npos);
  CHECK(r.output.find("data-parallel: 2 ranks, 6 steps") != std::string::npos);
  CHECK(r.output.find("replicas differ") == std::string::npos);
  CHECK(r.output.find("epoch=2 ") != std::string::npos);
  // Validation over both hosts' held-out records (3) and the test (2) did run.
  CHECK(r.output.find("val_loss=0.0000") == std::string::npos);
  CHECK(r.output.find("test_loss=0.0000") == std::string::npos);
  CHECK(r.output.find("test_loss=") != std::string::npos);
  CHECK(fs::exists(tmp.path / "model" / "model.safetensors"));

  // Batch 24: 12 records of each global batch come from host B, which trains on 9.
  auto bad = kiln::test::run_command(per_host_cmd(tmp.path / "a", tmp.path / "b", common + "--batch-size 24 --epochs 1"));
  INFO(bad.output);
  CHECK(bad.status != 0);
  CHECK(bad.status != 124);
  CHECK(bad.output.find("host 2 of 2 (rank 1, --data " + (tmp.path / "b").string() +
                        "): expected at least its share of one global batch: 12 of the 24 records") != std::string::npos);
}
