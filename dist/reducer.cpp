// Bucketed gradient averaging on a thread of its own (see reducer.h). The training thread fills a
// bucket and flags it ready; the reducer thread walks the buckets in index order, sums each over
// the ranks, flags it done. Each bucket's buffer is written by one thread at a time: the
// training thread until `ready`, the reducer thread until `done`, the training thread after.
#include "kiln/dist/reducer.h"

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "kiln/core/error.h"
#include "kiln/core/parse.h"

namespace kiln::dist {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

struct GradReducer::Impl {
  struct Bucket {
    std::vector<size_t> members;  // indices into params (or buffers for the last bucket)
    std::vector<int64_t> offsets;
    std::vector<float> data;
    size_t pending = 0;
    bool ready = false, done = false;
  };

  NamedTensors params, buffers;
  AllreduceFn allreduce;
  ReducerOptions opt;
  std::vector<Bucket> buckets;  // gradient buckets, then (when there are buffers) the buffers' one
  size_t grad_buckets = 0;
  std::unordered_map<const TensorImpl*, std::pair<size_t, size_t>> where;  // param -> (bucket, member)

  std::mutex mu;
  std::condition_variable cv;
  int64_t step_serial = 0;
  bool in_step = false, stop = false, broken = false, buffers_packed = false, in_collective = false;
  std::exception_ptr error;
  float weight = 1;
  ReducerStats stats;
  std::thread thread;

  void add_bucket(const NamedTensors& tensors, const std::vector<size_t>& members) {
    Bucket b;
    int64_t n = 0;
    for (size_t m : members) {
      b.members.push_back(m);
      b.offsets.push_back(n);
      n += tensors[m].second.numel();
    }
    b.data.assign(static_cast<size_t>(n), 0.0f);
    b.pending = members.size();
    buckets.push_back(std::move(b));
  }

  void pack(Bucket& b, const NamedTensors& tensors, bool grads, size_t member) {
    const Tensor& t = tensors[b.members[member]].second;
    float* dst = b.data.data() + b.offsets[member];
    (grads ? t.grad() : t).copy_to_plain(dst);
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) dst[i] *= weight;
  }

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    buckets[i].ready = true;
    cv.notify_all();
  }

  void run() {
    int64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || step_serial > seen; });
      if (stop) return;
      seen = step_serial;
      for (Bucket& b : buckets) {
        cv.wait(lk, [&] { return stop || b.ready; });
        if (stop) return;
        in_collective = true;
        lk.unlock();
        const auto t0 = Clock::now();
        std::exception_ptr failed;
        try {
          allreduce(b.data.data(), static_cast<int64_t>(b.data.size()));
        } catch (...) {
          failed = std::current_exception();
        }
        const double dt = seconds_since(t0);
        lk.lock();
        stats.comm_s += dt;
        in_collective = false;
        b.done = true;
        if (failed && !error) error = failed;
        cv.notify_all();
      }
    }
  }
};

GradReducer::GradReducer(NamedTensors params, NamedTensors buffers, AllreduceFn allreduce, ReducerOptions opt)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  KILN_ASSERT(opt.bucket_bytes > 0 && opt.timeout_s > 0, "reducer options out of range");
  m.params = std::move(params);
  m.buffers = std::move(buffers);
  m.allreduce = std::move(allreduce);
  m.opt = opt;
  // Reverse registration order: fc first, conv1 last, as backward finishes them.
  std::vector<size_t> members;
  int64_t bytes = 0;
  for (size_t k = m.params.size(); k-- > 0;) {
    members.push_back(k);
    bytes += m.params[k].second.numel() * static_cast<int64_t>(sizeof(float));
    if (bytes >= opt.bucket_bytes) {
      m.add_bucket(m.params, members);
      members.clear();
      bytes = 0;
    }
  }
  if (!members.empty()) m.add_bucket(m.params, members);
  m.grad_buckets = m.buckets.size();
  for (size_t b = 0; b < m.grad_buckets; ++b)
    for (size_t j = 0; j < m.buckets[b].members.size(); ++j)
      m.where[m.params[m.buckets[b].members[j]].second.impl()] = {b, j};
  if (!m.buffers.empty()) {
    std::vector<size_t> all(m.buffers.size());
    for (size_t k = 0; k < all.size(); ++k) all[k] = k;
    m.add_bucket(m.buffers, all);
  }
  m.thread = std::thread([this] { impl_->run(); });
}

