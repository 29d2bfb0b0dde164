// kiln serve's request codec: the first byte picks what the rest is, as a client would label it —
// 0 application/x-npy, 1 application/json, 2 image/png, 3 image/jpeg, 4 application/x-image, 5 raw
// HTTP/1.1 bytes for the request parser (fed in pieces). Decoders may only return images of the
// model's shape or refuse with HttpError (400/415, or 503 when the memory budget is spent); the
// parser may only reach a state, never hold more than its limits.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kiln/core/error.h"
#include "kiln/serve/budget.h"
#include "kiln/serve/codec.h"
#include "kiln/serve/http.h"

using namespace kiln::serve;

namespace {

void parse_http(std::string_view in) {
  HttpLimits limits;
  limits.max_body_bytes = 64 << 10;
  RequestParser p(limits);
  size_t at = 0, step = 1;
  while (at < in.size()) {
    const size_t used = p.feed(in.data() + at, std::min(step, in.size() - at));
    at += used;
    step = step * 3 % 17 + 1;  // pieces of varying sizes
    const auto s = p.status();
    if (s == RequestParser::Status::head_done) p.read_body(at % 2 == 0);
    if (s == RequestParser::Status::error) {
      KILN_ASSERT(p.error_status() >= 400 && p.error_status() < 600, "parser error status out of range");
      return;
    }
    if (s == RequestParser::Status::complete) {
      KILN_ASSERT(p.request().body.size() <= limits.max_body_bytes, "body past its limit");
      p.reset();
    } else if (used == 0 && s != RequestParser::Status::head_done) {
      KILN_ASSERT(false, "parser took no bytes while it needed them");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* const kTypes[] = {"application/x-npy", "application/json", "image/png",
                                       "image/jpeg", "application/x-image"};
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const unsigned kind = data[0] % 6;
  if (kind == 5) {
    parse_http(body);
    return 0;
  }
  InputSpec spec;
  spec.image_size = 32;
  static MemoryBudget budget(size_t{256} << 20);
  Reservation mem(&budget);
  try {
    Images images = decode_request(kTypes[kind], body, spec, &mem);
    KILN_ASSERT(images.n >= 1 && images.data.size() == static_cast<size_t>(images.n) * 3 * 32 * 32,
                "decoded images of the wrong size");
  } catch (const HttpError& e) {
    KILN_ASSERT(e.status() == 400 || e.status() == 415 || e.status() == 503, "unexpected status");
  }
  return 0;
}
