// Request decoding and response encoding for `POST /invocations` (see codec.h for the formats).
#include "kiln/serve/codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "kiln/core/error.h"
#include "kiln/io/npy.h"
#include "kiln/serve/budget.h"
#include "kiln/serve/image.h"

namespace kiln::serve {

namespace {

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + ")";
}

enum class Layout { chw_normalized, hwc_pixels };

// Checks a shape against (N,3,S,S) / (3,S,S) or (N,S,S,3) / (S,S,3); returns N and the layout.
int64_t check_shape(const std::vector<int64_t>& shape, const InputSpec& spec, bool allow_chw,
                    bool allow_hwc, Layout& layout, const char* what) {
  const int64_t S = spec.image_size;
  std::vector<int64_t> img(shape);
  int64_t n = 1;
  if (shape.size() == 4) {
    n = shape[0];
    img.erase(img.begin());
  }
  if (img.size() == 3 && allow_chw && img[0] == 3 && img[1] == S && img[2] == S) {
    layout = Layout::chw_normalized;
  } else if (img.size() == 3 && allow_hwc && img[0] == S && img[1] == S && img[2] == 3) {
    layout = Layout::hwc_pixels;
  } else {
    std::string expected;
    std::string s = std::to_string(S);
    if (allow_chw) expected += "(N,3," + s + "," + s + ")";
    if (allow_chw && allow_hwc) expected += " normalized or ";
    if (allow_hwc) expected += "(N," + s + "," + s + ",3) raw pixels";
    throw HttpError(400, std::string(what) + " has shape " + shape_text(shape) + ", expected " +
                             expected);
  }
  if (n < 1) throw HttpError(400, std::string(what) + " holds no images (N = 0)");
  return n;
}

// Raw HWC pixels (any numeric type convertible to float, values in [0,255]) -> normalized CHW.
template <typename T>
void pixels_to_chw(const T* src, int64_t n, const InputSpec& spec, float* dst) {
  const int64_t S = spec.image_size, plane = S * S;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < plane; ++p)
      for (size_t c = 0; c < 3; ++c) {
        // As torchvision computes it: ToTensor's p/255 in fp32, then Normalize's (x - mean)/std.
        float v = static_cast<float>(src[(i * plane + p) * 3 + int64_t(c)]) / 255.0f;
        dst[(i * 3 + int64_t(c)) * plane + p] = (v - spec.mean[c]) / spec.std[c];
      }
}

void check_finite(const std::vector<float>& v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw HttpError(400, std::string(what) + " holds a non-finite value at flat index " +
                               std::to_string(i));
}

}  // namespace

void normalize_pixels(const uint8_t* src, int64_t n, const InputSpec& spec, float* dst) {
  pixels_to_chw(src, n, spec, dst);
}

HttpError::HttpError(int status, const std::string& reason)
    : std::runtime_error(one_line(reason)), status_(status) {}

std::string media_type(std::string_view content_type) {
  size_t semi = content_type.find(';');
  return lower(trim(content_type.substr(0, semi)));
}

Images decode_npy(std::string_view body, const InputSpec& spec, Reservation* mem) {
  // A copy of the data, and the output: up to 4 bytes per uint8 pixel.
  if (mem) mem->add(body.size() * 5 + 4096, "decoding an NPY body");
  io::NamedArray a;
  try {
    a = io::parse_npy(body, "request body");
  } catch (const kiln::Error& e) {
    throw HttpError(400, std::string("malformed NPY: ") + e.what());
  }
  Images out;
  Layout layout;
  const int64_t S = spec.image_size;
  if (a.dtype == io::DType::f32 || a.dtype == io::DType::f64) {
    out.n = check_shape(a.shape, spec, true, false, layout, "NPY float array");
    out.data.resize(static_cast<size_t>(out.n * 3 * S * S));
    if (a.dtype == io::DType::f32) {
      std::memcpy(out.data.data(), a.bytes.data(), out.data.size() * sizeof(float));
    } else {
      const auto* src = reinterpret_cast<const double*>(a.bytes.data());
      for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = static_cast<float>(src[i]);
    }
    check_finite(out.data, "NPY array");
  } else if (a.dtype == io::DType::u8) {
    out.n = check_shape(a.shape, spec, false, true, layout, "NPY uint8 array");
    out.data.resize(static_cast<size_t>(out.n * 3 * S * S));
    normalize_pixels(reinterpret_cast<const uint8_t*>(a.bytes.data()), out.n, spec, out.data.data());
  } else {
    throw HttpError(400, std::string("NPY dtype is ") + io::dtype_name(a.dtype) +
                             ", expected float32 (N,3,S,S) normalized or uint8 (N,S,S,3) pixels");
  }
  return out;
}

