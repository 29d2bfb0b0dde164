// The split and the threaded loader: file order with --no-shuffle --no-augment --val-size 0,
// determinism for any worker count, save/restore of LoaderState mid-epoch, epoch boundaries.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <chrono>
#include <set>
#include <thread>

#include "kiln/core/error.h"
#include "kiln/data/loader.h"
#include "kiln/data/split.h"
#include "kiln/data/synth.h"

using namespace kiln::data;

namespace {

Dataset small_dataset(int64_t n, int64_t classes = 10) {
  Dataset ds;
  ds.source = "memory";
  for (int64_t c = 0; c < classes; ++c) ds.class_names.push_back("c" + std::to_string(c));
  ds.images.resize(static_cast<size_t>(n * kImageBytes));
  ds.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ds.labels[static_cast<size_t>(i)] = i % classes;
    draw_synthetic(i % classes, classes, static_cast<uint64_t>(i) * 977, ds.images.data() + i * kImageBytes);
  }
  return ds;
}

struct Taken {
  std::vector<float> images;
  std::vector<int64_t> labels;
  std::vector<int64_t> sizes;
};

// Takes `batches` batches (crossing epoch ends) and records everything.
void take(Loader& l, int64_t batches, Taken& t) {
  Batch b;
  while (batches > 0) {
    if (!l.next(b)) continue;
    t.images.insert(t.images.end(), b.images, b.images + b.n * kImageBytes);
    t.labels.insert(t.labels.end(), b.labels, b.labels + b.n);
    t.sizes.push_back(b.n);
    --batches;
  }
}

}  // namespace

TEST_CASE("split is a deterministic partition with val_size records held out") {
  const SplitIndices s = split(50000, 5000, 42);
  CHECK(s.train.size() == 45000);
  CHECK(s.val.size() == 5000);
  std::vector<int64_t> all = s.train;
  all.insert(all.end(), s.val.begin(), s.val.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 50000; ++i) REQUIRE(all[static_cast<size_t>(i)] == i);
  CHECK(split(50000, 5000, 42).val == s.val);
  CHECK(split(50000, 5000, 43).val != s.val);
  const SplitIndices none = split(100, 0, 1);
  CHECK(none.val.empty());
  for (int64_t i = 0; i < 100; ++i) CHECK(none.train[static_cast<size_t>(i)] == i);
  CHECK_THROWS_AS(split(10, 11, 0), kiln::Error);
  CHECK_THROWS_AS(split(10, -1, 0), kiln::Error);
}

TEST_CASE("no shuffle, no augment: batch k holds records k*B..(k+1)*B-1 in file order, normalized") {
  const Dataset ds = small_dataset(70);
  std::vector<int64_t> idx(70);
  for (int64_t i = 0; i < 70; ++i) idx[static_cast<size_t>(i)] = i;
  Loader l(ds, idx, {.batch_size = 16, .shuffle = false, .augment = false, .seed = 5, .workers = 2});
  CHECK(l.batches_per_epoch() == 5);
  Normalizer norm;
  std::vector<float> want(kImageBytes);
  Batch b;
  for (int64_t k = 0; k < 5; ++k) {
    REQUIRE(l.next(b));
    CHECK(b.index == k);
    CHECK(b.n == (k < 4 ? 16 : 6));  // the last batch is short, as PyTorch's drop_last=False
    CHECK(reinterpret_cast<uintptr_t>(b.images) % 64 == 0);
    for (int64_t j = 0; j < b.n; ++j) {
      const int64_t rec = k * 16 + j;
      CHECK(b.labels[j] == ds.labels[static_cast<size_t>(rec)]);
      norm.apply(ds.image(rec), want.data());
      REQUIRE(std::memcmp(b.images + j * kImageBytes, want.data(), kImageBytes * sizeof(float)) == 0);
    }
  }
  CHECK_FALSE(l.next(b));
  CHECK(l.state().epoch == 1);
  CHECK(l.state().position == 0);
  REQUIRE(l.next(b));
  CHECK(b.epoch == 1);
  CHECK(b.labels[0] == ds.labels[0]);

  Loader d(ds, idx, {.batch_size = 16, .drop_last = true, .workers = 1});
  CHECK(d.batches_per_epoch() == 4);
}

TEST_CASE("batches are the same bytes for 0, 1 and 3 workers, across epochs") {
  const Dataset ds = small_dataset(90);
  const SplitIndices s = split(90, 10, 3);
  Taken t0, t1, t3;
  LoaderConfig cfg{.batch_size = 12, .seed = 99};
  cfg.workers = 0;
  Loader l0(ds, s.train, cfg);
  take(l0, 17, t0);  // 7 batches per epoch: crosses two epoch ends
  cfg.workers = 1;
  Loader l1(ds, s.train, cfg);
  take(l1, 17, t1);
  cfg.workers = 3;
  cfg.prefetch = 2;
  Loader l3(ds, s.train, cfg);
  take(l3, 17, t3);
  CHECK(t0.labels == t1.labels);
  CHECK(t0.labels == t3.labels);
  CHECK(t0.images == t1.images);
  CHECK(t0.images == t3.images);
  // Shuffled: each epoch visits every training record once, in a new order.
  const auto e0 = l0.epoch_order(0), e1 = l0.epoch_order(1);
  CHECK(e0 != e1);
  CHECK(std::set<int64_t>(e0.begin(), e0.end()) == std::set<int64_t>(s.train.begin(), s.train.end()));
  // Augmented: not equal to the plain test transform.
  std::vector<float> plain(kImageBytes);
  Normalizer().apply(ds.image(e0[0]), plain.data());
  CHECK(std::memcmp(t0.images.data(), plain.data(), kImageBytes * sizeof(float)) != 0);
  // Another seed, other batches.
  cfg.seed = 100;
  Loader lx(ds, s.train, cfg);
  Taken tx;
  take(lx, 2, tx);
  CHECK(std::vector<float>(t0.images.begin(), t0.images.begin() + 100) !=
        std::vector<float>(tx.images.begin(), tx.images.begin() + 100));
}

