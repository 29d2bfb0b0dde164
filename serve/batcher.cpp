// The dynamic batcher (policy described in batcher.h).
#include "serve/batcher.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include "serve/codec.h"

namespace kiln::serve {

using Clock = std::chrono::steady_clock;

Batcher::Batcher(BatcherOptions options, Metrics* metrics)
    : options_(options), metrics_(metrics) {
  options_.max_batch = std::max<int64_t>(1, options_.max_batch);
}

Batcher::Ticket::Ticket(Ticket&& other) noexcept : batcher_(other.batcher_) {
  other.batcher_ = nullptr;
}

Batcher::Ticket::~Ticket() {
  if (batcher_) batcher_->withdraw();
}

Batcher::Ticket Batcher::announce() {
  std::lock_guard<std::mutex> lock(mu_);
  ++announced_;
  return Ticket(this);
}

void Batcher::withdraw() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --announced_;
  }
  work_cv_.notify_one();  // the worker may be waiting for this request: it will not come
}

void Batcher::infer(const float* images, int64_t n, float* dst, Ticket* ticket) {
  Job job{images, n, dst, Clock::now(), false, {}};
  std::unique_lock<std::mutex> lock(mu_);
  if (ticket && ticket->batcher_ == this) {
    ticket->batcher_ = nullptr;
    --announced_;
  }
  if (stopping_) throw HttpError(503, "server is shutting down");
  queue_.push_back(&job);
  queued_images_ += n;
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return job.done; });
  if (!job.error.empty()) throw HttpError(500, "inference failed: " + job.error);
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
}

void Batcher::run(const Predictor& predict, int64_t floats_per_image, int64_t classes) {
  floats_per_image_ = floats_per_image;
  classes_ = classes;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping, and everything queued has been answered
    const auto deadline = queue_.front()->arrived + options_.max_wait;
    while (!stopping_ && queued_images_ < options_.max_batch && announced_ > 0 &&
           Clock::now() < deadline)
      work_cv_.wait_until(lock, deadline);
    std::vector<Job*> batch;
    int64_t total = 0;
    while (!queue_.empty() &&
           (batch.empty() || total + queue_.front()->n <= options_.max_batch)) {
      total += queue_.front()->n;
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    queued_images_ -= total;
    lock.unlock();
    std::string error;
    try {
      run_batch(batch, predict);
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    } catch (...) {
      error = "unknown error";
    }
    lock.lock();
    for (Job* j : batch) {
      j->error = error;
      j->done = true;
    }
    done_cv_.notify_all();
  }
}

void Batcher::run_batch(const std::vector<Job*>& batch, const Predictor& predict) {
  const int64_t fpi = floats_per_image_, C = classes_;
  auto timed = [&](const float* src, int64_t n, float* dst) {
    auto t0 = Clock::now();
    predict(src, n, dst);
    if (metrics_)
      metrics_->record_batch(n, std::chrono::duration<double>(Clock::now() - t0).count());
  };
  if (batch.size() == 1) {
    // One request: its own buffers, in chunks of max_batch if it is larger.
    const Job& j = *batch[0];
    for (int64_t i = 0; i < j.n; i += options_.max_batch) {
      int64_t m = std::min(options_.max_batch, j.n - i);
      timed(j.src + i * fpi, m, j.dst + i * C);
    }
    return;
  }
  int64_t total = 0;
  for (const Job* j : batch) total += j->n;
  src_buf_.resize(static_cast<size_t>(total * fpi));
  dst_buf_.resize(static_cast<size_t>(total * C));
  int64_t at = 0;
  for (const Job* j : batch) {
    std::memcpy(src_buf_.data() + at * fpi, j->src, static_cast<size_t>(j->n * fpi) * sizeof(float));
    at += j->n;
  }
  timed(src_buf_.data(), total, dst_buf_.data());
  at = 0;
  for (Job* j : batch) {
    std::memcpy(j->dst, dst_buf_.data() + at * C, static_cast<size_t>(j->n * C) * sizeof(float));
    at += j->n;
  }
}

}  // namespace kiln::serve
