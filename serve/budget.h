// A byte budget for what requests make the server hold at once: buffered bodies, decoded pixels,
// parsed values, images waiting for the model. A reservation that does not fit is refused, and the
// server answers 503 with Retry-After (backpressure) instead of queueing without bound.
// Thread-safe; a Reservation gives its bytes back when destroyed.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>

#include "kiln/serve/codec.h"

namespace kiln::serve {

class MemoryBudget {
 public:
  explicit MemoryBudget(size_t limit) : limit_(limit) {}
  bool try_reserve(size_t bytes) {
    size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ || used > limit_ - bytes) return false;
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return true;
  }
  void release(size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
  size_t in_use() const { return used_.load(std::memory_order_relaxed); }
  size_t limit() const { return limit_; }

 private:
  const size_t limit_;
  std::atomic<size_t> used_{0};
};

// Bytes held from a budget for one request (no budget: every reservation succeeds).
class Reservation {
 public:
  explicit Reservation(MemoryBudget* budget = nullptr) : budget_(budget) {}
  Reservation(Reservation&& o) noexcept : budget_(o.budget_), bytes_(std::exchange(o.bytes_, 0)) {}
  Reservation& operator=(Reservation&& o) noexcept {
    if (this != &o) {
      release();
      budget_ = o.budget_;
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { release(); }

  bool try_add(size_t bytes) {
    if (budget_ && !budget_->try_reserve(bytes)) return false;
    bytes_ += bytes;
    return true;
  }
  // Throws HttpError 503 (the server adds Retry-After) when the budget has no room.
  void add(size_t bytes, const std::string& what) {
    if (!try_add(bytes))
      throw HttpError(503, "server busy: " + what + " needs " + std::to_string(bytes >> 10) +
                               " KiB and the memory budget for requests in flight (" +
                               std::to_string(budget_->limit() >> 20) +
                               " MiB) is spent; retry later");
  }
  void release() {
    if (budget_ && bytes_) budget_->release(bytes_);
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }

 private:
  MemoryBudget* budget_;
  size_t bytes_ = 0;
};

}  // namespace kiln::serve
