// PyTorch parity fixtures for tests/models: generated once per test process by gen_parity.py
// (run with ${KILN_PYTHON:-/usr/bin/python3}) into a temporary directory removed at exit, and
// the comparison that turns "kiln vs reference" into a named, located, toleranced failure.
// Missing torch is a failure, never a skip.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kiln/io/array.h"
#include "tests/support/support.h"

namespace kiln::test {

struct Fixture {
  std::string arch;
  std::filesystem::path dir;  // model.pth, input.npy, labels.npy, eval_log_softmax.npy, ...
  std::map<std::string, io::NamedArray> refs;  // fixtures.safetensors by name
  std::map<std::string, std::string> meta;     // lr, momentum, weight_decay, steps, seed, ...
  const io::NamedArray& ref(const std::string& name) const;  // throws naming a missing key
  double err32(const std::string& name) const;  // PyTorch's own fp32 error for quantity `name`
  double meta_double(const std::string& key) const;
  std::vector<float> input() const;
  std::vector<int64_t> labels() const;
  int64_t batch() const;
};

// Generates (once per process) and loads the fixtures for `arch` (resnet18 | resnet34).
const Fixture& parity_fixture(const std::string& arch);

// The tolerance rule of every parity check:
//   |kiln - ref64| <= tol = factor * err32 + floor_rel * max|ref64|   (element-wise, max abs)
// ref64 is PyTorch's float64 result (rounded to fp32) and err32 the max abs error PyTorch's own
// float32 run made against it: kiln, also fp32 but summing in another order, is allowed a
// fixed multiple of the error fp32 arithmetic demonstrably makes on this very quantity. The
// floor (a few ulps of the largest value) covers quantities PyTorch happened to get exact.
// Calibration (2026-11-26, resnet18/34, batch 8): kiln's worst error was 2.0x PyTorch's own
// fp32 error (resnet34 layer4.2.bn2.weight after 1 SGD step); factor 4 leaves 2x margin.
struct Tolerance {
  double factor = 4.0;
  double floor_rel = 4e-6;
};

// Empty if within tolerance, else one line: "<label>: max abs err X at index i (kiln K, ref R),
// tolerance T (4 x PyTorch fp32 err E + floor F)". Shapes are compared too.
std::string compare(const std::string& label, const std::vector<float>& kiln,
                    const std::vector<int64_t>& kiln_shape, const io::NamedArray& ref,
                    double err32, const Tolerance& tol);

// Worst ratio max_abs_err / tol seen so far by compare(), for the calibration printout.
struct CompareStats {
  double worst_ratio = 0;
  std::string worst_label;
  double worst_err_over_err32 = 0;
  std::string worst_err32_label;
};
CompareStats& compare_stats();

}  // namespace kiln::test
