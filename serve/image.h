// One encoded image (PNG or JPEG, any size) -> one S x S RGB image, normalized for the model.
// Decoding is Debian's stb_image (libstb); 16-bit PNGs are reduced to 8 bits, grayscale is
// expanded to RGB and alpha is dropped (not composited). The resize to S x S ignores the aspect
// ratio and uses stb_image_resize's triangle filter on linear values with clamped edges: bilinear
// when enlarging and an antialiased (support-scaled) bilinear when shrinking, like PIL's
// Image.resize((S, S), BILINEAR) that torchvision's Resize applies to PIL images.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "serve/codec.h"

namespace kiln::serve {

// Largest accepted decoded image (width * height); larger ones are 400 before any pixel is decoded.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 24;

// `media` is the request's media type: image/png and image/jpeg must match the bytes;
// application/x-image takes either. Malformed or unsupported bytes are HttpError 400.
Images decode_image(std::string_view body, std::string_view media, const InputSpec& spec);

// The decoded and resized pixels before normalization: (S,S,3) uint8, row-major (for tests).
std::vector<uint8_t> decode_image_pixels(std::string_view body, std::string_view media,
                                         int64_t image_size);

}  // namespace kiln::serve
