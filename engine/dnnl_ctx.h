// The oneDNN engine and stream kiln uses, a cache for reorder primitives, and the counters
// behind EngineStats (reorders inside ops, primitives created, `ref:` implementations).
// Engine-internal.
#pragma once

#include <string>

#include <oneapi/dnnl/dnnl.hpp>

namespace kiln {

dnnl::engine& cpu_engine();
dnnl::stream& cpu_stream();  // one per thread

// Records a freshly created primitive: bumps primitives_created, remembers "op: impl", and
// counts impl names starting with "ref" (the slow reference implementations).
void note_primitive(const char* op, const dnnl::primitive_desc_base& pd);
void count_reorder();  // a reorder that happened inside an op (the fast path has none)
void count_small_conv();  // a conv2d on the small-map path (engine/ops_conv.cpp)
// Runs a cached reorder primitive src -> dst (does not count; callers decide).
void run_reorder(const dnnl::memory& src, const dnnl::memory& dst);

// A byte-exact key for caches: append ints and memory descriptors.
struct CacheKey {
  std::string bytes;
  CacheKey& add(int64_t v);
  CacheKey& add(const dnnl::memory::desc& md);
};

}  // namespace kiln
