// Dynamic batching: request threads hand their images to one worker thread, which owns the model
// and runs what is queued as one forward pass of at most max_batch images. The worker never waits
// when nothing else is on its way, so a lone request pays no batching delay; it waits (at most
// max_wait after the oldest queued request arrived) only while other requests are still being
// decoded and the batch is not full. Large requests are interleaved with small ones: each pass
// takes images from the queued requests in turn, and a request with images left goes to the back
// of the queue, so a request of 2048 images delays one that arrives after it by one forward pass
// at most. A request whose client has gone is dropped from the queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/serve/metrics.h"

namespace kiln::serve {

// images (n,3,S,S) normalized fp32 -> log_probs (n,classes). Called on the worker thread only.
using Predictor = std::function<void(const float* images, int64_t n, float* log_probs)>;

struct BatcherOptions {
  int64_t max_batch = 16;
  std::chrono::microseconds max_wait{2000};
};

// One request's images. src and dst must stay valid until done() has been called.
struct BatchJob {
  const float* src = nullptr;  // (n,3,S,S)
  int64_t n = 0;
  float* dst = nullptr;  // (n,classes)
  std::shared_ptr<const std::atomic<bool>> cancelled;  // optional: the client has gone
  // Called once on the worker thread when every image is done ("" ) or the job failed (why):
  // keep it short (hand the answer to another thread).
  std::function<void(const std::string& error)> done;
};

class Batcher {
 public:
  Batcher(BatcherOptions options, Metrics* metrics);

  // A request that will soon call submit(): while any is outstanding, the worker may wait (up to
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

  // Queues a job (and uses up the ticket). Throws HttpError 503 if the batcher has stopped.
  void submit(BatchJob job, Ticket* ticket = nullptr);
  // submit() and wait: throws HttpError 500 if the predictor threw, 503 if stopped.
  void infer(const float* images, int64_t n, float* dst, Ticket* ticket = nullptr);

  // The worker's loop: serves batches until stop() was called and the queue is empty.
  void run(const Predictor& predict, int64_t floats_per_image, int64_t classes);
  void stop();

 private:
  struct Job {
    BatchJob job;
    int64_t next = 0;  // images handed to a forward pass so far
    bool failed = false;
    std::chrono::steady_clock::time_point arrived;
  };
  struct Slice {  // images [from, from + n) of one job in the current pass
    std::shared_ptr<Job> job;
    int64_t from, n;
  };
  void withdraw();
  std::vector<Slice> take_batch();  // with mu_ held
  void run_batch(const std::vector<Slice>& batch, const Predictor& predict);

  BatcherOptions options_;
  Metrics* metrics_;
  int64_t floats_per_image_ = 0, classes_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  int64_t queued_images_ = 0;  // not yet handed to a forward pass
  int64_t announced_ = 0;      // tickets not yet turned into jobs
  bool stopping_ = false;
  std::vector<float> src_buf_, dst_buf_;  // worker only
};

}  // namespace kiln::serve
