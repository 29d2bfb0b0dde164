// PNG/JPEG request bodies -> S x S RGB -> normalized CHW (conventions in image.h).
// libjpeg reports errors through a callback that must not return: it longjmps back to
// decode_jpeg, whose state lives in one heap object so nothing is lost across the jump.
// Debian's libstb holds stb_image_resize's implementation (this file only includes it).
#include "kiln/serve/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <jpeglib.h>
#include <spng.h>
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

struct Decoded {
  std::vector<uint8_t> rgb;  // (h,w,3)
  int w = 0, h = 0;
};

void check_dims(int64_t w, int64_t h, const char* what) {
  if (w <= 0 || h <= 0 || w * h > kMaxImagePixels)
    throw HttpError(400, std::string(what) + " image is " + std::to_string(w) + "x" +
                             std::to_string(h) + ", expected 1 to " +
                             std::to_string(kMaxImagePixels) + " pixels");
}

void reserve(Reservation* mem, size_t bytes, const std::string& what) {
  if (mem) mem->add(bytes, what);
}

// ---- PNG (libspng) ----

struct SpngFree {
  void operator()(spng_ctx* c) const { spng_ctx_free(c); }
};

Decoded decode_png(std::string_view body, Reservation* mem) {
  std::unique_ptr<spng_ctx, SpngFree> ctx(spng_ctx_new(0));
  if (!ctx) throw HttpError(500, "could not create a PNG decoder");
  auto check = [](int err, const char* stage) {
    if (err) throw HttpError(400, std::string("malformed PNG (") + stage + "): " + spng_strerror(err));
  };
  // Ancillary chunks (text, ICC profiles) are bounded too: one at most 1 MiB, 4 MiB in all.
  spng_set_chunk_limits(ctx.get(), 1u << 20, 4u << 20);
  spng_set_image_limits(ctx.get(), 1u << 24, 1u << 24);
  check(spng_set_png_buffer(ctx.get(), body.data(), body.size()), "buffer");
  spng_ihdr ihdr{};
  check(spng_get_ihdr(ctx.get(), &ihdr), "header");
  check_dims(ihdr.width, ihdr.height, "PNG");
  size_t size = 0;
  check(spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &size), "size");
  // The decoder's own buffers: two rows at the file's depth (interlaced: one more), and zlib's.
  const size_t row = size_t{ihdr.width} * 8 + 64;
  reserve(mem, size + 3 * row + (1u << 20),
          "decoding a " + std::to_string(ihdr.width) + "x" + std::to_string(ihdr.height) + " PNG");
  Decoded d;
  d.w = static_cast<int>(ihdr.width);
  d.h = static_cast<int>(ihdr.height);
  d.rgb.resize(size);
  check(spng_decode_image(ctx.get(), d.rgb.data(), size, SPNG_FMT_RGB8, 0), "pixels");
  return d;
}

// ---- JPEG (libjpeg-turbo) ----

