// oneDNN engine/stream, reorder cache and engine counters (see engine/dnnl_ctx.h).
#include "kiln/engine/dnnl_ctx.h"

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "kiln/engine/tensor.h"

namespace kiln {

namespace {

struct Stats {
  std::atomic<int64_t> reorders{0}, created{0}, refs{0}, small_convs{0};
  std::mutex mu;
  std::vector<std::string> impls;
};
Stats& stats() {
  static Stats* s = new Stats;
  return *s;
}

}  // namespace

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& cpu_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}

void note_primitive(const char* op, const dnnl::primitive_desc_base& pd) {
  Stats& s = stats();
  std::string impl = pd.impl_info_str();
  s.created++;
  if (impl.rfind("ref", 0) == 0) s.refs++;
  std::lock_guard<std::mutex> lock(s.mu);
  s.impls.push_back(std::string(op) + ": " + impl);
}

void count_reorder() { stats().reorders++; }
void count_small_conv() { stats().small_convs++; }

void run_reorder(const dnnl::memory& src, const dnnl::memory& dst) {
  static auto* cache = new ShapeCache<dnnl::reorder>;
  CacheKey key;
  key.add(src.get_desc()).add(dst.get_desc());
  std::shared_ptr<dnnl::reorder> prim = cache->get(key, [&] {
    dnnl::reorder::primitive_desc pd(src, dst);
    note_primitive("reorder", pd);
    return std::make_shared<dnnl::reorder>(pd);
  });
  prim->execute(cpu_stream(), const_cast<dnnl::memory&>(src), const_cast<dnnl::memory&>(dst));
  cpu_stream().wait();
}

CacheKey& CacheKey::add(int64_t v) {
  bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  return *this;
}

CacheKey& CacheKey::add(const dnnl::memory::desc& md) {
  bytes.append(reinterpret_cast<const char*>(&md.data), sizeof md.data);
  return *this;
}

EngineStats engine_stats() {
  Stats& s = stats();
  return {s.reorders.load(), s.created.load(), s.refs.load(), s.small_convs.load()};
}

void reset_engine_stats() {
  Stats& s = stats();
  s.reorders = 0;
  s.created = 0;
  s.small_convs = 0;
  s.refs = 0;  // impl names are kept: primitives are cached and never noted twice
}

std::vector<std::string> primitive_impl_names() {
  Stats& s = stats();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.impls;
}

}  // namespace kiln
