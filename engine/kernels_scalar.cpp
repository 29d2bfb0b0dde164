// kiln's own kernels compiled for the scalar path (flags set in engine/meson.build).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kiln/engine/kernels.h"

namespace kiln::kernels::scalar {
#define KILN_ISA_ENUM ::kiln::Isa::scalar
#include "kiln/engine/kernels_body.inc"
#undef KILN_ISA_ENUM
}  // namespace kiln::kernels::scalar
