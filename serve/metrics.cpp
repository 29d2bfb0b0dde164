// Prometheus text format for the server's metrics (see metrics.h).
#include "kiln/serve/metrics.h"

#include <cstdio>

namespace kiln::serve {

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s;
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    s += name + "_bucket{le=\"" + (i < bounds_.size() ? num(bounds_[i]) : "+Inf") + "\"} " +
         std::to_string(cumulative) + "\n";
  }
  s += name + "_sum " + num(sum_) + "\n";
  s += name + "_count " + std::to_string(count_) + "\n";
  return s;
}

Metrics::Metrics()
    : latency_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512}),
      batch_seconds_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}) {}

void Metrics::record_request(const std::string& path, int status, double seconds) {
  std::string p = path == "/ping" || path == "/invocations" || path == "/metrics" ? path : "other";
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_[{p, status}];
  }
  if (p == "/invocations") {
    latency_.observe(seconds);
    if (status >= 400) ++invocation_errors_;
  }
}

void Metrics::record_batch(int64_t images, double seconds) {
  images_ += static_cast<uint64_t>(images);
  batch_size_.observe(static_cast<double>(images));
  batch_seconds_.observe(seconds);
}

std::string Metrics::render() const {
  std::string s;
  s += "# HELP kiln_http_requests_total HTTP requests answered, by path and status code.\n";
  s += "# TYPE kiln_http_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, n] : requests_)
      s += "kiln_http_requests_total{path=\"" + key.first + "\",code=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  s += "# HELP kiln_invocation_errors_total /invocations requests answered with a 4xx or 5xx status.\n";
  s += "# TYPE kiln_invocation_errors_total counter\n";
  s += "kiln_invocation_errors_total " + std::to_string(invocation_errors_.load()) + "\n";
  s += "# HELP kiln_images_total Images run through the model.\n";
  s += "# TYPE kiln_images_total counter\n";
  s += "kiln_images_total " + std::to_string(images_.load()) + "\n";
  s += "# HELP kiln_model_ready 1 once the model is loaded and /ping answers 200.\n";
  s += "# TYPE kiln_model_ready gauge\n";
  s += std::string("kiln_model_ready ") + (model_ready_ ? "1" : "0") + "\n";
  s += "# HELP kiln_request_duration_seconds /invocations latency, request headers read to response ready.\n";
  s += "# TYPE kiln_request_duration_seconds histogram\n";
  s += latency_.render("kiln_request_duration_seconds");
  s += "# HELP kiln_batch_size Images per forward pass of the dynamic batcher.\n";
  s += "# TYPE kiln_batch_size histogram\n";
  s += batch_size_.render("kiln_batch_size");
  s += "# HELP kiln_batch_duration_seconds Time of one forward pass.\n";
  s += "# TYPE kiln_batch_duration_seconds histogram\n";
  s += batch_seconds_.render("kiln_batch_duration_seconds");
  return s;
}

}  // namespace kiln::serve
