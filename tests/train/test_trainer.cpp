// The training library driven directly, as a data-parallel loop will drive it: the step hooks
// run in order, after_backward sees every final gradient before SGD applies it (and what it
// writes is what SGD applies), after_step may replace the batch's metrics; a non-root rank
// trains on its shard and writes nothing; training records in parts train as train.bin does,
// and per-host data takes a host's share of each batch for the steps the ranks agreed on.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "kiln/data/dataset.h"
#include "kiln/data/parts.h"
#include "kiln/data/synth.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/argmax.h"
#include "tests/support/support.h"
#include "kiln/train/trainer.h"

using namespace kiln::train;
namespace fs = std::filesystem;

namespace {

TrainOptions tiny_options(const fs::path& data) {
  TrainOptions o;
  o.data = data;
  o.arch = "resnet18";
  o.batch_size = 4;
  o.epochs = 1;
  o.val_size = "0";
  o.test_size = 0;
  o.threads = 2;
  o.loader_workers = 0;
  o.augment = false;
  o.plain_progress = true;
  o.lr = 0.05;
  o.momentum = 0;  // with no momentum and no weight decay, a zero gradient moves nothing
  o.weight_decay = 0;
  return o;
}

std::vector<float> param(kiln::models::Classifier& clf, const std::string& name) {
  for (auto& [n, p] : clf.net().named_parameters())
    if (n == name) return p.to_plain_vector();
  FAIL("no parameter " << name);
  return {};
}

}  // namespace

TEST_CASE("Trainer hooks: order, gradients rewritten in after_backward are what SGD applies, metrics replaced") {
  kiln::test::TempDir tmp("hooks");
  kiln::data::write_synthetic(tmp.path / "syn", {3, 8, 2, 1});  // 8 records: 2 steps of 4
  std::vector<std::string> events;
  size_t ready = 0, params = 0;
  std::vector<float> fc_before;
  Trainer* trainer = nullptr;
  StepHooks h;
  h.before_step = [&](const StepInfo& i) {
    events.push_back("before_step " + std::to_string(i.global_step));
    ready = 0;
    fc_before = param(trainer->classifier(), "fc.weight");
    CHECK(i.batch->n == 4);
    if (i.global_step == 1) CHECK(trainer->state().epoch_loss_sum == 42.0 * 4);  // step 0's replaced loss
  };
  h.grad_ready = [&](const kiln::Tensor& p) {
    CHECK(p.has_grad());
    ++ready;
  };
  h.after_backward = [&](const StepInfo& i) {
    events.push_back("after_backward " + std::to_string(i.global_step));
    CHECK(ready == params);                                        // every gradient final
    CHECK(param(trainer->classifier(), "fc.weight") == fc_before);  // and SGD has not run yet
    if (i.global_step == 0) {
      for (auto& [n, p] : trainer->classifier().net().named_parameters()) {
        kiln::Tensor g = p.grad();
        std::vector<float> zeros(static_cast<size_t>(g.numel()), 0.0f);
        g.copy_from_plain(zeros.data());
      }
    }
  };
  h.after_step = [&](const StepInfo& i, kiln::models::BatchResult& r) {
    events.push_back("after_step " + std::to_string(i.global_step));
    const std::vector<float> fc_after = param(trainer->classifier(), "fc.weight");
    if (i.global_step == 0) {
      CHECK(fc_after == fc_before);  // SGD applied the zeroed gradients: nothing moved this step
      r.loss = 42.0;
    } else {
      CHECK(fc_after != fc_before);  // the real gradients move the weights
    }
  };
  Trainer t(tiny_options(tmp.path / "syn"), {}, h);
  trainer = &t;
  t.setup();
  params = t.classifier().net().named_parameters().size();
  t.start();
  CHECK(t.run_epoch() == EpochEnd::completed);
  CHECK(t.done());
  CHECK(t.state().global_step == 2);
  CHECK(events == std::vector<std::string>{"before_step 0", "after_backward 0", "after_step 0", "before_step 1",
                                           "after_backward 1", "after_step 1"});
}

