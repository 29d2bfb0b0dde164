// Dynamic batching: request threads hand their images to one worker thread, which owns the model
// and runs whatever is queued as one forward pass (at most max_batch images). The worker never
// waits when nothing else is on its way, so a lone request pays no batching delay; it waits (at
// most max_wait after the oldest queued request arrived) only while other requests are still
// being decoded and the batch is not full. A request larger than max_batch runs alone, in chunks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "serve/metrics.h"

namespace kiln::serve {

// images (n,3,S,S) normalized fp32 -> log_probs (n,classes). Called on the worker thread only.
using Predictor = std::function<void(const float* images, int64_t n, float* log_probs)>;

struct BatcherOptions {
  int64_t max_batch = 16;
  std::chrono::microseconds max_wait{2000};
};

class Batcher {
 public:
  Batcher(BatcherOptions options, Metrics* metrics);

  // A request that will soon call infer(): while any is outstanding, the worker may wait (up to
  // max_wait) to put it into the same batch. Destroying an unused ticket withdraws it.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    Ticket& operator=(Ticket&&) = delete;
    ~Ticket();

   private:
    friend class Batcher;
    explicit Ticket(Batcher* b) : batcher_(b) {}
    Batcher* batcher_;
  };
  Ticket announce();

  // Blocks until the worker has written the n images' log-probs (n*classes floats) to dst.
  // Throws HttpError 500 if the predictor threw, 503 if the batcher has stopped.
  void infer(const float* images, int64_t n, float* dst, Ticket* ticket = nullptr);

  // The worker's loop: serves batches until stop() was called and the queue is empty.
  void run(const Predictor& predict, int64_t floats_per_image, int64_t classes);
  void stop();

 private:
  struct Job {
    const float* src;
    int64_t n;
    float* dst;
    std::chrono::steady_clock::time_point arrived;
    bool done = false;
    std::string error;
  };
  void withdraw();
  void run_batch(const std::vector<Job*>& batch, const Predictor& predict);

  BatcherOptions options_;
  Metrics* metrics_;
  int64_t floats_per_image_ = 0, classes_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Job*> queue_;
  int64_t queued_images_ = 0;
  int64_t announced_ = 0;  // tickets not yet turned into jobs
  bool stopping_ = false;
  std::vector<float> src_buf_, dst_buf_;  // worker only
};

}  // namespace kiln::serve
