// The server's counters and histograms, rendered in Prometheus' text exposition format (0.0.4)
// for `GET /metrics`. Thread-safe: HTTP threads and the batch worker record concurrently.
// Durations are in seconds, as Prometheus' conventions ask.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace kiln::serve {

// A cumulative histogram with fixed upper bounds (+Inf implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "<name>_bucket{le=...} n" lines plus _sum and _count.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, non-cumulative; last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  // One finished HTTP request: path is folded into /ping, /invocations, /metrics or "other".
  void record_request(const std::string& path, int status, double seconds);
  // One forward pass of the batch worker.
  void record_batch(int64_t images, double seconds);
  void set_model_ready(bool ready) { model_ready_ = ready; }

  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (path, status) -> count
  std::atomic<uint64_t> invocation_errors_{0}, images_{0};
  std::atomic<bool> model_ready_{false};
  Histogram latency_;         // /invocations, from its headers read to its response ready
  Histogram batch_size_;      // images per forward pass
  Histogram batch_seconds_;   // time of one forward pass
};

}  // namespace kiln::serve