namespace {

// Streams a JSON body (nlohmann's SAX interface, no document tree) into a flat list of numbers,
// checking as it goes that X is a list of lists nested at most 4 deep, that every list at a depth
// has the length of the first one there, and that every leaf is a number at the same depth. It
// holds 4 bytes per number, whatever the body claims.
class JsonImages : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<float> flat;
  std::vector<int64_t> shape;  // lengths per depth, known once the first list at a depth closed
  std::string error;           // first problem found (the parse stops there)
  bool found = false;          // X seen

  bool null() override { return leaf("null"); }
  bool boolean(bool) override { return leaf("boolean"); }
  bool number_integer(number_integer_t v) override { return number(static_cast<double>(v)); }
  bool number_unsigned(number_unsigned_t v) override { return number(static_cast<double>(v)); }
  bool number_float(number_float_t v, const string_t&) override { return number(v); }
  bool string(string_t&) override { return leaf("string"); }
  bool binary(binary_t&) override { return leaf("binary"); }
  bool start_object(std::size_t) override {
    if (level_ > 0) return fail("JSON array holds an object where a number was expected");
    if (skip_ == 0 && at_x()) {
      if (objects_ > 0) return fail("JSON instances is not a list");
    } else {
      return skip_in();
    }
    ++objects_;
    return true;
  }
  bool key(string_t& k) override {
    if (skip_ == 0 && objects_ == 1 && level_ == 0) expect_x_ = k == "instances";
    return true;
  }
  bool end_object() override {
    if (skip_ > 0) return skip_out();
    --objects_;
    if (!found && objects_ == 0)
      return fail("JSON object has no \"instances\" field (expected {\"instances\": [...]} or a bare list)");
    return true;
  }
  bool start_array(std::size_t) override {
    if (skip_ > 0) return skip_in();
    if (level_ == 0) {
      if (!at_x()) return skip_in();
      if (found) return fail("JSON object has more than one \"instances\" field");
      found = true;
      expect_x_ = false;
    } else {
      if (leaf_depth_ >= 0 && level_ >= leaf_depth_)
        return fail("JSON array is ragged: a list at depth " + std::to_string(level_) +
                    " where a number was expected");
      ++count_[level_ - 1];
    }
    if (level_ >= 4) return fail("JSON array is nested deeper than 4 levels");
    count_[level_++] = 0;
    return true;
  }
  bool end_array() override {
    if (skip_ > 0) return skip_out();
    const size_t d = static_cast<size_t>(--level_);
    if (shape.size() <= d) shape.resize(d + 1, -1);
    if (shape[d] < 0) {
      shape[d] = count_[d];
    } else if (shape[d] != count_[d]) {
      return fail("JSON array is ragged: expected a list of " + std::to_string(shape[d]) +
                  " at depth " + std::to_string(d) + ", found a list of " + std::to_string(count_[d]));
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    if (error.empty()) error = std::string("malformed JSON body: ") + e.what();
    return false;
  }

 private:
  bool at_x() const { return objects_ == 0 ? !found : expect_x_; }
  bool number(double v) {
    if (skip_ > 0) return true;
    if (level_ == 0) {
      if (at_x()) return fail("JSON instances is not a list");
      return true;
    }
    if (leaf_depth_ < 0) leaf_depth_ = level_;
    if (level_ != leaf_depth_)
      return fail("JSON array is ragged: a number at depth " + std::to_string(level_ - 1) +
                  " where a list was expected");
    ++count_[level_ - 1];
    flat.push_back(static_cast<float>(v));
    return true;
  }
  bool leaf(const char* type) {
    if (skip_ > 0) return true;
    if (level_ > 0)
      return fail(std::string("JSON array holds a ") + type + " where a number was expected");
    if (at_x()) return fail("JSON instances is not a list");
    return true;
  }
  bool skip_in() {
    ++skip_;
    expect_x_ = false;
    return true;
  }
  bool skip_out() {
    --skip_;
    return true;
  }
  bool fail(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }

  int level_ = 0;        // depth inside X's lists
  int leaf_depth_ = -1;  // depth of the numbers, from the first one
  int64_t count_[4] = {0, 0, 0, 0};
  int objects_ = 0;      // depth of objects around X (0 or 1)
  int skip_ = 0;         // depth inside a value that is not X
  bool expect_x_ = false;
};

}  // namespace