struct JpegState {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr err{};
  jpeg_progress_mgr progress{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  bool created = false;
  Decoded out;
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* s = static_cast<JpegState*>(cinfo->client_data);
  (*cinfo->err->format_message)(cinfo, s->message);
  std::longjmp(s->jump, 1);
}

void jpeg_quiet(j_common_ptr, int) {}  // warnings (corrupt data is decoded as PIL does)

void jpeg_scan_limit(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (cinfo->is_decompressor && d->input_scan_number > kMaxJpegScans) {
    auto* s = static_cast<JpegState*>(cinfo->client_data);
    std::snprintf(s->message, sizeof s->message, "more than %d scans", kMaxJpegScans);
    std::longjmp(s->jump, 1);
  }
}

Decoded decode_jpeg(std::string_view body, Reservation* mem) {
  auto s = std::make_unique<JpegState>();
  JpegState* st = s.get();
  st->cinfo.err = jpeg_std_error(&st->err);
  st->err.error_exit = jpeg_fail;
  st->err.emit_message = jpeg_quiet;
  st->cinfo.client_data = st;
  // The reservation may throw (HttpError 503) between setjmp and the end: that is a C++ throw from
  // C++ code with no libjpeg frame in between, and it unwinds through JpegState normally.
  if (setjmp(st->jump)) throw HttpError(400, std::string("malformed JPEG: ") + st->message);
  jpeg_create_decompress(&st->cinfo);
  st->created = true;
  st->progress.progress_monitor = jpeg_scan_limit;
  st->cinfo.progress = &st->progress;
  jpeg_mem_src(&st->cinfo, reinterpret_cast<const unsigned char*>(body.data()),
               static_cast<unsigned long>(body.size()));
  jpeg_read_header(&st->cinfo, TRUE);
  check_dims(st->cinfo.image_width, st->cinfo.image_height, "JPEG");
  const size_t pixels = size_t{st->cinfo.image_width} * st->cinfo.image_height;
  // Progressive (and multi-scan) files keep every coefficient: 2 bytes per sample and component.
  const size_t coefficients = st->cinfo.progressive_mode || st->cinfo.buffered_image
                                  ? pixels * 2 * static_cast<size_t>(st->cinfo.num_components) + pixels
                                  : 0;
  const size_t internal = coefficients + size_t{st->cinfo.image_width} * 64 + (4u << 20);
  reserve(mem, 3 * pixels + internal,
          "decoding a " + std::to_string(st->cinfo.image_width) + "x" +
              std::to_string(st->cinfo.image_height) + " JPEG");
  st->cinfo.mem->max_memory_to_use = static_cast<long>(internal);
  st->cinfo.out_color_space = JCS_RGB;  // from grayscale and YCbCr; CMYK is refused by libjpeg
  jpeg_start_decompress(&st->cinfo);
  st->out.w = static_cast<int>(st->cinfo.output_width);
  st->out.h = static_cast<int>(st->cinfo.output_height);
  st->out.rgb.resize(size_t{st->cinfo.output_width} * st->cinfo.output_height * 3);
  while (st->cinfo.output_scanline < st->cinfo.output_height) {
    JSAMPROW row = st->out.rgb.data() + size_t{st->cinfo.output_scanline} * st->cinfo.output_width * 3;
    jpeg_read_scanlines(&st->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&st->cinfo);
  return std::move(st->out);
}

}  // namespace

std::vector<uint8_t> decode_image_pixels(std::string_view body, std::string_view media,
                                         int64_t image_size, Reservation* mem) {
  const bool png = is_png(body), jpeg = is_jpeg(body);
  if (media == "image/png" && !png)
    throw HttpError(400, "body is not a PNG image (no PNG signature) but Content-Type is image/png");
  if (media == "image/jpeg" && !jpeg)
    throw HttpError(400, "body is not a JPEG image (no FF D8 FF marker) but Content-Type is image/jpeg");
  if (!png && !jpeg)
    throw HttpError(400, "body is neither a PNG nor a JPEG image (application/x-image takes those two)");
  Decoded d = png ? decode_png(body, mem) : decode_jpeg(body, mem);
  const int S = static_cast<int>(image_size);
  std::vector<uint8_t> out(static_cast<size_t>(S) * S * 3);
  if (d.w == S && d.h == S) {
    std::memcpy(out.data(), d.rgb.data(), out.size());
    return out;
  }
  // stb_image_resize's scratch: a few float rows of the input and output widths.
  reserve(mem, (size_t(d.w) + size_t(S)) * 3 * sizeof(float) * 16 + (1u << 20), "resizing an image");
  if (!stbir_resize_uint8_generic(d.rgb.data(), d.w, d.h, 0, out.data(), S, S, 0, 3,
                                  STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                  STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, nullptr))
    throw HttpError(400, "could not resize the " + std::to_string(d.w) + "x" + std::to_string(d.h) +
                             " image to " + std::to_string(S) + "x" + std::to_string(S));
  return out;
}

Images decode_image(std::string_view body, std::string_view media, const InputSpec& spec,
                    Reservation* mem) {
  std::vector<uint8_t> px = decode_image_pixels(body, media, spec.image_size, mem);
  Images out;
  out.n = 1;
  out.data.resize(px.size());  // S*S*3 pixels -> 3*S*S values
  normalize_pixels(px.data(), 1, spec, out.data.data());
  return out;
}

}  // namespace kiln::serve
