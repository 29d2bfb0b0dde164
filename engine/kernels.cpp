// Chooses the kernel table for the active instruction set (see engine/kernels.h).
#include "kiln/engine/kernels.h"

namespace kiln::kernels {
namespace scalar { const Table& get_table(); }
namespace avx2 { const Table& get_table(); }
namespace avx512 { const Table& get_table(); }

const Table& table_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return avx512::get_table();
    case Isa::avx2: return avx2::get_table();
    case Isa::scalar: break;
  }
  return scalar::get_table();
}

const Table& table() { return table_for(active_isa()); }

}  // namespace kiln::kernels
