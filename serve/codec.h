// Request bodies in, response bodies out: the content types `POST /invocations` speaks.
// Every decoder takes untrusted bytes and returns images as (n,3,S,S) fp32 NCHW, normalized like
// torchvision's ToTensor + Normalize(mean, std); every problem is an HttpError carrying the status
// (400, 406, 415) and a one-line reason. Nothing here knows about sockets, threads or the engine.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::serve {

class Reservation;

// A request the server refuses; `status` is the HTTP status, what() a one-line reason.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& reason);
  int status() const { return status_; }

 private:
  int status_;
};

// What the model expects: S x S RGB images; raw pixels p in [0,255] become (p/255 - mean) / std.
struct InputSpec {
  int64_t image_size = 32;
  std::array<float, 3> mean{0.f, 0.f, 0.f};
  std::array<float, 3> std{1.f, 1.f, 1.f};
};

struct Images {
  std::vector<float> data;  // (n,3,S,S) normalized, C order
  int64_t n = 0;
};

// (n,S,S,3) raw pixels -> (n,3,S,S) normalized, as torchvision's ToTensor + Normalize compute it.
void normalize_pixels(const uint8_t* src, int64_t n, const InputSpec& spec, float* dst);

// "Application/X-NPY; charset=x" -> "application/x-npy" (lower case, parameters and blanks dropped).
std::string media_type(std::string_view content_type);

// Every decoder first reserves what it will hold from `mem` (serve/budget.h; null: no budget),
// which throws HttpError 503 when the server's budget for requests in flight is spent.
// application/x-npy: float32 (or float64) (N,3,S,S) / (3,S,S) normalized, or uint8 (N,S,S,3) /
// (S,S,3) raw pixels.
Images decode_npy(std::string_view body, const InputSpec& spec, Reservation* mem = nullptr);
// application/json: {"instances": X} or a bare X, X a nested list of the same shapes as NPY; an
// (...,S,S,3) shape holds raw pixels in [0,255], an (...,3,S,S) shape normalized values. Parsed
// as a stream (no document tree): 4 bytes per number held, whatever the body's size claims.
Images decode_json(std::string_view body, const InputSpec& spec, Reservation* mem = nullptr);
// Throws the 415 HttpError unless the Content-Type is one decode_request() takes.
void check_content_type(std::string_view content_type);
// Dispatches on the media type; unknown types are 415. Image types go to serve/image.h.
Images decode_request(std::string_view content_type, std::string_view body, const InputSpec& spec,
                      Reservation* mem = nullptr);

enum class ResponseType { npy, json };
// Picks the response type from an Accept header (q-values honoured; absent, empty or */* gives
// `fallback`); nothing acceptable is 406.
ResponseType negotiate_accept(std::string_view accept, ResponseType fallback);
// The natural answer for a request type: NPY for NPY requests, JSON for JSON and images.
ResponseType default_response_type(std::string_view content_type);

// (n,classes) float32 log-probabilities as an NPY (version 1.0) body.
std::string encode_npy_response(const float* log_probs, int64_t n, int64_t classes);
// {"predictions": [{"top_k": [{"index": i, "class": name, "probability": p}, ...]}, ...]},
// k classes per image by decreasing probability (ties: lower index first).
std::string encode_json_response(const float* log_probs, int64_t n, int64_t classes,
                                 const std::vector<std::string>& class_names, int64_t k);
// k from the `k` query parameter or the X-Kiln-Top-K header (empty if absent): an integer >= 1,
// clamped to `classes`; anything else is 400.
int64_t parse_top_k(const std::string& text, int64_t fallback, int64_t classes);

}  // namespace kiln::serve
