// embed_resnet: kiln as a C++ library, written the way a libtorch program reads. Loads a
// ResNet34 with torchvision weights in one call (a torch.save .pth, e.g.
// torch.save(torchvision.models.resnet34(weights="DEFAULT").state_dict(), "resnet34.pth"),
// a .safetensors file or a kiln model directory), with a fresh 100-class head when the file
// has another number of classes (as the reference's create_model() does), then runs forward,
// backward and SGD steps on one random batch, printing the loss and the gradient norm of each
// step, and the eval-mode predictions at the end.
//   usage: embed_resnet [WEIGHTS.pth | MODEL_DIR] [STEPS]   (no weights: torchvision's random init)
// It uses only kiln's installed headers; building it against an installed kiln: docs/embedding.md.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/sgd.h"
#include "kiln/engine/tensor.h"
#include "kiln/models/argmax.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"

int main(int argc, char** argv) try {
  const int steps = argc > 2 ? std::stoi(argv[2]) : 3;
  kiln::set_num_threads(0);  // all cores, for kiln's kernels and oneDNN

  std::unique_ptr<kiln::models::ResNet> net;
  if (argc > 1) {
    // No random initialisation first: the model is built and filled from the file.
    kiln::models::LoadedResNet loaded = kiln::models::load_resnet(
        argv[1], kiln::models::LoadResNetOptions().num_classes(100).reinit_head(true).seed(42));
    if (!loaded.note.empty()) std::fprintf(stderr, "%s\n", loaded.note.c_str());
    net = std::move(loaded.net);
  } else {
    net = std::make_unique<kiln::models::ResNet>(kiln::models::ResNetConfig{"resnet34", 100},
                                                 /*seed=*/42);
  }
  kiln::Sgd sgd(net->named_parameters(), {/*lr=*/0.01, /*momentum=*/0.9, /*weight_decay=*/5e-4});

  // One batch of 8 normalized 32x32 images (random here) and its labels.
  const int64_t n = 8;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::vector<float> images(n * 3 * 32 * 32);
  for (auto& v : images) v = normal(rng);
  const std::vector<int64_t> labels = {3, 14, 15, 92, 65, 35, 89, 79};  // one per image
  kiln::Tensor x = kiln::Tensor::from_plain({n, 3, 32, 32}, images.data(), "images");

  net->train();
  for (int step = 0; step < steps; ++step) {
    kiln::Tensor log_probs = kiln::ops::log_softmax(net->forward(x));  // (n, 100)
    kiln::Tensor loss = kiln::ops::nll_loss(log_probs, labels);
    sgd.zero_grad();
    loss.backward();  // every parameter's grad(), in the layout its convolution chose
    double sq = 0;
    for (const auto& [name, p] : net->named_parameters())
      for (float g : p.grad().to_plain_vector()) sq += static_cast<double>(g) * g;
    sgd.step();
    std::printf("step %d: loss %.4f grad_norm %.4f\n", step, loss.item(), std::sqrt(sq));
  }

  net->eval();
  kiln::NoGrad no_grad;  // inference: no tape
  std::printf("predictions:");
  for (int64_t best : kiln::models::argmax(net->forward(x)))
    std::printf(" %lld", static_cast<long long>(best));
  std::printf("\n");
  return 0;
} catch (const kiln::IoError& e) {  // the file could not be read: a usage error here
  std::fprintf(stderr, "embed_resnet: %s\n", e.full_message().c_str());
  return 2;
} catch (const kiln::Error& e) {  // any other kiln failure (bad weights, bad arguments)
  std::fprintf(stderr, "embed_resnet: %s\n", e.full_message().c_str());
  return 1;
}
