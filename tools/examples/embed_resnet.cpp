// embed_resnet: kiln as a C++ library. Builds torchvision's ResNet34, loads torchvision weights
// (a torch.save .pth, e.g. torch.save(torchvision.models.resnet34(weights="DEFAULT").state_dict())),
// replaces the head by a fresh 100-class one when the file has 1000 classes (as the reference's
// create_model() does), then runs forward, backward and SGD steps on one random batch and prints
// the loss and the gradient norm of each step, and the eval-mode predictions at the end.
//   usage: embed_resnet [WEIGHTS.pth] [STEPS]      (no weights: torchvision's random init)
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/sgd.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/pth.h"
#include "kiln/models/argmax.h"
#include "kiln/models/resnet.h"

int main(int argc, char** argv) try {
  const int steps = argc > 2 ? std::stoi(argv[2]) : 3;
  kiln::set_num_threads(0);  // all cores, for kiln's kernels and oneDNN

  kiln::models::ResNet net({"resnet34", /*num_classes=*/100}, /*seed=*/42);
  if (argc > 1) {
    kiln::io::StateDict weights = kiln::io::read_pth(argv[1]);  // no Python, nothing executed
    std::string note = net.load_state_dict(weights, /*allow_head_reinit=*/true);
    if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  }
  kiln::Sgd sgd(net.named_parameters(), {/*lr=*/0.01, /*momentum=*/0.9, /*weight_decay=*/5e-4});

  // One batch of 8 normalized 32x32 images (random here) and its labels.
  const int64_t n = 8;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::vector<float> images(n * 3 * 32 * 32);
  for (auto& v : images) v = normal(rng);
  std::vector<int64_t> labels = {3, 14, 15, 92, 65, 35, 89, 79};
  kiln::Tensor x = kiln::Tensor::from_plain({n, 3, 32, 32}, images.data(), "images");

  net.train();
  for (int step = 0; step < steps; ++step) {
    kiln::Tensor log_probs = kiln::ops::log_softmax(net.forward(x));  // (n, 100)
    kiln::Tensor loss = kiln::ops::nll_loss(log_probs, labels.data());
    sgd.zero_grad();
    loss.backward();  // every parameter's grad(), in the layout its convolution chose
    double sq = 0;
    for (const auto& [name, p] : net.named_parameters())
      for (float g : p.grad().to_plain_vector()) sq += static_cast<double>(g) * g;
    sgd.step();
    std::printf("step %d: loss %.4f grad_norm %.4f\n", step, loss.item(), std::sqrt(sq));
  }

  net.eval();
  kiln::NoGrad no_grad;  // inference: no tape
  std::vector<float> lp = kiln::ops::log_softmax(net.forward(x)).to_plain_vector();
  std::printf("predictions:");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t best = kiln::models::argmax(lp.data() + i * 100, 100);
    std::printf(" %lld", static_cast<long long>(best));
  }
  std::printf("\n");
  return 0;
} catch (const kiln::Error& e) {
  std::fprintf(stderr, "embed_resnet: %s\n", e.full_message().c_str());
  return 1;
}
