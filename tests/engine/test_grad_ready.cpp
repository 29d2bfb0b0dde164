// The gradient-ready hook (set_grad_ready_hook): during backward() each parameter is reported
// exactly once, as soon as its gradient is final, while the layers below it are still to be
// differentiated (what a data-parallel trainer needs to overlap its allreduce with backward).
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "kiln/engine/ops.h"
#include "kiln/models/resnet.h"

using namespace kiln;

TEST_CASE("grad-ready hook: every parameter once, final gradient, reported during backward") {
  models::ResNet net({"resnet18", 10}, 3);
  net.train();
  std::vector<float> xv(4 * 3 * 32 * 32);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>((i * 7919) % 97) / 97.0f - 0.5f;
  const int64_t labels[4] = {1, 3, 5, 7};
  auto params = net.named_parameters();
  std::map<const TensorImpl*, std::string> name_of;
  for (auto& [name, p] : params) name_of[p.impl()] = name;
  const Tensor& conv1 = params.front().second;  // "conv1.weight": the last to be differentiated

  std::vector<std::string> order;
  std::map<std::string, std::vector<float>> at_hook;
  bool conv1_done_at_fc = true;
  set_grad_ready_hook([&](const Tensor& leaf) {
    const std::string& name = name_of.at(leaf.impl());
    order.push_back(name);
    REQUIRE(leaf.has_grad());
    at_hook[name] = leaf.grad().to_plain_vector();
    if (name == "fc.weight") conv1_done_at_fc = conv1.has_grad();
  });
  Tensor x = Tensor::from_plain({4, 3, 32, 32}, xv.data(), "x");
  Tensor loss = ops::nll_loss(ops::log_softmax(net.forward(x)), labels);
  loss.backward();
  set_grad_ready_hook({});

  CHECK(order.size() == params.size());
  CHECK(at_hook.size() == params.size());  // no parameter reported twice
  CHECK(order.front().rfind("fc.", 0) == 0);
  CHECK(order.back() == "conv1.weight");
  CHECK_MESSAGE(!conv1_done_at_fc, "fc.weight was reported only after conv1 had its gradient");
  for (auto& [name, p] : params) CHECK_MESSAGE(at_hook[name] == p.grad().to_plain_vector(), name);

  // A second step without the hook records and reports nothing: the use counts start afresh.
  order.clear();
  Tensor loss2 = ops::nll_loss(ops::log_softmax(net.forward(x)), labels);
  set_grad_ready_hook([&](const Tensor& leaf) { order.push_back(name_of.at(leaf.impl())); });
  loss2.backward();
  set_grad_ready_hook({});
  CHECK(order.size() == params.size());
}