TEST_CASE("a restored LoaderState continues exactly where the saved one stopped") {
  const Dataset ds = small_dataset(50);
  const SplitIndices s = split(50, 0, 0);
  const LoaderConfig cfg{.batch_size = 8, .seed = 7, .workers = 2};
  Loader full(ds, s.train, cfg);
  Taken all;
  take(full, 20, all);  // 7 batches per epoch

  Loader first(ds, s.train, cfg);
  Taken part;
  take(first, 9, part);  // into epoch 1, position 2
  const LoaderState st = first.state();
  CHECK(st.epoch == 1);
  CHECK(st.position == 2);
  CHECK(st.seed == 7);

  LoaderConfig other = cfg;
  other.seed = 12345;  // the state's seed wins
  other.workers = 3;
  Loader resumed(ds, s.train, other);
  resumed.restore(st);
  take(resumed, 11, part);
  CHECK(part.labels == all.labels);
  CHECK(part.images == all.images);

  // Restoring rewinds a running loader too.
  first.restore({0, 0, 7});
  Taken again;
  take(first, 20, again);
  CHECK(again.images == all.images);
  CHECK_THROWS_AS(first.restore({0, 8, 7}), kiln::Error);
}

TEST_CASE("an empty index list gives no batches") {
  const Dataset ds = small_dataset(4);
  Loader l(ds, {}, {.batch_size = 4, .workers = 2});
  Batch b;
  CHECK(l.batches_per_epoch() == 0);
  CHECK_FALSE(l.next(b));
}

TEST_CASE("workers prefetch: a consumer slower than the workers never waits after the first batch") {
  const Dataset ds = small_dataset(64);
  std::vector<int64_t> idx(64);
  for (int64_t i = 0; i < 64; ++i) idx[static_cast<size_t>(i)] = i;
  Loader l(ds, idx, {.batch_size = 8, .seed = 1, .workers = 1, .prefetch = 4});
  Batch b;
  for (int k = 0; k < 6; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // "training" the batch
    REQUIRE(l.next(b));
  }
  const LoaderStats s = l.stats();
  CHECK(s.batches == 6);
  // Generous for a loaded 2-core machine: filling 8 images takes well under a millisecond of CPU.
  CHECK_MESSAGE(s.waited <= 1, "the consumer waited for ", s.waited, " of 6 batches (", s.wait_s, " s)");
}

TEST_CASE("sharding: the shards of each global batch are the unsharded batch, record for record") {
  const Dataset ds = small_dataset(23);
  std::vector<int64_t> idx(23);
  for (int64_t i = 0; i < 23; ++i) idx[static_cast<size_t>(i)] = i;
  LoaderConfig cfg;
  cfg.batch_size = 8;  // batches of 8, 8, 7 records
  cfg.seed = 5;
  Loader whole(ds, idx, cfg);
  for (int64_t world : {2, 3}) {
    CAPTURE(world);
    std::vector<std::unique_ptr<Loader>> shards;
    for (int64_t r = 0; r < world; ++r) {
      LoaderConfig c = cfg;
      c.shard_rank = r;
      c.shard_count = world;
      c.workers = static_cast<int>(r % 2);  // threaded and synchronous shards alike
      shards.push_back(std::make_unique<Loader>(ds, idx, c));
      CHECK(shards.back()->batches_per_epoch() == whole.batches_per_epoch());
      CHECK(shards.back()->shard_capacity() == (8 + world - 1) / world);
    }
    whole.restore({0, 0, cfg.seed});
    for (int64_t k = 0; k < 6; ++k) {  // two epochs (augmentation and order differ per epoch)
      Taken w, s;
      take(whole, 1, w);
      for (int64_t r = 0; r < world; ++r) {
        size_t before = s.labels.size();
        take(*shards[static_cast<size_t>(r)], 1, s);
        // Nearly equal parts, the first len % world shards one record more.
        const int64_t len = w.sizes[0], got = static_cast<int64_t>(s.labels.size() - before);
        CHECK(got == len / world + (r < len % world ? 1 : 0));
      }
      CHECK(s.labels == w.labels);
      CHECK(s.images == w.images);
    }
  }
  LoaderConfig bad = cfg;
  bad.shard_rank = 2;
  bad.shard_count = 2;
  CHECK_THROWS_WITH(Loader(ds, idx, bad), doctest::Contains("rank 2 of 2"));
}
