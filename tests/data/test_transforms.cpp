// kiln's train/test transforms against torchvision 0.14's functional transforms (the oracle,
// run with ${KILN_PYTHON:-/usr/bin/python3}) given the same crop offsets, flips and angles.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "kiln/core/atomic_file.h"
#include "kiln/data/rng.h"
#include "kiln/data/transforms.h"
#include "tests/support/support.h"

using namespace kiln::data;
namespace kt = kiln::test;

TEST_CASE("crop, flip, rotate and normalize give torchvision's pixels for the same parameters") {
  kt::TempDir dir("transforms");
  const int n = 96;
  std::vector<uint8_t> images(static_cast<size_t>(n) * kImageBytes);
  std::vector<AugmentParams> params(static_cast<size_t>(n));
  Rng rng(12345);
  for (int i = 0; i < n; ++i) {
    uint8_t* img = images.data() + static_cast<size_t>(i) * kImageBytes;
    // Noise images catch any off-by-one in the sampling grid; gradients catch channel mix-ups.
    for (int64_t k = 0; k < kImageBytes; ++k)
      img[k] = i % 2 ? static_cast<uint8_t>(rng.below(256))
                     : static_cast<uint8_t>((k / 1024) * 80 + (k % 32) * 3 + ((k / 32) % 32));
    AugmentParams p = draw_augment(rng);
    // Edge cases first: no rotation, the extreme angles, every corner crop.
    const float fixed_angles[] = {0.0f, 15.0f, -15.0f, 0.5f, -0.5f, 1e-3f, -7.3f, 14.99f};
    if (i < 8) p.angle = fixed_angles[i];
    if (i < 4) {
      p.crop_top = (i & 1) ? 8 : 0;
      p.crop_left = (i & 2) ? 8 : 0;
    }
    params[static_cast<size_t>(i)] = p;
  }
  std::string text;
  for (const auto& p : params) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%d %d %d %.17g\n", p.crop_top, p.crop_left, p.flip ? 1 : 0,
                  static_cast<double>(p.angle));
    text += buf;
  }
  kiln::write_file_atomic(dir.path / "params.txt", text);
  kiln::write_file_atomic(dir.path / "images.bin",
                          std::string_view(reinterpret_cast<const char*>(images.data()), images.size()));
  std::string out;
  const std::string cmd = kt::quote(kt::python()) + " " +
                          kt::quote(kt::source_root().string() + "/tests/data/transforms_oracle.py") + " " +
                          kt::quote(dir.path.string());
  const int rc = kt::run(cmd, &out);
  INFO("oracle command: ", cmd, "\n", out);
  REQUIRE_MESSAGE(rc == 0, "the torchvision oracle failed (Debian's python3-torch and "
                           "python3-torchvision are needed; set KILN_PYTHON to a python with them)");

  const std::string rotated = kiln::read_file(dir.path / "rotated.bin");
  const std::string normalized = kiln::read_file(dir.path / "normalized.bin");
  const std::string test_norm = kiln::read_file(dir.path / "test_normalized.bin");
  REQUIRE(rotated.size() == images.size());
  REQUIRE(normalized.size() == images.size() * sizeof(float));
  REQUIRE(test_norm.size() == images.size() * sizeof(float));

  Normalizer norm;
  int64_t bad_images = 0;
  for (int i = 0; i < n; ++i) {
    const auto& p = params[static_cast<size_t>(i)];
    uint8_t mine[kImageBytes];
    augment(images.data() + static_cast<size_t>(i) * kImageBytes, p, mine);
    const auto* theirs = reinterpret_cast<const uint8_t*>(rotated.data()) + static_cast<size_t>(i) * kImageBytes;
    int64_t diff = 0, first = -1;
    for (int64_t k = 0; k < kImageBytes; ++k)
      if (mine[k] != theirs[k]) {
        ++diff;
        if (first < 0) first = k;
      }
    if (diff) {
      ++bad_images;
      MESSAGE("image ", i, " (crop ", p.crop_top, ",", p.crop_left, " flip ", p.flip, " angle ", p.angle,
              "): ", diff, " of 3072 bytes differ, first at c,y,x=", first / 1024, ",", (first / 32) % 32,
              ",", first % 32, " kiln ", int(mine[first]), " torchvision ", int(theirs[first]));
    }
    float f[kImageBytes];
    norm.apply(mine, f);
    CHECK_MESSAGE(std::memcmp(f, normalized.data() + static_cast<size_t>(i) * kImageBytes * 4, sizeof f) == 0,
                  "ToTensor+Normalize of image ", i, " is not bit-identical to torchvision's");
    norm.apply(images.data() + static_cast<size_t>(i) * kImageBytes, f);
    CHECK_MESSAGE(std::memcmp(f, test_norm.data() + static_cast<size_t>(i) * kImageBytes * 4, sizeof f) == 0,
                  "the test transform of image ", i, " is not bit-identical to torchvision's");
  }
  CHECK_MESSAGE(bad_images == 0, bad_images, " of ", n, " augmented images differ from torchvision's");
}

TEST_CASE("augmentation parameters cover torchvision's ranges") {
  Rng rng(7);
  int tops[9] = {}, lefts[9] = {}, flips = 0;
  float lo = 0, hi = 0;
  for (int i = 0; i < 20000; ++i) {
    const AugmentParams p = draw_augment(rng);
    REQUIRE(p.crop_top >= 0);
    REQUIRE(p.crop_top <= 8);
    REQUIRE(p.crop_left >= 0);
    REQUIRE(p.crop_left <= 8);
    ++tops[p.crop_top];
    ++lefts[p.crop_left];
    flips += p.flip;
    lo = std::min(lo, p.angle);
    hi = std::max(hi, p.angle);
    REQUIRE(std::abs(p.angle) <= 15.0f);
  }
  for (int k = 0; k < 9; ++k) {
    CHECK(tops[k] > 1800);
    CHECK(lefts[k] > 1800);
  }
  CHECK(flips > 9500);
  CHECK(flips < 10500);
  CHECK(lo < -14.9f);
  CHECK(hi > 14.9f);
}
