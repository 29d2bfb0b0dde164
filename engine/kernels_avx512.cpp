// kiln's own kernels compiled for the avx512 path (flags set in engine/meson.build).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kiln/engine/kernels.h"

namespace kiln::kernels::avx512 {
#define KILN_ISA_ENUM ::kiln::Isa::avx512
#include "kiln/engine/kernels_body.inc"
#undef KILN_ISA_ENUM
}  // namespace kiln::kernels::avx512
