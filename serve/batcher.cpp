// The dynamic batcher (policy described in batcher.h).
#include "kiln/serve/batcher.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <future>

#include "kiln/serve/codec.h"

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

void Batcher::submit(BatchJob job, Ticket* ticket) {
  auto j = std::make_shared<Job>();
  j->job = std::move(job);
  j->arrived = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ticket && ticket->batcher_ == this) {
      ticket->batcher_ = nullptr;
      --announced_;
    }
    if (stopping_) throw HttpError(503, "server is shutting down");
    queued_images_ += j->job.n;
    queue_.push_back(std::move(j));
  }
  work_cv_.notify_one();
}

void Batcher::infer(const float* images, int64_t n, float* dst, Ticket* ticket) {
  std::promise<std::string> result;
  auto done = result.get_future();
  submit({images, n, dst, nullptr, [&result](const std::string& e) { result.set_value(e); }},
         ticket);
  const std::string error = done.get();
  if (!error.empty()) throw HttpError(500, "inference failed: " + error);
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
}

std::vector<Batcher::Slice> Batcher::take_batch() {
  std::vector<Slice> batch;
  std::vector<std::shared_ptr<Job>> unfinished;
  int64_t space = options_.max_batch;
  while (!queue_.empty() && space > 0) {
    std::shared_ptr<Job> j = std::move(queue_.front());
    queue_.pop_front();
    const int64_t take = std::min(space, j->job.n - j->next);
    batch.push_back({j, j->next, take});
    j->next += take;
    space -= take;
    queued_images_ -= take;
    if (j->next < j->job.n) unfinished.push_back(std::move(j));
  }
  // Requests with images left wait behind those queued now (round robin).
  for (auto& j : unfinished) queue_.push_back(std::move(j));
  return batch;
}

void Batcher::run(const Predictor& predict, int64_t floats_per_image, int64_t classes) {
  floats_per_image_ = floats_per_image;
  classes_ = classes;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    // Requests whose client has gone are not run.
    std::vector<std::shared_ptr<Job>> gone;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->job.cancelled && (*it)->job.cancelled->load()) {
        queued_images_ -= (*it)->job.n - (*it)->next;
        gone.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (!gone.empty()) {
      lock.unlock();
      for (auto& j : gone) j->job.done("the client closed its connection");
      gone.clear();
      lock.lock();
      continue;
    }
    if (queue_.empty()) return;  // stopping, and everything queued has been answered
    const auto deadline = queue_.front()->arrived + options_.max_wait;
    while (!stopping_ && queued_images_ < options_.max_batch && announced_ > 0 &&
           Clock::now() < deadline)
      work_cv_.wait_until(lock, deadline);
    std::vector<Slice> batch = take_batch();
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
    for (const Slice& s : batch) {
      Job& j = *s.job;
      if (!error.empty()) {
        // A failed pass fails its requests; their images still queued are dropped below.
        if (!j.failed) {
          j.failed = true;
          j.job.done(error);
        }
      } else if (s.from + s.n == j.job.n) {
        j.job.done("");
      }
    }
    lock.lock();
    if (!error.empty())
      for (auto it = queue_.begin(); it != queue_.end();) {
        if ((*it)->failed) {
          queued_images_ -= (*it)->job.n - (*it)->next;
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
  }
}

void Batcher::run_batch(const std::vector<Slice>& batch, const Predictor& predict) {
  const int64_t fpi = floats_per_image_, C = classes_;
  auto timed = [&](const float* src, int64_t n, float* dst) {
    auto t0 = Clock::now();
    predict(src, n, dst);
    if (metrics_)
      metrics_->record_batch(n, std::chrono::duration<double>(Clock::now() - t0).count());
  };
  if (batch.size() == 1) {  // one request's images: no copies
    const Slice& s = batch[0];
    timed(s.job->job.src + s.from * fpi, s.n, s.job->job.dst + s.from * C);
    return;
  }
  int64_t total = 0;
  for (const Slice& s : batch) total += s.n;
  src_buf_.resize(static_cast<size_t>(total * fpi));
  dst_buf_.resize(static_cast<size_t>(total * C));
  int64_t at = 0;
  for (const Slice& s : batch) {
    std::memcpy(src_buf_.data() + at * fpi, s.job->job.src + s.from * fpi,
                static_cast<size_t>(s.n * fpi) * sizeof(float));
    at += s.n;
  }
  timed(src_buf_.data(), total, dst_buf_.data());
  at = 0;
  for (const Slice& s : batch) {
    std::memcpy(s.job->job.dst + s.from * C, dst_buf_.data() + at * C,
                static_cast<size_t>(s.n * C) * sizeof(float));
    at += s.n;
  }
}

}  // namespace kiln::serve
