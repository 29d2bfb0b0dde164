// The size-keyed storage pool (see engine/storage.h).
#include "kiln/engine/storage.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "kiln/core/error.h"

namespace kiln {

namespace {

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> idle;
  size_t idle_bytes = 0;
};

// Never destroyed: Storage objects may outlive static destruction order. Idle buffers stay
// reachable from here, so leak checkers do not report them.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

size_t round_up(size_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

Storage::~Storage() {
  if (ptr == nullptr) return;
  if (!pooled) {
    std::free(ptr);
    return;
  }
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.idle.emplace(bytes, ptr);
  p.idle_bytes += bytes;
}

std::shared_ptr<Storage> alloc_storage(size_t bytes) {
  size_t size = round_up(bytes == 0 ? 64 : bytes);
  auto s = std::make_shared<Storage>();
  s->bytes = size;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.idle.find(size);
    if (it != p.idle.end()) {
      s->ptr = it->second;
      p.idle.erase(it);
      p.idle_bytes -= size;
      return s;
    }
  }
  s->ptr = std::aligned_alloc(64, size);
  KILN_ASSERT(s->ptr != nullptr, "out of memory allocating " + std::to_string(size) + " bytes");
  return s;
}

std::shared_ptr<Storage> alloc_storage_zeroed(size_t bytes) {
  auto s = alloc_storage(bytes);
  std::memset(s->ptr, 0, s->bytes);
  return s;
}

void release_pooled_storage() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& [size, ptr] : p.idle) std::free(ptr);
  p.idle.clear();
  p.idle_bytes = 0;
}

size_t pooled_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.idle_bytes;
}

}  // namespace kiln
