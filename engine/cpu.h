// Run-time instruction-set dispatch for kiln's own kernels, and the thread count.
// One binary runs everywhere: kernels are compiled per ISA (scalar, AVX2+FMA, AVX-512) in
// separate files and chosen here. KILN_ISA=scalar|avx2|avx512 or force_isa() caps the choice.
// oneDNN's own ISA is capped separately by ONEDNN_MAX_CPU_ISA; force_isa() also calls
// dnnl::set_max_cpu_isa when it is called before the first oneDNN primitive is created.
#pragma once

#include <string>

namespace kiln {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

Isa detected_isa();                 // what the CPU supports
Isa active_isa();                   // min(detected, forced); the KILN_ISA env var forces too
// The --isa option of kiln commands calls this. cap_onednn also caps oneDNN's ISA
// (dnnl::set_max_cpu_isa), which only works before the first primitive is created.
void force_isa(Isa isa, bool cap_onednn = true);
Isa parse_isa(const std::string& name);  // "scalar"|"avx2"|"avx512"; throws kiln::Error otherwise
const char* isa_name(Isa isa);

// OpenMP threads for kiln and oneDNN. 0 = the default: $OMP_NUM_THREADS when set, else one
// thread per physical core the process may run on (its sched_getaffinity mask; hyperthread
// siblings count once, as PyTorch's default does: two FMA streams on one core only share its
// units). The kiln program applies the default at start.
void set_num_threads(int n);
int num_threads();
int default_num_threads();

}  // namespace kiln
