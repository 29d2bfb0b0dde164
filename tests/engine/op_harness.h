// The op test harness, in the manner of ggml's test-backend-ops: each op is one small
// OpCase (input shapes, the kiln call, a slow obviously-right reference in double precision,
// tolerances, finite-difference step). One generic driver (check_op) checks the forward
// against the reference and every input gradient against central finite differences of the
// reference, for L = sum(out * R) with a fixed random R.
// Kink rule (relu, max-pool): a sampled component whose central difference changes when the
// step shrinks 4x straddles a kink (or a max tie) and is skipped, not compared.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/engine/tensor.h"

namespace kiln::test {

using Buf = std::vector<double>;
using Shape = std::vector<int64_t>;

struct OpCase {
  std::string name;
  std::vector<Shape> inputs;          // all inputs; the first `grad_inputs` get gradients
  size_t grad_inputs = 0;
  bool blocked_input0 = false;        // feed input 0 in the conv's blocked layout (nChw16c/8c)
  // Runs the kiln op on tensors built from the inputs.
  std::function<Tensor(const std::vector<Tensor>&)> run;
  // The reference: output (flattened C order) from the inputs.
  std::function<Buf(const std::vector<Buf>&)> reference;
  Shape out_shape;
  double fwd_tol = 1e-5;   // |kiln - ref| <= tol * (1 + max|ref|)
  double grad_tol = 1e-3;  // |kiln - fd| <= tol * (max|fd| of that input) + tol * |fd|
  double fd_step = 1e-3;
  bool kinks = false;
  std::vector<std::function<void(Buf&)>> input_init;  // optional per-input initialisers
};

// Runs one case; reports failures through doctest. seed picks the random data.
void check_op(const OpCase& c, uint64_t seed);

int64_t numel(const Shape& s);

}  // namespace kiln::test
