// 64-byte aligned fp32 storage from a pool keyed by byte size. A released Storage goes back
// to the pool, so the activations and gradients of one training step are served, at the next
// step, from the buffers of the previous one: no malloc/page faults in the steady state.
#pragma once

#include <cstddef>
#include <memory>

namespace kiln {

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  bool pooled = true;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};

std::shared_ptr<Storage> alloc_storage(size_t bytes);         // uninitialised, pooled
std::shared_ptr<Storage> alloc_storage_zeroed(size_t bytes);  // zero-filled
void release_pooled_storage();  // frees the pool's idle buffers (tests, memory pressure)
size_t pooled_bytes();          // idle bytes held by the pool

}  // namespace kiln
