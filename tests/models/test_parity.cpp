// End-to-end parity with PyTorch (llm.c's test_gpt2 pattern, but every failed check fails the
// run): for resnet18 and resnet34 with random weights saved by torch.save, kiln must reproduce
// eval logits, train-mode logits and loss, EVERY parameter gradient, the running statistics
// after one train forward, the weights after one SGD step and every state_dict entry after 3.
// References are PyTorch float64 results; tolerances are derived per quantity from PyTorch's
// own float32 error (see fixtures.h: Tolerance). resnet18 also runs with each of kiln's
// kernel ISA paths forced (scalar, avx2, avx512 where the CPU has them).
#include <doctest/doctest.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/pth.h"
#include "kiln/models/classifier.h"
#include "kiln/models/resnet.h"
#include "tests/models/fixtures.h"

namespace {

using kiln::Tensor;
using kiln::test::compare;
using kiln::test::Fixture;
using kiln::test::Tolerance;

// Collects every failed comparison so one run reports all of them (capped in the output).
struct Checker {
  const Fixture& fx;
  std::string prefix;
  std::vector<std::string> failures;
  int checks = 0;

  void check(const std::string& what, const std::string& ref_name, const std::vector<float>& v,
             const std::vector<int64_t>& shape, const Tolerance& tol = {}) {
    ++checks;
    std::string msg = compare(prefix + what, v, shape, fx.ref(ref_name), fx.err32(ref_name), tol);
    if (!msg.empty()) failures.push_back(msg);
  }
  void check_tensor(const std::string& what, const std::string& ref_name, const Tensor& t,
                    const Tolerance& tol = {}) {
    check(what, ref_name, t.to_plain_vector(), t.shape(), tol);
  }
  // int64 counters (num_batches_tracked) and every float entry of a state dict.
  // skip: names not to compare (the parameters, when only buffers are of interest).
  void check_state(const std::string& stage, const std::string& ref_prefix,
                   const kiln::io::StateDict& sd, const std::set<std::string>& skip = {},
                   const Tolerance& tol = {}) {
    for (const auto& a : sd) {
      if (skip.count(a.name)) continue;
      std::string key = ref_prefix + a.name;
      if (a.dtype == kiln::io::DType::i64) {
        ++checks;
        const auto& r = fx.ref(key);
        if (r.bytes != a.bytes)
          failures.push_back(prefix + a.name + " " + stage + ": int64 value differs from PyTorch");
        continue;
      }
      check(a.name + " " + stage, key, std::vector<float>(a.f32(), a.f32() + a.numel()), a.shape,
            tol);
    }
  }
  void report() {
    std::string all;
    for (size_t i = 0; i < failures.size() && i < 40; ++i) all += failures[i] + "\n";
    if (failures.size() > 40) all += "... and " + std::to_string(failures.size() - 40) + " more\n";
    INFO(prefix << failures.size() << " of " << checks << " checks failed:\n" << all);
    CHECK(failures.empty());
  }
};

void run_parity(const std::string& arch, const char* isa) {
  const Fixture& fx = kiln::test::parity_fixture(arch);
  if (isa) kiln::force_isa(kiln::parse_isa(isa), /*cap_onednn=*/false);
  Checker ck{fx, arch + (isa ? std::string(" [isa ") + isa + "] " : std::string(" ")), {}, 0};
  const std::vector<float> input = fx.input();
  const std::vector<int64_t> labels = fx.labels();
  const int64_t n = fx.batch();
  const kiln::io::StateDict weights = kiln::io::read_pth(fx.dir / "model.pth");
  const int64_t classes = fx.ref("eval.logits").shape.at(1);
  kiln::models::ResNetConfig cfg{arch, classes};

  // Eval mode, no tape: logits and log_softmax.
  {
    kiln::models::ResNet net(cfg, 7);
    REQUIRE(net.load_state_dict(weights).empty());
    net.eval();
    kiln::NoGrad no_grad;
    Tensor logits = net.forward(Tensor::from_plain({n, 3, 32, 32}, input.data(), "input"));
    ck.check_tensor("eval logits", "eval.logits", logits);
    ck.check_tensor("eval log_softmax", "eval.log_softmax", kiln::ops::log_softmax(logits));
  }
  // Train mode, one forward + backward: loss, every gradient, running stats.
  {
    kiln::models::ResNet net(cfg, 7);
    REQUIRE(net.load_state_dict(weights).empty());
    net.train();
    Tensor logits = net.forward(Tensor::from_plain({n, 3, 32, 32}, input.data(), "input"));
    Tensor loss = kiln::ops::nll_loss(kiln::ops::log_softmax(logits), labels);
    ck.check_tensor("train logits", "train.logits", logits);
    ck.check("train loss", "train.loss", {loss.item()}, {1});
    loss.backward();
    auto params = net.named_parameters();
    CHECK(params.size() > 0);
    for (const auto& [name, p] : params) {
      if (!p.has_grad()) {
        ck.failures.push_back(ck.prefix + name + " grad: missing (no gradient reached it)");
        continue;
      }
      ck.check_tensor(name + " grad", "grad." + name, p.grad());
    }
    std::set<std::string> param_names;
    for (const auto& [name, p] : params) param_names.insert(name);
    ck.check_state("after one train forward", "fwd.", net.state_dict(), param_names);
  }
  // SGD through the Classifier (what `kiln train` runs): weights after step 1, then all
  // state after `steps` steps, and each step's loss.
  {
    kiln::SgdConfig sgd{fx.meta_double("lr"), fx.meta_double("momentum"),
                        fx.meta_double("weight_decay")};
    kiln::models::Classifier clf(cfg, 7, sgd);
    REQUIRE(clf.net().load_state_dict(weights).empty());
    const auto steps = static_cast<int64_t>(fx.meta_double("steps"));
    std::vector<float> losses;
    for (int64_t s = 0; s < steps; ++s) {
      losses.push_back(static_cast<float>(clf.train_step(input.data(), labels.data(), n).loss));
      if (s == 0) {
        for (const auto& [name, p] : clf.net().named_parameters())
          ck.check_tensor(name + " after 1 SGD step", "sgd1." + name, p);
      }
    }
    ck.check("SGD step losses", "sgd.loss", losses, {steps});
    ck.check_state("after " + std::to_string(steps) + " SGD steps", "sgd.",
                   clf.net().state_dict());
  }
  auto& st = kiln::test::compare_stats();
  std::printf("%s: %d checks, %zu failed; worst err/tolerance %.3g (%s); worst err/PyTorch-fp32-err "
              "%.3g (%s)\n",
              ck.prefix.c_str(), ck.checks, ck.failures.size(), st.worst_ratio,
              st.worst_label.c_str(), st.worst_err_over_err32, st.worst_err32_label.c_str());
  st = {};
  ck.report();
  if (isa) kiln::force_isa(kiln::detected_isa(), false);
}

}  // namespace

TEST_CASE("resnet18 matches PyTorch: eval logits, loss, every gradient, running stats, SGD steps") {
  run_parity("resnet18", nullptr);
}

TEST_CASE("resnet34 matches PyTorch: eval logits, loss, every gradient, running stats, SGD steps") {
  run_parity("resnet34", nullptr);
}

TEST_CASE("resnet18 matches PyTorch with each of kiln's slower kernel ISA paths forced") {
  const kiln::Isa detected = kiln::detected_isa();
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    // Skip what the CPU cannot run, and the detected path: the cases above ran it.
    if (kiln::parse_isa(isa) >= detected) continue;
    const std::string isa_path = isa;
    CAPTURE(isa_path);
    run_parity("resnet18", isa);
  }
}
