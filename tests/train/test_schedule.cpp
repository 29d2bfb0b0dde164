// The onecycle schedule against PyTorch 1.13's OneCycleLR(max_lr=0.1) (lr and momentum at every
// step) and the constant schedule. Tolerance: 1e-12 relative (both are double arithmetic).
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "tests/support/support.h"
#include "kiln/train/lr_schedule.h"

using kiln::train::LrSchedule;

TEST_CASE("onecycle lr and momentum equal PyTorch's OneCycleLR(max_lr=0.1) step by step") {
  kiln::test::TempDir tmp("sched");
  const std::string script = R"PY(
import sys, torch
for total in (1, 2, 7, 10, 352, 1408):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2e-4, momentum=0.9, weight_decay=5e-4)
    s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)
    for step in range(total):
        g = opt.param_groups[0]
        print(total, step, repr(g['lr']), repr(g['momentum']))
        opt.step(); s.step()
)PY";
  kiln::test::write_text(tmp.path / "onecycle.py", script);
  auto r = kiln::test::run_command(kiln::test::python() + " " + (tmp.path / "onecycle.py").string());
  REQUIRE_MESSAGE(r.status == 0, "the torch oracle failed (needs Debian's python3-torch): " << r.output);
  std::istringstream in(r.output);
  int64_t total = 0, step = 0, lines = 0;
  double lr = 0, m = 0;
  while (in >> total >> step >> lr >> m) {
    LrSchedule s = LrSchedule::onecycle(0.1, total);
    auto got = s.at(step);
    INFO("total_steps " << total << " step " << step);
    CHECK(std::abs(got.lr - lr) <= 1e-12 * std::abs(lr));
    CHECK(std::abs(got.momentum - m) <= 1e-12 * std::abs(m));
    ++lines;
  }
  CHECK(lines == 1 + 2 + 7 + 10 + 352 + 1408);
}

TEST_CASE("the constant schedule keeps lr and momentum; unknown names are refused") {
  LrSchedule s = LrSchedule::parse("constant", 2e-4, 0.9, 0.1, 100);
  CHECK(s.at(0).lr == 2e-4);
  CHECK(s.at(99).momentum == 0.9);
  CHECK_FALSE(s.cycles_momentum());
  CHECK_THROWS_WITH(LrSchedule::parse("cosine", 2e-4, 0.9, 0.1, 100),
                    doctest::Contains("constant or onecycle"));
}
