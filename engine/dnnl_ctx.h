// The oneDNN engine and stream kiln uses, a cache for reorder primitives, and the counters
// behind EngineStats (reorders inside ops, primitives created, `ref:` implementations).
// Engine-internal.
#pragma once

#include <map>
#include <memory>
#include <mutex>
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

// The one way ops cache what they build per shape (their oneDNN primitives, the small-map
// conv plan): get() returns the entry for this key, built by make() on first use. Thread-safe;
// entries live as long as the process (a static cache is created with `new` and never freed, so
// no destructor order matters). What an entry builds later (its backward primitives, on the
// first backward) goes under a std::once_flag of the entry: std::call_once(p.bwd_once, ...).
template <class T>
class ShapeCache {
 public:
  template <class Make>
  std::shared_ptr<T> get(const CacheKey& key, Make&& make) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key.bytes);
    if (it != map_.end()) return it->second;
    std::shared_ptr<T> p = make();
    map_.emplace(key.bytes, p);
    return p;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<T>> map_;
};

}  // namespace kiln
