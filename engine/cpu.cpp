// ISA detection/forcing and thread count (see engine/cpu.h).
#include "kiln/engine/cpu.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/core/error.h"

namespace kiln {

namespace {

std::atomic<int> g_forced{-1};  // -1: not forced by force_isa()

Isa env_isa() {
  static const int value = [] {
    const char* env = std::getenv("KILN_ISA");
    if (env == nullptr || *env == '\0') return -1;
    return static_cast<int>(parse_isa(env));
  }();
  return value < 0 ? Isa::avx512 : static_cast<Isa>(value);
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::scalar;
  }();
  return isa;
}

Isa active_isa() {
  int isa = static_cast<int>(detected_isa());
  int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0 && forced < isa) isa = forced;
  int env = static_cast<int>(env_isa());
  if (env < isa) isa = env;
  return static_cast<Isa>(isa);
}

void force_isa(Isa isa, bool cap_onednn) {
  g_forced.store(static_cast<int>(isa), std::memory_order_relaxed);
  if (!cap_onednn) return;
  // oneDNN accepts this only before its first primitive; later calls are ignored (its ISA can
  // still be capped by ONEDNN_MAX_CPU_ISA in the environment).
  dnnl::cpu_isa cap = isa == Isa::avx512 ? dnnl::cpu_isa::all
                      : isa == Isa::avx2 ? dnnl::cpu_isa::avx2
                                         : dnnl::cpu_isa::sse41;
  try {
    dnnl::set_max_cpu_isa(cap);
  } catch (const dnnl::error&) {
  }
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  fail("instruction set", "one of scalar, avx2, avx512", "'" + name + "'",
       "use --isa avx2 (with ONEDNN_MAX_CPU_ISA=AVX2) to run as on an AVX2-only CPU");
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

int default_num_threads() {
  if (const char* e = std::getenv("OMP_NUM_THREADS"); e && *e) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end != e && v > 0 && v <= 4096) return static_cast<int>(v);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return std::max(1, omp_get_num_procs());
  // A core is its package and core id; a CPU whose topology cannot be read counts as a core.
  std::set<std::pair<std::string, std::string>> cores;
  int unknown = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg(dir + "physical_package_id"), core(dir + "core_id");
    std::string p, c;
    if (pkg >> p && core >> c) cores.emplace(p, c);
    else ++unknown;
  }
  return std::max(1, static_cast<int>(cores.size()) + unknown);
}

void set_num_threads(int n) {
  if (n <= 0) n = default_num_threads();
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace kiln
