// One encoded image (PNG or JPEG, any size) -> one S x S RGB image, normalized for the model.
// Decoding is Debian's libspng (PNG) and libjpeg-turbo (JPEG), both fuzzed continuously by their
// projects; the header's dimensions are checked against kMaxImagePixels, and the decoder's memory
// reserved from the request's budget, before any pixel buffer is allocated. 16-bit PNGs are
// reduced to 8 bits, grayscale is expanded to RGB and alpha is dropped (not composited). The
// resize to S x S ignores the aspect ratio and uses stb_image_resize's triangle filter on linear
// values with clamped edges: bilinear when enlarging and an antialiased (support-scaled) bilinear
// when shrinking, like PIL's Image.resize((S, S), BILINEAR) that torchvision's Resize applies.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "kiln/serve/budget.h"
#include "kiln/serve/codec.h"

namespace kiln::serve {

// Largest accepted decoded image (width * height); larger ones are 400 before any pixel is decoded.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 24;
// Largest JPEG scan count (a progressive JPEG has about 10; thousands are a CPU bomb).
inline constexpr int kMaxJpegScans = 100;

// `media` is the request's media type: image/png and image/jpeg must match the bytes;
// application/x-image takes either. Malformed or unsupported bytes are HttpError 400; no room in
// `mem` for the decoder's buffers is HttpError 503 (mem may be null: no budget).
Images decode_image(std::string_view body, std::string_view media, const InputSpec& spec,
                    Reservation* mem = nullptr);

// The decoded and resized pixels before normalization: (S,S,3) uint8, row-major (for tests).
std::vector<uint8_t> decode_image_pixels(std::string_view body, std::string_view media,
                                         int64_t image_size, Reservation* mem = nullptr);

}  // namespace kiln::serve
