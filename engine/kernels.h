// kiln's own kernels (engine-internal): one table of function pointers per instruction set.
// kernels_body.inc holds the loops once; kernels_{scalar,avx2,avx512}.cpp compile it with
// their own -m flags into separate namespaces, and table() picks one by active_isa().
// All buffers are raw fp32 storage; elementwise kernels do not care about the layout as long
// as every operand has the same one (blocked padding lanes are zero and stay zero).
#pragma once

#include <cstdint>

#include "kiln/engine/cpu.h"

namespace kiln::kernels {

struct Table {
  Isa isa;
  // g' = g + wd*p; buf = first ? g' : momentum*buf + g'; p -= lr*buf   (n floats, one pass)
  void (*sgd_update)(float* p, const float* g, float* buf, int64_t n, float lr, float momentum,
                     float weight_decay, bool first);
  // dst = a + b, or max(a + b, 0) when relu
  void (*add)(const float* a, const float* b, float* dst, int64_t n, bool relu);
  void (*relu_forward)(const float* src, float* dst, int64_t n);
  // diff_src = dst > 0 ? diff_dst : 0   (dst is the ReLU output; the kink at 0 gets 0)
  void (*relu_backward)(const float* dst, const float* diff_dst, float* diff_src, int64_t n);
  void (*accumulate)(float* dst, const float* src, int64_t n);  // dst += src
  // src, dst (rows, cols) row-major: dst = src - max - log(sum(exp(src - max)))
  void (*log_softmax_forward)(const float* src, float* dst, int64_t rows, int64_t cols);
  // diff_src = diff_dst - exp(dst) * sum(diff_dst)   per row
  void (*log_softmax_backward)(const float* dst, const float* diff_dst, float* diff_src,
                               int64_t rows, int64_t cols);
  // -mean over rows of logp[r, labels[r]] (labels already range-checked)
  double (*nll_forward)(const float* logp, const int64_t* labels, int64_t rows, int64_t cols);
  // diff_logp = 0 except diff_logp[r, labels[r]] = -scale / rows
  void (*nll_backward)(const int64_t* labels, float* diff_logp, float scale, int64_t rows,
                       int64_t cols);
};

const Table& table();            // for active_isa()
const Table& table_for(Isa isa);  // a specific path (tests force each in turn)

}  // namespace kiln::kernels
