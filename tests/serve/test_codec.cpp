// Request decoding and response encoding, without sockets: NPY from numpy, JSON, PNG/JPEG
// through stb against PIL, Accept negotiation, top-k, and every 4xx a body can earn.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "helpers.h"
#include "kiln/io/npy.h"
#include "kiln/serve/codec.h"
#include "kiln/serve/image.h"

using namespace kiln;
using namespace kiln::test;
using serve::HttpError;

namespace {

std::string fixture(const std::string& name) { return read_bytes(fixtures_dir() / name); }

std::vector<float> npy_floats(const std::string& name) {
  io::NamedArray a = io::parse_npy(fixture(name), name);
  REQUIRE(a.dtype == io::DType::f32);
  return std::vector<float>(a.f32(), a.f32() + a.numel());
}

int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
    return e.status();
  }
  return 0;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

}  // namespace

TEST_CASE("media_type lower-cases and drops parameters") {
  CHECK(serve::media_type("Application/X-NPY; charset=binary") == "application/x-npy");
  CHECK(serve::media_type("  application/json ") == "application/json");
  CHECK(serve::media_type("") == "");
}

TEST_CASE("numpy's np.save float32 (4,3,32,32) decodes to the same values") {
  serve::Images im = serve::decode_npy(fixture("batch4_f32.npy"), cifar_spec());
  CHECK(im.n == 4);
  CHECK(im.data == npy_floats("batch4_f32.npy"));
}

TEST_CASE("uint8 (N,32,32,3) pixels are normalized like ToTensor + Normalize") {
  serve::Images im = serve::decode_npy(fixture("batch4_u8.npy"), cifar_spec());
  CHECK(im.n == 4);
  CHECK(max_abs_diff(im.data, npy_floats("batch4_u8_norm.npy")) <= 1e-6);
}

TEST_CASE("a single (3,32,32) image and float64 arrays are accepted") {
  serve::Images one = serve::decode_npy(fixture("single_f32.npy"), cifar_spec());
  CHECK(one.n == 1);
  CHECK(one.data == npy_floats("single_f32.npy"));
  serve::Images f64 = serve::decode_npy(fixture("batch4_f64.npy"), cifar_spec());
  CHECK(f64.n == 4);
}

