// Checkpoints survive anything (issue 11). Library: a killed write leaves nothing in the
// checkpoint folder and its leftovers are cleaned at start; an unreadable newest checkpoint
// (truncated, corrupt, another arch) falls back to the previous one, saying so; changed
// hyperparameters are refused unless overridden. End to end ($KILN_BIN): kiln train with a
// checkpoint every step is killed with SIGKILL several times (during checkpoint writes and at
// random moments), resumed each time, and its final weights equal an uninterrupted run's bit for bit.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "kiln/core/error.h"
#include "kiln/io/safetensors.h"
#include "tests/support/support.h"
#include "kiln/train/checkpoint.h"

namespace fs = std::filesystem;
using namespace kiln::train;
using kiln::test::quote;
using kiln::test::run_command;

namespace {

Checkpoint small_checkpoint(int64_t step, float value, const std::string& arch = "resnet18") {
  Checkpoint c;
  c.state.global_step = step;
  c.state.epoch = step / 10;
  c.state.settings = {{"arch", arch}, {"lr", "0.10000000000000001"}, {"seed", "1"}};
  kiln::io::NamedArray w;
  w.name = "fc.weight";
  w.shape = {2, 2};
  w.bytes.resize(16);
  for (int i = 0; i < 4; ++i) std::memcpy(w.bytes.data() + 4 * i, &value, 4);
  c.model.push_back(w);
  w.name = "fc.weight.momentum_buffer";
  c.optimizer.push_back(w);
  return c;
}

std::vector<std::string> names_in(const fs::path& d) {
  std::vector<std::string> v;
  std::error_code ec;
  if (fs::is_directory(d, ec))
    for (const auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

bool has(const std::vector<std::string>& notes, const std::string& s) {
  for (const auto& n : notes)
    if (n.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("checkpoints are staged outside the folder; leftovers of a killed write are cleaned at start") {
  kiln::test::TempDir tmp("ckstage");
  const fs::path dir = tmp.path / "checkpoints", stage = tmp.path / ".checkpoints.kiln-staging";
  write_checkpoint(dir, small_checkpoint(5, 1.0f));
  CHECK(names_in(dir) == std::vector<std::string>{"checkpoint-0000000005.safetensors"});
  CHECK(names_in(stage).empty());  // the staging folder exists, empty
  // What kill -9 leaves: a temporary file in the staging folder, or in the folder itself when
  // the staging folder could not be used.
  kiln::test::write_text(stage / "checkpoint-0000000006.safetensors.tmp.123.456", "half");
  kiln::test::write_text(dir / "checkpoint-0000000006.safetensors.tmp.123.789", "half");
  kiln::test::write_text(dir / "notes.txt", "the user's");
  auto removed = clean_checkpoint_dir(dir);
  CHECK(removed.size() == 2);
  CHECK(names_in(dir) == std::vector<std::string>{"checkpoint-0000000005.safetensors", "notes.txt"});
  CHECK(names_in(stage).empty());
  CHECK(clean_checkpoint_dir(tmp.path / "absent").empty());
}

TEST_CASE("resume falls back from an unreadable newest checkpoint to the previous one, saying why") {
  kiln::test::TempDir tmp("ckfallback");
  const fs::path dir = tmp.path / "ck";
  write_checkpoint(dir, small_checkpoint(10, 1.0f), 5);
  write_checkpoint(dir, small_checkpoint(20, 2.0f), 5);
  const fs::path p30 = write_checkpoint(dir, small_checkpoint(30, 3.0f), 5);
  const std::map<std::string, std::string> run = {{"arch", "resnet18"}};
  std::vector<std::string> notes;

  SUBCASE("truncated") {
    std::string bytes = kiln::test::read_text(p30);
    kiln::test::write_text(p30, bytes.substr(0, bytes.size() / 2));
    auto point = load_resume_point(dir, run, nullptr, notes);
    REQUIRE(point);
    CHECK(point->checkpoint.state.global_step == 20);
    CHECK(has(notes, "passing over " + p30.string()));
    CHECK(has(notes, "falling back to checkpoint-0000000020.safetensors"));
  }
  SUBCASE("corrupt header") {
    std::string bytes = kiln::test::read_text(p30);
    bytes[12] = '\x01';
    kiln::test::write_text(p30, bytes);
    auto point = load_resume_point(dir, run, nullptr, notes);
    REQUIRE(point);
    CHECK(point->checkpoint.state.global_step == 20);
  }
  SUBCASE("another architecture, by its settings and by its tensors") {
    write_checkpoint(dir, small_checkpoint(40, 4.0f, "resnet50"), 5);
    int tried = 0;
    auto point = load_resume_point(dir, run, [&](const Checkpoint& c) {
      ++tried;
      if (c.state.global_step == 30) throw kiln::Error("fc.weight: expected (100, 512), found (2, 2)");
    }, notes);
    REQUIRE(point);
    CHECK(point->checkpoint.state.global_step == 20);
    CHECK(tried == 2);  // 40 was passed over on its settings before any tensor was loaded
    CHECK(has(notes, "setting arch: expected resnet18 (this run's), found resnet50"));
    CHECK(has(notes, "expected (100, 512)"));
  }
  SUBCASE("none usable: an error listing each, not a silent fresh start") {
    for (const auto& e : fs::directory_iterator(dir)) kiln::test::write_text(e.path(), "garbage");
    CHECK_THROWS_WITH_AS(load_resume_point(dir, run, nullptr, notes),
                         doctest::Contains("none of the 3 checkpoints in"), kiln::Error);
  }
  CHECK_FALSE(load_resume_point(tmp.path / "empty", run, nullptr, notes).has_value());
}

TEST_CASE("resuming with changed hyperparameters is refused, naming each difference, unless overridden") {
  TrainOptions a, b;
  a.lr = 0.1;
  b.lr = 0.05;
  b.momentum = 0.8;
  const auto saved = hyperparameter_settings(a), now = hyperparameter_settings(b);
  std::vector<std::string> notes;
  CHECK_THROWS_WITH_AS(check_resume_settings("ck/checkpoint-1.safetensors", saved, now, false, notes),
                       doctest::Contains("lr 0.10000000000000001 (checkpoint) vs 0.050000000000000003 (this run); "
                                         "momentum 0.90000000000000002 (checkpoint) vs 0.80000000000000004 (this run)"),
                       kiln::Error);
  CHECK_NOTHROW(check_resume_settings("ck/checkpoint-1.safetensors", saved, now, true, notes));
  CHECK(has(notes, "--resume-override: continuing checkpoint-1.safetensors with lr"));
  // onecycle's length is part of its state; a constant schedule's is not
  a.lr_schedule = b.lr_schedule = "onecycle";
  b = a;
  b.epochs = a.epochs + 1;
  CHECK_THROWS_WITH_AS(check_resume_settings("c", hyperparameter_settings(a), hyperparameter_settings(b), false, notes),
                       doctest::Contains("epochs 4 (checkpoint) vs 5 (this run)"), kiln::Error);
  a.lr_schedule = b.lr_schedule = "constant";
  CHECK_NOTHROW(check_resume_settings("c", hyperparameter_settings(a), hyperparameter_settings(b), false, notes));
  // settings of the data and the seed are never overridden
  CHECK_THROWS_WITH_AS(check_resume_settings("c", {{"seed", "1"}}, {{"seed", "2"}}, true, notes),
                       doctest::Contains("saved with other settings: seed 1 (checkpoint) vs 2 (this run)"), kiln::Error);
}

namespace {

std::string kiln_cmd() { return quote(kiln::test::kiln_bin()); }

// Starts `kiln train ARGS` with output to log; returns the pid.
pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string bin = kiln::test::kiln_bin();
    std::vector<char*> argv = {bin.data()};
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// waitpid with a deadline; -1 on timeout (the child is then killed).
int wait_for(pid_t pid, std::chrono::seconds limit) {
  auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() - t0 > limit) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return status;
}

int64_t newest_step(const fs::path& dir) {
  auto p = find_latest_checkpoint(dir);
  if (!p) return -1;
  return std::stoll(p->filename().string().substr(11, 10));
}

}  // namespace

TEST_CASE("chaos: kill -9 during checkpoint writes and at random moments; resumed runs end bit-identical") {
  kiln::test::TempDir tmp("chaos");
  auto s = run_command(kiln_cmd() + " synth --dir " + quote((tmp.path / "syn").string()) +
                       " --classes 5 --train 112 --test 8 --seed 11");
  REQUIRE_MESSAGE(s.status == 0, s.output);
  const std::vector<std::string> common = {"train", "--data", (tmp.path / "syn").string(), "--arch", "resnet18",
                                           "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--val-size", "16",
                                           "--test-size", "0", "--threads", "2", "--plain", "--seed", "5"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const fs::path ref_log = tmp.path / "ref.log";
  REQUIRE(wait_for(spawn(with({"--model-dir", (tmp.path / "ref").string()}), ref_log), std::chrono::seconds(300)) == 0);

  const fs::path ck = tmp.path / "ck", stage = tmp.path / ".ck.kiln-staging", log = tmp.path / "chaos.log";
  const auto chaos_args = with({"--checkpoint-dir", ck.string(), "--checkpoint-steps", "1", "--resume",
                                "--model-dir", (tmp.path / "out").string()});
  std::mt19937 rng(20261203);
  int kills_in_write = 0, kills_random = 0, status = -1;
  for (int attempt = 0; attempt < 40; ++attempt) {
    const bool in_write = attempt % 2 == 0;
    const int64_t before = newest_step(ck);
    pid_t pid = spawn(chaos_args, log);
    bool killed = false;
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
      if (waitpid(pid, &status, WNOHANG) == pid) break;
      if (kills_in_write + kills_random < 6) {
        if (in_write && newest_step(ck) > before && !names_in(stage).empty()) {
          kill(pid, SIGKILL);  // a checkpoint is being written right now
          killed = true;
          ++kills_in_write;
        } else if (!in_write && newest_step(ck) > before) {
          std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 400)(rng)));
          kill(pid, SIGKILL);  // anywhere: mid-step, mid-write, between
          killed = true;
          ++kills_random;
        }
        if (killed) {
          waitpid(pid, &status, 0);
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!killed && WIFEXITED(status)) break;  // finished by itself
  }
  INFO(kiln::test::read_text(log));
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(kills_in_write >= 2);
  CHECK(kills_in_write + kills_random >= 5);
  const std::string out = kiln::test::read_text(log);
  CHECK(out.find("(left by an interrupted write)") != std::string::npos);  // a killed write was cleaned up
  for (const auto& n : names_in(ck)) CHECK_MESSAGE(n.find(".tmp.") == std::string::npos, n);  // never in the synced folder
  // bit for bit: every tensor of the final model equals the uninterrupted run's
  auto a = kiln::io::read_safetensors(tmp.path / "ref" / "model.safetensors");
  auto b = kiln::io::read_safetensors(tmp.path / "out" / "model.safetensors");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].name);
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].bytes == b[i].bytes);
  }
}
