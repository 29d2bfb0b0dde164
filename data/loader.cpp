// The threaded prefetching loader (see loader.h). Batches are numbered globally
// (g = epoch * batches_per_epoch + index); batch g is built into ring slot g % slots by whichever
// worker claims it, and handed out strictly in order, so the worker count never changes a byte.
#include "kiln/data/loader.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "kiln/core/error.h"
#include "kiln/data/rng.h"

namespace kiln::data {

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

template <class T>
std::unique_ptr<T[], FreeDeleter> aligned_array(int64_t count) {
  size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T);
  bytes = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

enum class SlotState { free, filling, ready, in_use };

struct Slot {
  std::unique_ptr<float[], FreeDeleter> images;
  std::unique_ptr<int64_t[], FreeDeleter> labels;
  int64_t g = -1, n = 0;
  SlotState state = SlotState::free;
};

}  // namespace

struct Loader::Impl {
  const Dataset& ds;
  std::vector<int64_t> indices;
  LoaderConfig cfg;
  Normalizer normalizer;
  int64_t bpe = 0;

  // Consumer position.
  int64_t epoch = 0, position = 0;
  int in_use = -1;  // slot handed out by the last next()

  std::vector<Slot> slots;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv_work, cv_ready;
  int64_t claim_g = 0;
  bool stop = false;
  std::exception_ptr error;
  LoaderStats stats;

  mutable std::mutex perm_mu;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> perms;

  Impl(const Dataset& d, std::vector<int64_t> idx, LoaderConfig c)
      : ds(d), indices(std::move(idx)), cfg(c), normalizer(c.norm) {}

  int64_t shard_capacity() const { return (cfg.batch_size + cfg.shard_count - 1) / cfg.shard_count; }

  std::shared_ptr<const std::vector<int64_t>> order(int64_t e) const {
    std::lock_guard<std::mutex> lock(perm_mu);
    auto it = perms.find(e);
    if (it != perms.end()) return it->second;
    auto v = std::make_shared<std::vector<int64_t>>(indices);
    if (cfg.shuffle) {
      Rng rng(mix_seed(cfg.seed, 0x73687566ull /* "shuf" */, static_cast<uint64_t>(e)));
      for (int64_t i = static_cast<int64_t>(v->size()) - 1; i > 0; --i)
        std::swap((*v)[static_cast<size_t>(i)], (*v)[rng.below(static_cast<uint64_t>(i + 1))]);
    }
    perms[e] = v;
    while (perms.size() > 3) perms.erase(perms.begin());  // workers run at most an epoch ahead
    return v;
  }

  int64_t fill(int64_t e, int64_t index, float* images, int64_t* labels) const {
    KILN_ASSERT(index >= 0 && index < bpe, "batch index out of range");
    const auto ord = order(e);
    const int64_t n_total = static_cast<int64_t>(ord->size());
    const int64_t batch_begin = index * cfg.batch_size;
    const int64_t batch_len = std::min(n_total, batch_begin + cfg.batch_size) - batch_begin;
    const int64_t share = batch_len / cfg.shard_count, extra = batch_len % cfg.shard_count;
    const int64_t begin = batch_begin + cfg.shard_rank * share + std::min(cfg.shard_rank, extra);
    const int64_t end = begin + share + (cfg.shard_rank < extra ? 1 : 0);
    alignas(64) uint8_t tmp[kImageBytes];
    for (int64_t k = begin; k < end; ++k) {
      const int64_t rec = (*ord)[static_cast<size_t>(k)];
      const uint8_t* src = ds.image(rec);
      float* dst = images + (k - begin) * kImageBytes;
      if (cfg.augment) {
        // The sample's randomness depends on (seed, epoch, record) only.
        Rng rng(mix_seed(cfg.seed, 0x61756721ull /* "aug!" */, static_cast<uint64_t>(e),
                         static_cast<uint64_t>(rec)));
        augment(src, draw_augment(rng), tmp);
        normalizer.apply(tmp, dst);
      } else {
        normalizer.apply(src, dst);
      }
      labels[k - begin] = ds.labels[static_cast<size_t>(rec)];
    }
    return end - begin;
  }

  void worker_loop() {
    for (;;) {
      int64_t g;
      Slot* slot;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv_work.wait(lock, [&] {
          return stop || slots[static_cast<size_t>(claim_g % static_cast<int64_t>(slots.size()))].state ==
                             SlotState::free;
        });
        if (stop) return;
        g = claim_g++;
        slot = &slots[static_cast<size_t>(g % static_cast<int64_t>(slots.size()))];
        slot->state = SlotState::filling;
        slot->g = g;
      }
      int64_t n = 0;
      std::exception_ptr err;
      try {
        n = fill(g / bpe, g % bpe, slot->images.get(), slot->labels.get());
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        slot->n = n;
        slot->state = SlotState::ready;
        if (err && !error) error = err;
      }
      cv_ready.notify_all();
    }
  }

  void start() {
    stop = false;
    in_use = -1;
    claim_g = epoch * bpe + position;
    for (auto& s : slots) {
      s.state = SlotState::free;
      s.g = -1;
    }
    if (bpe == 0) return;
    for (int i = 0; i < cfg.workers; ++i) workers.emplace_back([this] { worker_loop(); });
  }

  void halt() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv_work.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
  }
};