TEST_CASE("bad NPY bodies are 400 with a one-line reason") {
  auto spec = cifar_spec();
  for (const char* name : {"wrong_shape.npy", "wrong_dtype.npy", "empty.npy", "fortran.npy",
                           "nan.npy"}) {
    INFO(name);
    CHECK(status_of([&] { serve::decode_npy(fixture(name), spec); }) == 400);
  }
  std::string good = fixture("batch4_f32.npy");
  CHECK(status_of([&] { serve::decode_npy(good.substr(0, good.size() - 7), spec); }) == 400);
  CHECK(status_of([&] { serve::decode_npy("not an npy file", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_npy("", spec); }) == 400);
  std::string garbled = good;
  garbled[20] = '\x01';
  status_of([&] { serve::decode_npy(garbled, spec); });  // any outcome but a crash
  try {
    serve::decode_npy(fixture("wrong_shape.npy"), spec);
  } catch (const HttpError& e) {
    CHECK(std::string(e.what()).find("(2,3,28,28)") != std::string::npos);
    CHECK(std::string(e.what()).find("(N,3,32,32)") != std::string::npos);
  }
}

TEST_CASE("JSON instances, bare lists and HWC pixels decode like numpy computes them") {
  auto spec = cifar_spec();
  serve::Images chw = serve::decode_json(fixture("batch2_chw.json"), spec);
  CHECK(chw.n == 2);
  CHECK(max_abs_diff(chw.data, npy_floats("batch2_chw_expected.npy")) <= 1e-6);
  serve::Images bare = serve::decode_json(fixture("bare_list.json"), spec);
  CHECK(bare.data == chw.data);
  serve::Images hwc = serve::decode_json(fixture("batch2_hwc.json"), spec);
  CHECK(hwc.n == 2);
  CHECK(max_abs_diff(hwc.data, npy_floats("batch2_hwc_expected.npy")) <= 1e-6);
}

TEST_CASE("bad JSON bodies are 400") {
  auto spec = cifar_spec();
  const char* bodies[] = {
      "{", "[]", "{\"inputs\": []}", "{\"instances\": 3}", "[[1,2],[3]]", "\"text\"",
      "[[[[1]]]]", "[[[[[1]]]]]",
  };
  for (const char* b : bodies) {
    INFO(b);
    CHECK(status_of([&] { serve::decode_json(b, spec); }) == 400);
  }
  // Ragged deep inside and a string among numbers.
  nlohmann::json img = nlohmann::json::array();
  for (int c = 0; c < 3; ++c) {
    nlohmann::json plane = nlohmann::json::array();
    for (int y = 0; y < 32; ++y) plane.push_back(std::vector<float>(32, 0.5f));
    img.push_back(plane);
  }
  nlohmann::json ragged = img;
  ragged[2][31].erase(0);
  CHECK(status_of([&] { serve::decode_json(nlohmann::json{{"instances", {ragged}}}.dump(), spec); }) == 400);
  nlohmann::json stringy = img;
  stringy[1][3][4] = "x";
  CHECK(status_of([&] { serve::decode_json(nlohmann::json{{"instances", {stringy}}}.dump(), spec); }) == 400);
  CHECK(serve::decode_json(nlohmann::json{{"instances", {img}}}.dump(), spec).n == 1);
  // Pixels outside [0, 255] in HWC layout.
  nlohmann::json hwc = nlohmann::json::array();
  for (int y = 0; y < 32; ++y) {
    nlohmann::json row = nlohmann::json::array();
    for (int x = 0; x < 32; ++x) row.push_back({0, 300, 0});
    hwc.push_back(row);
  }
  CHECK(status_of([&] { serve::decode_json(nlohmann::json::array({hwc}).dump(), spec); }) == 400);
}

TEST_CASE("a 32x32 PNG decodes to exactly its pixels") {
  serve::Images im = serve::decode_image(fixture("img32.png"), "image/png", cifar_spec());
  CHECK(im.n == 1);
  CHECK(max_abs_diff(im.data, npy_floats("img32_norm.npy")) <= 1e-6);
  // application/x-image takes PNG too.
  CHECK(serve::decode_image(fixture("img32.png"), "application/x-image", cifar_spec()).data ==
        im.data);
}

TEST_CASE("other sizes are resized like PIL's bilinear; alpha dropped, gray expanded") {
  struct Case { const char* file; const char* pil; };
  for (Case c : {Case{"img64x48_rgba.png", "img64x48_pil.npy"},
                 Case{"img20x17_gray.png", "img20x17_pil.npy"}}) {
    INFO(c.file);
    std::vector<uint8_t> px = serve::decode_image_pixels(fixture(c.file), "image/png", 32);
    io::NamedArray ref = io::parse_npy(fixture(c.pil), c.pil);
    REQUIRE(ref.dtype == io::DType::u8);
    REQUIRE(ref.numel() == 32 * 32 * 3);
    int worst = 0;
    for (size_t i = 0; i < px.size(); ++i)
      worst = std::max(worst, std::abs(int(px[i]) - int(std::to_integer<uint8_t>(ref.bytes[i]))));
    CHECK(worst <= 2);  // smooth test images: stb's triangle filter and PIL agree within 2 levels
  }
}

TEST_CASE("JPEG decodes exactly as PIL decodes it (both are libjpeg-turbo, default settings)") {
  std::vector<uint8_t> px = serve::decode_image_pixels(fixture("img32.jpg"), "image/jpeg", 32);
  io::NamedArray ref = io::parse_npy(fixture("img32_jpg_pil.npy"), "pil");
  int worst = 0;
  for (size_t i = 0; i < px.size(); ++i)
    worst = std::max(worst, std::abs(int(px[i]) - int(std::to_integer<uint8_t>(ref.bytes[i]))));
  CHECK(worst == 0);
}

TEST_CASE("bad images are 400") {
  auto spec = cifar_spec();
  std::string png = fixture("img32.png"), jpg = fixture("img32.jpg");
  CHECK(status_of([&] { serve::decode_image(jpg, "image/png", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_image(png, "image/jpeg", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_image("GIF89a....", "application/x-image", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_image(png.substr(0, 40), "image/png", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_image(jpg.substr(0, 30), "image/jpeg", spec); }) == 400);
  CHECK(status_of([&] { serve::decode_image("", "image/png", spec); }) == 400);
  // A PNG header claiming 100000 x 100000 pixels is refused before decoding.
  std::string huge = png;
  const unsigned char dims[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};
  std::memcpy(huge.data() + 16, dims, 8);
  CHECK(status_of([&] { serve::decode_image(huge, "image/png", spec); }) == 400);
}

TEST_CASE("unknown content types are 415") {
  auto spec = cifar_spec();
  CHECK(status_of([&] { serve::decode_request("text/csv", "1,2", spec); }) == 415);
  CHECK(status_of([&] { serve::decode_request("", "", spec); }) == 415);
  CHECK(status_of([&] { serve::check_content_type("Application/X-NPY"); }) == 0);
}

TEST_CASE("Accept negotiation") {
  using serve::ResponseType;
  const auto npy = ResponseType::npy, json = ResponseType::json;
  CHECK(serve::negotiate_accept("", npy) == npy);
  CHECK(serve::negotiate_accept("*/*", npy) == npy);
  CHECK(serve::negotiate_accept("*/*", json) == json);
  CHECK(serve::negotiate_accept("application/x-npy", json) == npy);
  CHECK(serve::negotiate_accept("application/json", npy) == json);
  CHECK(serve::negotiate_accept("application/*", json) == json);
  CHECK(serve::negotiate_accept("text/html, application/json;q=0.5", npy) == json);
  CHECK(serve::negotiate_accept("application/json;q=0.4, application/x-npy;q=0.9", json) == npy);
  CHECK(serve::negotiate_accept("application/x-npy;q=0, */*", npy) == json);
  CHECK(serve::negotiate_accept("application/json, */*;q=0.1", npy) == json);
  CHECK(status_of([&] { serve::negotiate_accept("text/html", npy); }) == 406);
  CHECK(status_of([&] { serve::negotiate_accept("image/png, text/*", npy); }) == 406);
  CHECK(status_of([&] { serve::negotiate_accept("application/json;q=0", json); }) == 406);
}

TEST_CASE("NPY answers are (n,classes) float32 that numpy's format reads back") {
  std::vector<float> lp = {-0.1f, -2.5f, -3.0f, -1.0f, -0.5f, -4.0f};
  std::string body = serve::encode_npy_response(lp.data(), 2, 3);
  io::NamedArray a = io::parse_npy(body, "answer");
  CHECK(a.dtype == io::DType::f32);
  CHECK(a.shape == std::vector<int64_t>{2, 3});
  CHECK(std::vector<float>(a.f32(), a.f32() + 6) == lp);
}

TEST_CASE("JSON answers list the top-k classes with names and probabilities") {
  std::vector<float> lp = {std::log(0.2f), std::log(0.5f), std::log(0.3f)};
  auto doc = nlohmann::json::parse(
      serve::encode_json_response(lp.data(), 1, 3, {"cat", "dog", "emu"}, 2));
  auto top = doc["predictions"][0]["top_k"];
  REQUIRE(top.size() == 2);
  CHECK(top[0]["class"] == "dog");
  CHECK(top[0]["index"] == 1);
  CHECK(top[0]["probability"].get<double>() == doctest::Approx(0.5).epsilon(1e-6));
  CHECK(top[1]["class"] == "emu");
  CHECK(serve::parse_top_k("", 5, 3) == 3);
  CHECK(serve::parse_top_k("2", 5, 100) == 2);
  CHECK(serve::parse_top_k("1000", 5, 100) == 100);
  CHECK(status_of([&] { serve::parse_top_k("0", 5, 100); }) == 400);
  CHECK(status_of([&] { serve::parse_top_k("-1", 5, 100); }) == 400);
  CHECK(status_of([&] { serve::parse_top_k("two", 5, 100); }) == 400);
  CHECK(status_of([&] { serve::parse_top_k("99999999999999999999", 5, 100); }) == 400);
}
