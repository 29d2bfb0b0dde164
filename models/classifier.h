// What training, evaluation and serving use: a ResNet, log_softmax + nll_loss and SGD.
// train_step is deterministic for a given thread count and ISA (needed for bit-identical
// resume). Calls on one Classifier must be serialised by the caller.
#pragma once

#include <cstdint>
#include <memory>

#include "kiln/engine/sgd.h"
#include "kiln/models/resnet.h"

namespace kiln::models {

struct BatchResult {
  double loss = 0;      // mean over the batch
  int64_t correct = 0;  // argmax == label
  int64_t count = 0;
};

class Classifier {
 public:
  // init=false: no random initialisation (load weights next; see ResNet).
  Classifier(const ResNetConfig& cfg, uint64_t seed, SgdConfig sgd = {}, bool init = true);
  // Around a network already built and loaded (models::load_resnet's): nothing is initialised.
  explicit Classifier(std::unique_ptr<ResNet> net, SgdConfig sgd = {});
  ResNet& net() { return *net_; }
  Sgd& optimizer() { return *sgd_; }

  // images: (n,3,H,W) plain fp32 NCHW normalized (H = W = image_size, default 32);
  // labels: n int64 in [0, classes)
  BatchResult train_step(const float* images, const int64_t* labels, int64_t n);  // train mode
  BatchResult evaluate(const float* images, const int64_t* labels, int64_t n);    // eval, no grad
  void predict_log_probs(const float* images, int64_t n, float* out);            // eval, (n,classes)

  void set_image_size(int64_t s) { image_size_ = s; }
  int64_t image_size() const { return image_size_; }

 private:
  BatchResult score(const Tensor& log_probs, const int64_t* labels, int64_t n, double loss);
  std::unique_ptr<ResNet> net_;
  std::unique_ptr<Sgd> sgd_;
  int64_t image_size_ = 32;
};

}  // namespace kiln::models