Loader::Loader(const Dataset& ds, std::vector<int64_t> indices, LoaderConfig cfg) {
  if (cfg.batch_size < 1) fail("--batch-size", "at least 1", std::to_string(cfg.batch_size));
  if (cfg.workers < 0) fail("loader workers", "0 or more", std::to_string(cfg.workers));
  cfg.prefetch = std::max(cfg.prefetch, 1);
  if (cfg.shard_count < 1 || cfg.shard_rank < 0 || cfg.shard_rank >= cfg.shard_count)
    fail("loader shard", "rank in [0, count) and count >= 1",
         "rank " + std::to_string(cfg.shard_rank) + " of " + std::to_string(cfg.shard_count));
  for (int64_t i : indices)
    KILN_ASSERT(i >= 0 && i < ds.size(), "loader index " + std::to_string(i) + " outside the dataset");
  impl_ = std::make_unique<Impl>(ds, std::move(indices), cfg);
  const auto n = static_cast<int64_t>(impl_->indices.size());
  impl_->bpe = cfg.drop_last ? n / cfg.batch_size : (n + cfg.batch_size - 1) / cfg.batch_size;
  // The consumer holds one slot while workers fill `prefetch` others.
  const int nslots = cfg.workers == 0 ? 1 : cfg.prefetch + 1;
  impl_->slots.resize(static_cast<size_t>(nslots));
  for (auto& s : impl_->slots) {
    s.images = aligned_array<float>(impl_->shard_capacity() * kImageBytes);
    s.labels = aligned_array<int64_t>(impl_->shard_capacity());
  }
  impl_->start();
}

Loader::~Loader() { impl_->halt(); }

bool Loader::next(Batch& out) {
  Impl& m = *impl_;
  const auto nslots = static_cast<int64_t>(m.slots.size());
  if (m.position >= m.bpe) {
    ++m.epoch;
    m.position = 0;
    out = Batch{};
    return false;
  }
  const int64_t g = m.epoch * m.bpe + m.position;
  Slot& slot = m.slots[static_cast<size_t>(g % nslots)];
  if (m.cfg.workers == 0) {
    slot.n = m.fill(m.epoch, m.position, slot.images.get(), slot.labels.get());
    slot.g = g;
  } else {
    std::unique_lock<std::mutex> lock(m.mu);
    if (m.in_use >= 0) {
      m.slots[static_cast<size_t>(m.in_use)].state = SlotState::free;
      m.in_use = -1;
      m.cv_work.notify_all();
    }
    auto ready = [&] { return m.error || (slot.g == g && slot.state == SlotState::ready); };
    if (!ready()) {
      const auto t0 = std::chrono::steady_clock::now();
      m.cv_ready.wait(lock, ready);
      ++m.stats.waited;
      m.stats.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (m.error) std::rethrow_exception(m.error);
    slot.state = SlotState::in_use;
    m.in_use = static_cast<int>(g % nslots);
  }
  ++m.stats.batches;
  out.images = slot.images.get();
  out.labels = slot.labels.get();
  out.n = slot.n;
  out.epoch = m.epoch;
  out.index = m.position;
  ++m.position;
  return true;
}

int64_t Loader::batches_per_epoch() const { return impl_->bpe; }
int64_t Loader::size() const { return static_cast<int64_t>(impl_->indices.size()); }
int64_t Loader::shard_capacity() const { return impl_->shard_capacity(); }
const LoaderConfig& Loader::config() const { return impl_->cfg; }

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

LoaderState Loader::state() const { return {impl_->epoch, impl_->position, impl_->cfg.seed}; }

void Loader::restore(const LoaderState& s) {
  if (s.epoch < 0 || s.position < 0 || s.position > impl_->bpe)
    fail("loader state", "epoch >= 0 and position in [0, " + std::to_string(impl_->bpe) + "]",
         "epoch " + std::to_string(s.epoch) + ", position " + std::to_string(s.position),
         "the checkpoint was written with a different dataset size or batch size");
  if (s.epoch == impl_->epoch && s.position == impl_->position && s.seed == impl_->cfg.seed)
    return;  // already there: keep the batches prefetched so far
  impl_->halt();
  impl_->epoch = s.epoch;
  impl_->position = s.position;
  impl_->error = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->perm_mu);
    if (impl_->cfg.seed != s.seed) impl_->perms.clear();
    impl_->cfg.seed = s.seed;
  }
  impl_->start();
}

int64_t Loader::fill(int64_t epoch, int64_t index, float* images, int64_t* labels) const {
  return impl_->fill(epoch, index, images, labels);
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const { return *impl_->order(epoch); }

}  // namespace kiln::data
