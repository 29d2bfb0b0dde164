// Learning-rate (and momentum) schedules for `kiln train`, indexed by the optimizer step about to
// run (0-based). `onecycle` is PyTorch 1.13's OneCycleLR(max_lr) with its defaults: pct_start 0.3,
// cosine annealing, div_factor 25, final_div_factor 1e4, two phases, and cycle_momentum with
// base_momentum 0.85 / max_momentum 0.95 (momentum runs opposite to the lr).
#pragma once

#include <cstdint>
#include <string>

namespace kiln::train {

struct LrMomentum {
  double lr = 0;
  double momentum = 0;
};

class LrSchedule {
 public:
  // kind "constant": lr and momentum as given for every step.
  // kind "onecycle": max_lr = `max_lr` over total_steps; lr/momentum given are ignored.
  static LrSchedule constant(double lr, double momentum);
  static LrSchedule onecycle(double max_lr, int64_t total_steps);
  static LrSchedule parse(const std::string& kind, double lr, double momentum, double max_lr,
                          int64_t total_steps);  // throws kiln::Error on an unknown kind

  LrMomentum at(int64_t step) const;
  bool cycles_momentum() const { return onecycle_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool onecycle_ = false;
  double lr_ = 0, momentum_ = 0;
  double initial_lr_ = 0, max_lr_ = 0, min_lr_ = 0;
  double base_momentum_ = 0.85, max_momentum_ = 0.95;
  int64_t total_steps_ = 1;
};

}  // namespace kiln::train
