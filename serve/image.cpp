// PNG/JPEG request bodies -> S x S RGB -> normalized CHW (conventions in image.h).
// Debian's libstb already contains stb_image's and stb_image_resize's implementations, so this
// file only includes the declarations (no STB_IMAGE_IMPLEMENTATION here).
#include "serve/image.h"

#include <climits>
#include <cstring>
#include <memory>
#include <string>

#include <stb_image.h>
#include <stb_image_resize.h>

namespace kiln::serve {

namespace {

bool is_png(std::string_view b) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  return b.size() >= 8 && std::memcmp(b.data(), sig, 8) == 0;
}

bool is_jpeg(std::string_view b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xff &&
         static_cast<unsigned char>(b[1]) == 0xd8 && static_cast<unsigned char>(b[2]) == 0xff;
}

struct StbiFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

}  // namespace

std::vector<uint8_t> decode_image_pixels(std::string_view body, std::string_view media,
                                         int64_t image_size) {
  const bool png = is_png(body), jpeg = is_jpeg(body);
  if (media == "image/png" && !png)
    throw HttpError(400, "body is not a PNG image (no PNG signature) but Content-Type is image/png");
  if (media == "image/jpeg" && !jpeg)
    throw HttpError(400, "body is not a JPEG image (no FF D8 FF marker) but Content-Type is image/jpeg");
  if (!png && !jpeg)
    throw HttpError(400, "body is neither a PNG nor a JPEG image (application/x-image takes those two)");
  if (body.size() > static_cast<size_t>(INT_MAX)) throw HttpError(400, "image body too large");
  const auto* bytes = reinterpret_cast<const stbi_uc*>(body.data());
  const int len = static_cast<int>(body.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(bytes, len, &w, &h, &comp))
    throw HttpError(400, std::string("malformed image: ") + stbi_failure_reason());
  if (w <= 0 || h <= 0 || int64_t{w} * h > kMaxImagePixels)
    throw HttpError(400, "image is " + std::to_string(w) + "x" + std::to_string(h) +
                             ", expected at most " + std::to_string(kMaxImagePixels) + " pixels");
  // Asking for 3 channels makes stb expand grayscale and drop alpha.
  std::unique_ptr<unsigned char, StbiFree> rgb(stbi_load_from_memory(bytes, len, &w, &h, &comp, 3));
  if (!rgb) throw HttpError(400, std::string("malformed image: ") + stbi_failure_reason());
  const int S = static_cast<int>(image_size);
  std::vector<uint8_t> out(static_cast<size_t>(S) * S * 3);
  if (w == S && h == S) {
    std::memcpy(out.data(), rgb.get(), out.size());
  } else if (!stbir_resize_uint8_generic(rgb.get(), w, h, 0, out.data(), S, S, 0, 3,
                                         STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                         STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, nullptr)) {
    throw HttpError(400, "could not resize the " + std::to_string(w) + "x" + std::to_string(h) +
                             " image to " + std::to_string(S) + "x" + std::to_string(S));
  }
  return out;
}

Images decode_image(std::string_view body, std::string_view media, const InputSpec& spec) {
  std::vector<uint8_t> px = decode_image_pixels(body, media, spec.image_size);
  Images out;
  out.n = 1;
  out.data.resize(px.size());  // S*S*3 pixels -> 3*S*S values
  normalize_pixels(px.data(), 1, spec, out.data.data());
  return out;
}

}  // namespace kiln::serve