Images decode_json(std::string_view body, const InputSpec& spec, Reservation* mem) {
  // The flat numbers (at most one per 2 bytes, in a vector that may double) and the output.
  if (mem) mem->add(body.size() * 6 + 4096, "decoding a JSON body");
  JsonImages sax;
  const bool ok = nlohmann::json::sax_parse(body.data(), body.data() + body.size(), &sax);
  if (!ok || !sax.error.empty())
    throw HttpError(400, sax.error.empty() ? std::string("malformed JSON body") : sax.error);
  if (!sax.found) throw HttpError(400, "JSON instances is not a list");
  std::vector<int64_t> shape = sax.shape;
  Layout layout;
  int64_t n = check_shape(shape, spec, true, true, layout, "JSON array");
  std::vector<float>& flat = sax.flat;
  check_finite(flat, "JSON array");
  Images out;
  out.n = n;
  if (layout == Layout::chw_normalized) {
    out.data = std::move(flat);
  } else {
    for (size_t i = 0; i < flat.size(); ++i)
      if (flat[i] < 0.f || flat[i] > 255.f)
        throw HttpError(400, "JSON raw pixel value " + std::to_string(flat[i]) +
                                 " at flat index " + std::to_string(i) + " is outside [0, 255]");
    out.data.resize(flat.size());
    pixels_to_chw(flat.data(), n, spec, out.data.data());
  }
  return out;
}

void check_content_type(std::string_view content_type) {
  const std::string media = media_type(content_type);
  if (media == "application/x-npy" || media == "application/json" || media == "image/png" ||
      media == "image/jpeg" || media == "application/x-image")
    return;
  throw HttpError(415, (content_type.empty() ? std::string("missing Content-Type")
                                             : "unsupported Content-Type '" +
                                                   std::string(content_type) + "'") +
                           ": use application/x-npy, application/json, image/png, image/jpeg "
                           "or application/x-image");
}

Images decode_request(std::string_view content_type, std::string_view body,
                      const InputSpec& spec, Reservation* mem) {
  check_content_type(content_type);
  const std::string media = media_type(content_type);
  if (media == "application/x-npy") return decode_npy(body, spec, mem);
  if (media == "application/json") return decode_json(body, spec, mem);
  return decode_image(body, media, spec, mem);
}

ResponseType default_response_type(std::string_view content_type) {
  return media_type(content_type) == "application/x-npy" ? ResponseType::npy : ResponseType::json;
}

