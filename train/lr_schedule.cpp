// LR schedules (see lr_schedule.h). The onecycle arithmetic follows torch/optim/lr_scheduler.py
// (1.13) line by line, in double precision, so the values match PyTorch's to the last bit or so.
#include "kiln/train/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "kiln/core/error.h"

namespace kiln::train {

LrSchedule LrSchedule::constant(double lr, double momentum) {
  LrSchedule s;
  s.name_ = "constant";
  s.lr_ = lr;
  s.momentum_ = momentum;
  return s;
}

LrSchedule LrSchedule::onecycle(double max_lr, int64_t total_steps) {
  if (total_steps <= 0) fail("onecycle schedule: total steps", "a positive number", std::to_string(total_steps));
  LrSchedule s;
  s.name_ = "onecycle";
  s.onecycle_ = true;
  s.max_lr_ = max_lr;
  s.initial_lr_ = max_lr / 25.0;             // div_factor
  s.min_lr_ = s.initial_lr_ / 1e4;           // final_div_factor
  s.total_steps_ = total_steps;
  return s;
}

LrSchedule LrSchedule::parse(const std::string& kind, double lr, double momentum, double max_lr,
                             int64_t total_steps) {
  if (kind == "constant") return constant(lr, momentum);
  if (kind == "onecycle") return onecycle(max_lr, total_steps);
  fail("--lr-schedule", "constant or onecycle", "'" + kind + "'");
}

namespace {
double anneal_cos(double start, double end, double pct) {
  double cos_out = std::cos(std::numbers::pi * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}
}  // namespace

LrMomentum LrSchedule::at(int64_t step) const {
  if (!onecycle_) return {lr_, momentum_};
  // Past the end PyTorch raises; kiln holds the final values instead (a resumed run with more
  // epochs must not crash in its last step).
  double step_num = static_cast<double>(std::min(step, total_steps_));
  const double total = static_cast<double>(total_steps_);
  struct Phase { double end_step, start_lr, end_lr, start_m, end_m; };
  const Phase phases[2] = {
      {0.3 * total - 1, initial_lr_, max_lr_, max_momentum_, base_momentum_},
      {total - 1, max_lr_, min_lr_, base_momentum_, max_momentum_},
  };
  double start_step = 0;
  for (int i = 0; i < 2; ++i) {
    const Phase& p = phases[i];
    if (step_num <= p.end_step || i == 1) {
      double pct = (step_num - start_step) / (p.end_step - start_step);
      return {anneal_cos(p.start_lr, p.end_lr, pct), anneal_cos(p.start_m, p.end_m, pct)};
    }
    start_step = p.end_step;
  }
  KILN_ASSERT(false, "unreachable");
  return {};
}

}  // namespace kiln::train
