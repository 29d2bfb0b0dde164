// SGD with PyTorch's semantics: g += wd*p; buf = momentum*buf + g (buf = g on the first step;
// dampening 0, no Nesterov); p -= lr*buf. Weight decay applies to every parameter.
// Parameters, gradients and momentum buffers live in three arenas with identical layout (each
// parameter keeps the layout its convolution chose), so zero_grad is one memset and step() is
// one vectorized pass (kiln's own kernel, dispatched per ISA). The arenas are built at the
// first step(), once every parameter's layout is final.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/engine/tensor.h"
#include "kiln/io/array.h"

namespace kiln {

struct SgdConfig {
  double lr = 2e-4, momentum = 0.9, weight_decay = 5e-4;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Sgd {
 public:
  // params: a module's named_parameters() (e.g. ResNet::named_parameters()).
  Sgd(NamedTensors params, SgdConfig cfg);
  ~Sgd();
  Sgd(const Sgd&) = delete;
  Sgd& operator=(const Sgd&) = delete;

  void step();
  void zero_grad();
  void set_lr(double lr) { cfg_.lr = lr; }
  double lr() const { return cfg_.lr; }
  void set_momentum(double m) { cfg_.momentum = m; }  // OneCycleLR's cycle_momentum
  double momentum() const { return cfg_.momentum; }
  const SgdConfig& config() const { return cfg_; }
  int64_t steps() const { return steps_; }

  // Momentum buffers in plain layout, named "<param>.momentum_buffer" (empty before step 1).
  io::StateDict state_dict() const;
  // Restores momentum buffers; every parameter's buffer must be present with its shape.
  void load_state_dict(const io::StateDict& sd);

 private:
  struct Arena;
  void build_arena();
  NamedTensors params_;
  SgdConfig cfg_;
  int64_t steps_ = 0;
  std::unique_ptr<Arena> arena_;
  io::StateDict pending_momentum_;  // loaded before the arena exists
};

}  // namespace kiln
