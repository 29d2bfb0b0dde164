// The reference's image transforms on one CIFAR image (3,32,32) uint8 R,G,B planes:
//   train: RandomCrop(32, padding=4) -> RandomHorizontalFlip -> RandomRotation(15, NEAREST,
//          fill 0) -> ToTensor -> Normalize(mean, std)
//   test (and kiln's validation): ToTensor -> Normalize
// Given the same random parameters the pixels equal torchvision 0.14's functional transforms
// on PIL images (what the reference's CIFAR100 dataset feeds them): see rotate_nearest.
#pragma once

#include <array>
#include <cstdint>

#include "kiln/data/dataset.h"
#include "kiln/data/rng.h"

namespace kiln::data {

struct Normalization {
  std::array<float, 3> mean{0.507f, 0.487f, 0.441f};
  std::array<float, 3> std{0.267f, 0.256f, 0.276f};
};

// One sample's random choices, in torchvision's terms.
struct AugmentParams {
  int crop_top = 4, crop_left = 4;  // F.crop offsets into the 40x40 zero-padded image, [0, 8]
  bool flip = false;                // F.hflip
  float angle = 0.0f;               // F.rotate degrees, counter-clockwise, [-15, 15]
};

inline constexpr int kPadding = 4;
inline constexpr float kMaxAngle = 15.0f;

AugmentParams draw_augment(Rng& rng);

// src, dst: (3,32,32) uint8; dst must not alias src.
void random_crop(const uint8_t* src, int crop_top, int crop_left, uint8_t* dst);
void hflip(const uint8_t* src, uint8_t* dst);
// PIL's Image.rotate(angle, NEAREST, center=None, fillcolor=0) as torchvision's F.rotate calls
// it for PIL images: Pillow's inverse affine matrix (cos/sin rounded to 15 decimals), sampled
// at pixel centres with the incremental float accumulation and truncation of its C loop.
void rotate_nearest(const uint8_t* src, float angle, uint8_t* dst);
void augment(const uint8_t* src, const AugmentParams& p, uint8_t* dst);

// ToTensor + Normalize: dst[c,y,x] = (src/255 - mean[c]) / std[c], in float32 exactly as
// torch computes it (a 256-entry table per channel).
class Normalizer {
 public:
  explicit Normalizer(const Normalization& n = {});
  void apply(const uint8_t* src, float* dst) const;  // (3,32,32) -> (3,32,32)

 private:
  std::array<std::array<float, 256>, 3> table_;
};

}  // namespace kiln::data
