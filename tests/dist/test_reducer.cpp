// GradReducer in one process, with a stand-in for MPI's sum: the buckets cover every parameter
// once in backward's order and respect the size cap, a bucket is reduced while backward is
// still going (before conv1 has its gradient), the written-back result is the sum of the
// weighted gradients and buffers, and a sum that never returns ends finish_step with an error
// naming the bucket, within its timeout.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "kiln/core/error.h"
#include "kiln/dist/reducer.h"
#include "kiln/engine/ops.h"
#include "kiln/models/resnet.h"

using namespace kiln;

namespace {

void forward_backward(models::ResNet& net, const std::function<void(const Tensor&)>& ready) {
  std::vector<float> xv(2 * 3 * 32 * 32);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>((i * 7919) % 97) / 97.0f - 0.5f;
  const int64_t labels[2] = {1, 3};
  set_grad_ready_hook(ready);
  Tensor x = Tensor::from_plain({2, 3, 32, 32}, xv.data(), "x");
  ops::nll_loss(ops::log_softmax(net.forward(x)), labels).backward();
  set_grad_ready_hook({});
}

}  // namespace

TEST_CASE("GradReducer: buckets in backward's order, reduced during backward, weighted sums written back") {
  models::ResNet net({"resnet18", 10}, 3);
  net.train();
  auto params = net.named_parameters();
  const Tensor conv1 = params.front().second;
  std::atomic<int> reduced_before_conv1{0};
  std::atomic<int> calls{0};
  // Two identical ranks: the sum doubles every value.
  auto sum_of_two = [&](float* d, int64_t n) {
    if (!conv1.has_grad()) ++reduced_before_conv1;
    ++calls;
    for (int64_t i = 0; i < n; ++i) d[i] *= 2;
  };
  dist::ReducerOptions opt;
  opt.bucket_bytes = 2 << 20;
  dist::GradReducer r(params, net.named_buffers(), sum_of_two, {opt.bucket_bytes, 30});

  // Every parameter in exactly one bucket, fc first, conv1 last; a bucket exceeds the cap only
  // by its last member.
  std::vector<std::string> order;
  for (size_t b = 0; b < r.bucket_count(); ++b) {
    auto names = r.bucket_names(b);
    int64_t bytes = 0;
    for (size_t j = 0; j < names.size(); ++j) {
      for (auto& [n, p] : params)
        if (n == names[j]) {
          if (j + 1 < names.size()) CHECK_MESSAGE(bytes < opt.bucket_bytes, "bucket " << b << " over the cap");
          bytes += p.numel() * 4;
        }
      order.push_back(names[j]);
    }
  }
  CHECK(r.bucket_count() > 3);
  REQUIRE(order.size() == params.size());
  CHECK(std::set<std::string>(order.begin(), order.end()).size() == params.size());
  CHECK(order.front() == "fc.bias");
  CHECK(order.back() == "conv1.weight");

  std::vector<std::vector<float>> grads, buffers;
  r.begin_step(0.25);
  forward_backward(net, [&](const Tensor& p) { r.grad_ready(p); });
  for (auto& [n, b] : net.named_buffers()) buffers.push_back(b.to_plain_vector());
  for (auto& [n, p] : params) grads.push_back(p.grad().to_plain_vector());
  r.finish_step();
  CHECK(calls.load() == static_cast<int>(r.bucket_count()) + 1);  // + the buffers' bucket
  CHECK_MESSAGE(reduced_before_conv1.load() > 0, "no bucket was reduced while backward was still running");
  for (size_t k = 0; k < params.size(); ++k) {
    std::vector<float> got = params[k].second.grad().to_plain_vector(), want = grads[k];
    for (float& v : want) v = v * 0.25f * 2;
    CHECK_MESSAGE(got == want, params[k].first);
  }
  size_t k = 0;
  for (auto& [n, b] : net.named_buffers()) {
    std::vector<float> got = b.to_plain_vector(), want = buffers[k++];
    for (float& v : want) v = v * 0.25f * 2;
    CHECK_MESSAGE(got == want, n);
  }
  CHECK(r.stats().steps == 1);
  CHECK(r.stats().comm_s > 0);
}

TEST_CASE("GradReducer: a sum that does not return ends finish_step with an error, within the timeout") {
  models::ResNet net({"resnet18", 10}, 3);
  net.train();
  auto hang = [](float*, int64_t) { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); };
  dist::GradReducer r(net.named_parameters(), {}, hang, {int64_t{1} << 30, 0.3});
  r.begin_step(1);
  forward_backward(net, [&](const Tensor& p) { r.grad_ready(p); });
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(r.finish_step(), doctest::Contains("bucket 1 of 1 did not complete within 0.3 s"));
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.2);
}