GradReducer::~GradReducer() {
  Impl& m = *impl_;
  bool stuck = false;
  {
    std::unique_lock<std::mutex> lk(m.mu);
    m.stop = true;
    m.cv.notify_all();
    if (m.broken) stuck = !m.cv.wait_for(lk, std::chrono::seconds(5), [&] { return !m.in_collective; });
  }
  if (!stuck) {
    m.thread.join();
    return;
  }
  // A thread still inside a collective that timed out cannot be joined: it keeps its state (left
  // allocated on purpose) while the process aborts the MPI job.
  m.thread.detach();
  (void)impl_.release();
}

void GradReducer::begin_step(double weight) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  KILN_ASSERT(!m.in_step && !m.broken, "begin_step while a step is in flight or after a timeout");
  m.weight = static_cast<float>(weight);
  m.buffers_packed = false;
  m.in_step = true;
  m.step_serial++;
  m.cv.notify_all();
}

void GradReducer::grad_ready(const Tensor& param) {
  Impl& m = *impl_;
  KILN_ASSERT(m.in_step, "grad_ready outside begin_step/finish_step");
  const auto t0 = Clock::now();
  if (!m.buffers_packed) {
    // Forward is over when the first gradient is final: the running statistics are this step's.
    m.buffers_packed = true;
    if (m.buckets.size() > m.grad_buckets) {
      Impl::Bucket& b = m.buckets.back();
      for (size_t j = 0; j < b.members.size(); ++j) m.pack(b, m.buffers, false, j);
      m.mark_ready(m.buckets.size() - 1);
    }
  }
  auto it = m.where.find(param.impl());
  KILN_ASSERT(it != m.where.end(), "grad_ready for a tensor the reducer does not know");
  Impl::Bucket& b = m.buckets[it->second.first];
  m.pack(b, m.params, true, it->second.second);
  KILN_ASSERT(b.pending > 0, "parameter " + m.params[b.members[it->second.second]].first + " reported twice");
  const bool complete = --b.pending == 0;
  m.stats.copy_s += seconds_since(t0);
  if (complete) m.mark_ready(it->second.first);
}

void GradReducer::finish_step() {
  Impl& m = *impl_;
  const auto t0 = Clock::now();
  {
    std::unique_lock<std::mutex> lk(m.mu);
    KILN_ASSERT(m.in_step, "finish_step without begin_step");
    for (size_t i = 0; i < m.buckets.size(); ++i) {
      if (!m.buckets[i].ready)
        KILN_ASSERT(false, "finish_step with bucket " + std::to_string(i) + " incomplete (" +
                               std::to_string(m.buckets[i].pending) + " gradients missing)");
      const bool ok = m.cv.wait_until(lk, t0 + std::chrono::duration<double>(m.opt.timeout_s),
                                      [&] { return m.buckets[i].done; });
      if (!ok) {
        m.broken = true;
        throw Error("gradient allreduce: bucket " + std::to_string(i + 1) + " of " +
                        std::to_string(m.buckets.size()) + " did not complete within " +
                        format_double(m.opt.timeout_s) +
                        " s: another rank is stuck, has died or cannot be reached",
                    "see the other ranks' output; --dist-timeout sets this limit");
      }
    }
    if (m.error) std::rethrow_exception(m.error);
    m.stats.exposed_s += seconds_since(t0);
  }
  const auto t1 = Clock::now();
  for (Impl::Bucket& b : m.buckets) {
    const bool grads = &b - m.buckets.data() < static_cast<std::ptrdiff_t>(m.grad_buckets);
    const NamedTensors& tensors = grads ? m.params : m.buffers;
    for (size_t j = 0; j < b.members.size(); ++j) {
      Tensor t = grads ? tensors[b.members[j]].second.grad() : tensors[b.members[j]].second;
      t.copy_from_plain(b.data.data() + b.offsets[j]);
    }
    b.pending = b.members.size();
    b.ready = b.done = false;
  }
  m.stats.copy_s += seconds_since(t1);
  m.stats.steps++;
  std::lock_guard<std::mutex> lock(m.mu);
  m.in_step = false;
}

size_t GradReducer::bucket_count() const { return impl_->grad_buckets; }

std::vector<std::string> GradReducer::bucket_names(size_t i) const {
  KILN_ASSERT(i < impl_->grad_buckets, "bucket index out of range");
  std::vector<std::string> names;
  for (size_t k : impl_->buckets[i].members) names.push_back(impl_->params[k].first);
  return names;
}

const ReducerStats& GradReducer::stats() const { return impl_->stats; }

}  // namespace kiln::dist
