// `kiln synth`: learnable synthetic CIFAR-100-shaped data (see synth.h). Class c draws shape
// c % 10 in foreground colour (c / 10) % 10 on a background tinted by c, at a random position
// and size, plus uniform pixel noise: a small CNN separates the classes within a few hundred steps.
#include "kiln/data/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/rng.h"

namespace fs = std::filesystem;

namespace kiln::data {

namespace {

constexpr int H = 32, W = 32;

const uint8_t kPalette[10][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                 {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                 {250, 250, 250}, {128, 128, 0}};
const char* kShapes[10] = {"disc",   "square", "ring",  "cross",    "hbars",
                           "vbars",  "triangle", "diamond", "checker", "frame"};

bool inside(int shape, double u, double v, double r) {
  // (u, v): offset from the shape's centre in pixels; r: its radius.
  const double au = std::fabs(u), av = std::fabs(v);
  switch (shape) {
    case 0: return u * u + v * v <= r * r;
    case 1: return au <= r && av <= r;
    case 2: { const double d = std::sqrt(u * u + v * v); return d <= r && d >= r * 0.55; }
    case 3: return (au <= r * 0.3 && av <= r) || (av <= r * 0.3 && au <= r);
    case 4: return au <= r && av <= r && static_cast<int>(std::floor((v + r) / 3.0)) % 2 == 0;
    case 5: return au <= r && av <= r && static_cast<int>(std::floor((u + r) / 3.0)) % 2 == 0;
    case 6: return v <= r && v >= -r && au <= (v + r) * 0.5;
    case 7: return au + av <= r;
    case 8: return au <= r && av <= r &&
                   (static_cast<int>(std::floor((u + r) / 4.0)) + static_cast<int>(std::floor((v + r) / 4.0))) % 2 == 0;
    default: return au <= r && av <= r && (au >= r * 0.6 || av >= r * 0.6);
  }
}

}  // namespace

void draw_synthetic(int64_t label, int64_t classes, uint64_t sample_seed, uint8_t* dst) {
  KILN_ASSERT(label >= 0 && label < classes, "synthetic label out of range");
  Rng rng(sample_seed);
  const int shape = static_cast<int>(label % 10);
  const uint8_t* fg = kPalette[(label / 10) % 10];
  // Background: a dark tint that also depends on the class, so colour alone carries signal.
  uint64_t bs = mix_seed(0x62671234ull, static_cast<uint64_t>(label));
  Rng brng(bs);
  uint8_t bg[3];
  for (auto& b : bg) b = static_cast<uint8_t>(brng.below(90));
  const double r = 6.0 + 4.0 * rng.uniform();
  const double cx = 16.0 + (rng.uniform() - 0.5) * 8.0, cy = 16.0 + (rng.uniform() - 0.5) * 8.0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const bool in = inside(shape, x + 0.5 - cx, y + 0.5 - cy, r);
      for (int c = 0; c < 3; ++c) {
        const int base = in ? fg[c] : bg[c];
        const int noise = static_cast<int>(rng.below(49)) - 24;
        dst[(c * H + y) * W + x] = static_cast<uint8_t>(std::clamp(base + noise, 0, 255));
      }
    }
}

void write_synthetic(const fs::path& dir, const SynthConfig& cfg) {
  if (cfg.classes < 1 || cfg.classes > 100)
    fail("--classes", "a number of classes in [1, 100]", std::to_string(cfg.classes));
  if (cfg.train < 1) fail("--train", "at least 1 training image", std::to_string(cfg.train));
  if (cfg.test < 1) fail("--test", "at least 1 test image", std::to_string(cfg.test));
  fs::create_directories(dir);
  auto write_split = [&](const char* name, int64_t n, uint64_t salt) {
    std::string bytes(static_cast<size_t>(n * kBinaryRecordBytes), '\0');
    // Every class equally often (round robin), in a seeded shuffled order.
    std::vector<int64_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % cfg.classes;
    Rng label_rng(mix_seed(cfg.seed, salt));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(labels[static_cast<size_t>(i)],
                labels[label_rng.below(static_cast<uint64_t>(i + 1))]);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t label = labels[static_cast<size_t>(i)];
      char* rec = bytes.data() + i * kBinaryRecordBytes;
      rec[0] = static_cast<char>(label / 5);  // coarse label: 5 fine classes per coarse one
      rec[1] = static_cast<char>(label);
      draw_synthetic(label, cfg.classes, mix_seed(cfg.seed, salt, static_cast<uint64_t>(i)),
                     reinterpret_cast<uint8_t*>(rec + 2));
    }
    write_file_atomic(dir / name, bytes);
  };
  write_split("train.bin", cfg.train, 1);
  write_split("test.bin", cfg.test, 2);
  std::string fine, coarse;
  for (int64_t c = 0; c < cfg.classes; ++c) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "synth_%03lld_%s_%lld\n", static_cast<long long>(c),
                  kShapes[c % 10], static_cast<long long>((c / 10) % 10));
    fine += buf;
  }
  for (int64_t c = 0; c < (cfg.classes + 4) / 5; ++c) coarse += "synth_group_" + std::to_string(c) + "\n";
  write_file_atomic(dir / "fine_label_names.txt", fine);
  write_file_atomic(dir / "coarse_label_names.txt", coarse);
  write_file_atomic(dir / kSyntheticMarker,
                    "This dataset was generated by `kiln synth` (classes=" + std::to_string(cfg.classes) +
                        ", train=" + std::to_string(cfg.train) + ", test=" + std::to_string(cfg.test) +
                        ", seed=" + std::to_string(cfg.seed) + "). It is NOT CIFAR-100.\n");
}

}  // namespace kiln::data