TEST_CASE("Trainer ranks: rank 1 of 2 trains on its half of each batch and writes nothing") {
  kiln::test::TempDir tmp("rank");
  kiln::data::write_synthetic(tmp.path / "syn", {3, 8, 2, 1});
  TrainOptions o = tiny_options(tmp.path / "syn");
  o.model_dir = tmp.path / "model";
  o.checkpoint_dir = tmp.path / "ck";
  std::vector<int64_t> shard_sizes;
  StepHooks h;
  h.before_step = [&](const StepInfo& i) { shard_sizes.push_back(i.batch->n); };
  TrainOutcome r = run_training(o, Rank{1, 2}, h);
  CHECK(r.exit_code == 0);
  CHECK(r.global_step == 2);
  CHECK(shard_sizes == std::vector<int64_t>{2, 2});
  CHECK_FALSE(fs::exists(o.model_dir));
  CHECK_FALSE(fs::exists(o.checkpoint_dir));
  CHECK_THROWS_WITH(Trainer(o, Rank{2, 2}), doctest::Contains("rank in [0, world)"));
}

TEST_CASE("Trainer: training records in parts train exactly as the train.bin they came from") {
  kiln::test::TempDir tmp("parts");
  kiln::data::write_synthetic(tmp.path / "syn", {3, 10, 2, 1});
  const auto rep = kiln::data::write_train_parts(kiln::data::load_cifar100(tmp.path / "syn"), 3, tmp.path / "shards");
  TrainOptions a = tiny_options(tmp.path / "syn");
  a.model_dir = tmp.path / "a";
  TrainOptions b = tiny_options(rep.training);
  b.test_data = rep.test;  // the class names come from the test folder
  b.model_dir = tmp.path / "b";
  b.data_per_host = true;  // one process: nothing changes
  CHECK(run_training(a).exit_code == 0);
  CHECK(run_training(b).exit_code == 0);
  const std::string wa = kiln::test::read_text(tmp.path / "a/model.safetensors");
  CHECK(!wa.empty());
  CHECK_MESSAGE(wa == kiln::test::read_text(tmp.path / "b/model.safetensors"),
                "training on the parts gave other weights than on train.bin");
}

TEST_CASE("Trainer per-host data: a host's share of each batch from its own records, for the agreed steps") {
  kiln::test::TempDir tmp("per-host");
  kiln::data::write_synthetic(tmp.path / "syn", {3, 20, 2, 1});
  TrainOptions o = tiny_options(tmp.path / "syn");
  Rank rank(1, 2);  // rank 1 of 2, alone on host 2: 2 records of each global batch of 4
  rank.host_ranks = {1};
  rank.host = 1;
  rank.hosts = 2;
  std::vector<int64_t> n, global_n;
  StepHooks h;
  h.before_step = [&](const StepInfo& i) {
    n.push_back(i.batch->n);
    global_n.push_back(i.global_n);
  };
  std::vector<int64_t> asked;
  h.max_over_ranks = [&](int64_t* v, int count) {  // the other host can take 3 steps and validates 1 record
    asked.assign(v, v + count);
    v[0] = std::max<int64_t>(v[0], -3);
    v[1] = std::max<int64_t>(v[1], 1);
  };
  h.reduce_eval = [](EvalResult&) {};
  o.epochs = 2;
  TrainOutcome r = run_training(o, rank, h);
  CHECK(r.exit_code == 0);
  CHECK(asked == std::vector<int64_t>{-10, 0});  // 20 records / 2 per step here; none held out
  CHECK(r.global_step == 6);
  CHECK(n == std::vector<int64_t>(6, 2));
  CHECK(global_n == std::vector<int64_t>(6, 4));
  // A host with fewer records than its share of one batch is refused, naming it.
  o.batch_size = 64;
  const std::string refused = "host 2 of 2 (rank 1, --data " + o.data.string() +
                              "): expected at least its share of one global batch: 32 of the 64 records";
  CHECK_THROWS_WITH(run_training(o, rank, h), doctest::Contains(refused.c_str()));
}

TEST_CASE("argmax: the first maximum wins ties and a NaN wins outright, as torch.argmax does") {
  const float ties[] = {0.5f, 2.0f, -1.0f, 2.0f};
  CHECK(kiln::models::argmax(ties, 4) == 1);
  const float one[] = {-3.0f};
  CHECK(kiln::models::argmax(one, 1) == 0);
  const float with_nan[] = {1.0f, 5.0f, NAN, 7.0f, NAN};
  CHECK(kiln::models::argmax(with_nan, 5) == 2);
  const float last[] = {-9.0f, -8.0f, -1e-30f};
  CHECK(kiln::models::argmax(last, 3) == 2);
}