ResponseType negotiate_accept(std::string_view accept, ResponseType fallback) {
  if (trim(accept).empty()) return fallback;
  // For each type we can produce, the q of the most specific matching range (-1: no match).
  double q_npy = -1, q_json = -1;
  int spec_npy = -1, spec_json = -1;
  size_t pos = 0;
  while (pos <= accept.size()) {
    size_t comma = accept.find(',', pos);
    std::string_view item =
        accept.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? accept.size() + 1 : comma + 1;
    std::string range = media_type(item);
    if (range.empty()) continue;
    double q = 1.0;
    for (size_t semi = item.find(';'); semi != std::string_view::npos;) {
      size_t next = item.find(';', semi + 1);
      std::string param = lower(trim(item.substr(semi + 1, next == std::string_view::npos
                                                              ? std::string_view::npos
                                                              : next - semi - 1)));
      if (param.rfind("q=", 0) == 0) {
        char* end = nullptr;
        double v = std::strtod(param.c_str() + 2, &end);
        if (end != param.c_str() + 2) q = v;
      }
      semi = next;
    }
    auto consider = [&](const std::string& type, double& q_best, int& spec_best) {
      int specificity = -1;
      if (range == type) specificity = 2;
      else if (range == type.substr(0, type.find('/')) + "/*") specificity = 1;
      else if (range == "*/*") specificity = 0;
      if (specificity > spec_best) {
        spec_best = specificity;
        q_best = q;
      }
    };
    consider("application/x-npy", q_npy, spec_npy);
    consider("application/json", q_json, spec_json);
  }
  bool npy_ok = q_npy > 0, json_ok = q_json > 0;
  if (!npy_ok && !json_ok)
    throw HttpError(406, "cannot produce any type in Accept '" + std::string(accept) +
                             "': use application/x-npy or application/json");
  if (npy_ok && json_ok) {
    if (q_npy == q_json) {
      // Equal preference: an exact mention beats a wildcard, then the request's natural type.
      if (spec_npy != spec_json) return spec_npy > spec_json ? ResponseType::npy : ResponseType::json;
      return fallback;
    }
    return q_npy > q_json ? ResponseType::npy : ResponseType::json;
  }
  return npy_ok ? ResponseType::npy : ResponseType::json;
}

std::string encode_npy_response(const float* log_probs, int64_t n, int64_t classes) {
  io::NamedArray a;
  a.name = "log_probs";
  a.dtype = io::DType::f32;
  a.shape = {n, classes};
  a.bytes.resize(static_cast<size_t>(n * classes) * sizeof(float));
  std::memcpy(a.bytes.data(), log_probs, a.bytes.size());
  return io::encode_npy(a);
}

std::string encode_json_response(const float* log_probs, int64_t n, int64_t classes,
                                 const std::vector<std::string>& class_names, int64_t k) {
  k = std::clamp<int64_t>(k, 1, classes);
  nlohmann::json preds = nlohmann::json::array();
  std::vector<int64_t> order(static_cast<size_t>(classes));
  for (int64_t i = 0; i < n; ++i) {
    const float* row = log_probs + i * classes;
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    nlohmann::json top = nlohmann::json::array();
    for (int64_t j = 0; j < k; ++j) {
      int64_t c = order[static_cast<size_t>(j)];
      std::string name = static_cast<size_t>(c) < class_names.size()
                             ? class_names[static_cast<size_t>(c)]
                             : std::to_string(c);
      top.push_back({{"index", c}, {"class", name}, {"probability", std::exp(double(row[c]))}});
    }
    preds.push_back({{"top_k", std::move(top)}});
  }
  return nlohmann::json{{"predictions", std::move(preds)}}.dump() + "\n";
}

int64_t parse_top_k(const std::string& text, int64_t fallback, int64_t classes) {
  std::string t = trim(text);
  if (t.empty()) return std::clamp<int64_t>(fallback, 1, classes);
  int64_t k = 0;
  for (char c : t) {
    if (c < '0' || c > '9' || k > 1000000)
      throw HttpError(400, "top-k '" + t + "' is not a positive integer");
    k = k * 10 + (c - '0');
  }
  if (k < 1) throw HttpError(400, "top-k '" + t + "' is not a positive integer");
  return std::min(k, classes);
}

}  // namespace kiln::serve
