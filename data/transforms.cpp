// The reference's train/test transforms on (3,32,32) uint8 images; see transforms.h.
#include "kiln/data/transforms.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>

namespace kiln::data {

namespace {

constexpr int H = static_cast<int>(kImageH), W = static_cast<int>(kImageW);
constexpr int C = static_cast<int>(kImageC);

// Python's float `%`: the result takes the divisor's sign.
double py_mod(double x, double m) {
  double r = std::fmod(x, m);
  if (r != 0.0 && ((m < 0) != (r < 0))) r += m;
  return r;
}

// Python's round(x, 15): correctly rounded to 15 decimals, read back. glibc's printf rounds the
// exact binary value, like CPython's dtoa in mode 3.
double py_round15(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15f", x);
  return std::strtod(buf, nullptr);
}

// Pillow's FIX(): 16.16 fixed point, FLOOR(v * 65536 + 0.5).
int fix16(double v) { return static_cast<int>(std::floor(v * 65536.0 + 0.5)); }

}  // namespace

AugmentParams draw_augment(Rng& rng) {
  AugmentParams p;
  // torchvision draws i, j with torch.randint(0, h - th + 1): 9 choices each for padding 4.
  p.crop_top = static_cast<int>(rng.below(2 * kPadding + 1));
  p.crop_left = static_cast<int>(rng.below(2 * kPadding + 1));
  p.flip = rng.uniform() < 0.5;
  // RandomRotation: uniform_(-15, 15) on a float32 tensor.
  p.angle = static_cast<float>(-kMaxAngle + 2.0 * kMaxAngle * rng.uniform());
  return p;
}

void random_crop(const uint8_t* src, int crop_top, int crop_left, uint8_t* dst) {
  // dst[y][x] = padded[y + top][x + left] = src[y + top - 4][x + left - 4] or 0.
  const int dy = crop_top - kPadding, dx = crop_left - kPadding;
  for (int c = 0; c < C; ++c) {
    for (int y = 0; y < H; ++y) {
      uint8_t* out = dst + (c * H + y) * W;
      const int sy = y + dy;
      if (sy < 0 || sy >= H) {
        std::memset(out, 0, W);
        continue;
      }
      const uint8_t* in = src + (c * H + sy) * W;
      for (int x = 0; x < W; ++x) {
        const int sx = x + dx;
        out[x] = (sx >= 0 && sx < W) ? in[sx] : 0;
      }
    }
  }
}

void hflip(const uint8_t* src, uint8_t* dst) {
  for (int r = 0; r < C * H; ++r)
    for (int x = 0; x < W; ++x) dst[r * W + x] = src[r * W + (W - 1 - x)];
}

void rotate_nearest(const uint8_t* src, float angle_f, uint8_t* dst) {
  // Image.rotate(): angle % 360, exact 0 is a copy (its fast path).
  const double angle = py_mod(static_cast<double>(angle_f), 360.0);
  if (angle == 0.0) {
    std::memcpy(dst, src, kImageBytes);
    return;
  }
  // 90/180/270 take Pillow's transpose fast paths; they cannot occur within +-15 degrees.
  const double rad = -(angle * (std::numbers::pi / 180.0));
  double a[6] = {py_round15(std::cos(rad)), py_round15(std::sin(rad)), 0.0,
                 py_round15(-std::sin(rad)), py_round15(std::cos(rad)), 0.0};
  const double cx = W / 2.0, cy = H / 2.0;
  // Python evaluates a*x + b*y + c left to right; no fused multiply-add on the x86-64 baseline.
  const double t2 = a[0] * -cx + a[1] * -cy + a[2];
  const double t5 = a[3] * -cx + a[4] * -cy + a[5];
  a[2] = t2 + cx;
  a[5] = t5 + cy;
  // ImagingTransformAffine -> affine_fixed (the corners are well inside +-32768).
  const int a0 = fix16(a[0]), a1 = fix16(a[1]), a3 = fix16(a[3]), a4 = fix16(a[4]);
  int r2 = fix16(a[2] + a[0] * 0.5 + a[1] * 0.5);
  int r5 = fix16(a[5] + a[3] * 0.5 + a[4] * 0.5);
  std::memset(dst, 0, kImageBytes);
  for (int y = 0; y < H; ++y) {
    int xx = r2, yy = r5;
    for (int x = 0; x < W; ++x) {
      const int xin = xx >> 16, yin = yy >> 16;  // arithmetic shift, as Pillow's
      if (xin >= 0 && xin < W && yin >= 0 && yin < H)
        for (int c = 0; c < C; ++c) dst[(c * H + y) * W + x] = src[(c * H + yin) * W + xin];
      xx += a0;
      yy += a3;
    }
    r2 += a1;
    r5 += a4;
  }
}

void augment(const uint8_t* src, const AugmentParams& p, uint8_t* dst) {
  alignas(64) uint8_t a[kImageBytes], b[kImageBytes];
  random_crop(src, p.crop_top, p.crop_left, a);
  const uint8_t* cur = a;
  if (p.flip) {
    hflip(a, b);
    cur = b;
  }
  rotate_nearest(cur, p.angle, dst);
}

Normalizer::Normalizer(const Normalization& n) {
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < 256; ++v) {
      // ToTensor: byte.float().div(255); Normalize: sub_(mean).div_(std), all float32.
      const float t = static_cast<float>(v) / 255.0f;
      table_[static_cast<size_t>(c)][static_cast<size_t>(v)] =
          (t - n.mean[static_cast<size_t>(c)]) / n.std[static_cast<size_t>(c)];
    }
}

void Normalizer::apply(const uint8_t* src, float* dst) const {
  for (int c = 0; c < C; ++c) {
    const float* t = table_[static_cast<size_t>(c)].data();
    const int64_t off = static_cast<int64_t>(c) * H * W;
    for (int64_t i = 0; i < H * W; ++i) dst[off + i] = t[src[off + i]];
  }
}

}  // namespace kiln::data
