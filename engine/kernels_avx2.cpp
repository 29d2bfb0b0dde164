// kiln's own kernels compiled for the avx2 path (flags set in engine/meson.build).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kiln/engine/kernels.h"

namespace kiln::kernels::avx2 {
#define KILN_ISA_ENUM ::kiln::Isa::avx2
#include "kiln/engine/kernels_body.inc"
#undef KILN_ISA_ENUM
}  // namespace kiln::kernels::avx2
