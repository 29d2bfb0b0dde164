// Classifier: ResNet + log_softmax + nll_loss + SGD (see models/classifier.h).
#include "kiln/models/classifier.h"

#include "kiln/core/error.h"
#include "kiln/models/argmax.h"
#include "kiln/engine/ops.h"

namespace kiln::models {

Classifier::Classifier(const ResNetConfig& cfg, uint64_t seed, SgdConfig sgd, bool init)
    : net_(std::make_unique<ResNet>(cfg, seed, init)),
      sgd_(std::make_unique<Sgd>(net_->named_parameters(), sgd)) {}

Classifier::Classifier(std::unique_ptr<ResNet> net, SgdConfig sgd) : net_(std::move(net)) {
  KILN_ASSERT(net_ != nullptr, "Classifier around no network");
  sgd_ = std::make_unique<Sgd>(net_->named_parameters(), sgd);
}

BatchResult Classifier::score(const Tensor& log_probs, const int64_t* labels, int64_t n,
                              double loss) {
  BatchResult r;
  r.loss = loss;
  r.count = n;
  const float* lp = log_probs.plain_data();
  int64_t K = log_probs.dim(1);
  for (int64_t i = 0; i < n; ++i)
    if (argmax(lp + i * K, K) == labels[i]) ++r.correct;
  return r;
}

BatchResult Classifier::train_step(const float* images, const int64_t* labels, int64_t n) {
  KILN_ASSERT(n > 0, "train_step on an empty batch");
  net_->train(true);
  Tensor x = Tensor::from_plain({n, 3, image_size_, image_size_}, images, "images");
  Tensor log_probs = ops::log_softmax(net_->forward(x));
  Tensor loss = ops::nll_loss(log_probs, {labels, static_cast<size_t>(n)});
  sgd_->zero_grad();
  loss.backward();
  sgd_->step();
  return score(log_probs, labels, n, loss.item());
}

BatchResult Classifier::evaluate(const float* images, const int64_t* labels, int64_t n) {
  KILN_ASSERT(n > 0, "evaluate on an empty batch");
  NoGrad no_grad;
  net_->eval();
  Tensor x = Tensor::from_plain({n, 3, image_size_, image_size_}, images, "images");
  Tensor log_probs = ops::log_softmax(net_->forward(x));
  Tensor loss = ops::nll_loss(log_probs, {labels, static_cast<size_t>(n)});
  return score(log_probs, labels, n, loss.item());
}

void Classifier::predict_log_probs(const float* images, int64_t n, float* out) {
  KILN_ASSERT(n > 0, "predict on an empty batch");
  NoGrad no_grad;
  net_->eval();
  Tensor x = Tensor::from_plain({n, 3, image_size_, image_size_}, images, "images");
  Tensor log_probs = ops::log_softmax(net_->forward(x));
  log_probs.copy_to_plain(out);
}

}  // namespace kiln::models
