// safetensors reader/writer. The JSON header is parsed by nlohmann::json after a cheap nesting
// check; then every tensor's offsets are validated before any byte is copied.
#include "kiln/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/io/bytes.h"

namespace kiln::io {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::i16: return "I16";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
    case DType::bool_: return "BOOL";
  }
  return "?";
}

DType parse_st_dtype(const std::string& s, const std::string& ctx) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::i32,
                  DType::i16, DType::i8, DType::u8, DType::bool_})
    if (s == st_dtype(t)) return t;
  fail(ctx + ": dtype", "one of F32 F64 F16 BF16 I64 I32 I16 I8 U8 BOOL", detail::quoted(s));
}

// Nesting depth of JSON text (outside strings); bounds what the parser and destructor recurse on.
size_t json_depth(std::string_view s) {
  size_t depth = 0, max_depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') ++i;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

struct Slot { NamedArray array; uint64_t begin, end; };

}  // namespace

StateDict parse_safetensors(std::string_view bytes, const std::string& what, Metadata* metadata) {
  if (bytes.size() < 8) fail(what, "a safetensors file (8-byte header length first)",
                             std::to_string(bytes.size()) + " bytes");
  uint64_t header_len = detail::load_le<uint64_t>(bytes.data());
  if (header_len > kMaxHeader || header_len > bytes.size() - 8)
    fail(what + ": safetensors header length",
         "at most " + std::to_string(std::min<uint64_t>(kMaxHeader, bytes.size() - 8)) + " bytes",
         std::to_string(header_len), header_len > bytes.size() - 8 ? "is the file truncated?" : "");
  std::string_view header = bytes.substr(8, header_len);
  if (header.empty() || header[0] != '{')
    fail(what + ": safetensors header", "a JSON object starting with '{'",
         detail::quoted(header.substr(0, 20)));
  if (json_depth(header) > 3)
    fail(what + ": safetensors header", "JSON nested at most 3 levels", "deeper nesting");
  json h;
  try {
    h = json::parse(header);
  } catch (const json::exception& e) {
    throw Error(what + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) fail(what + ": safetensors header", "a JSON object", h.type_name());

  const uint64_t data_size = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;
  std::vector<Slot> slots;
  for (auto& [name, v] : h.items()) {
    std::string ctx = what + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!v.is_object()) fail(what + ": __metadata__", "an object of strings", v.type_name());
      for (auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(what + ": __metadata__ '" + k + "'", "a string", s.type_name());
        if (metadata) (*metadata)[k] = s.get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        v.size() != 3)
      fail(ctx, "an object with exactly dtype, shape and data_offsets", v.dump().substr(0, 120));
    if (!v["dtype"].is_string()) fail(ctx + ": dtype", "a string", v["dtype"].type_name());
    Slot s;
    s.array.name = name;
    s.array.dtype = parse_st_dtype(v["dtype"].get<std::string>(), ctx);
    const json& shape = v["shape"];
    if (!shape.is_array() || shape.size() > 64)
      fail(ctx + ": shape", "an array of at most 64 integers", shape.dump().substr(0, 80));
    for (const json& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail(ctx + ": shape", "non-negative integers", shape.dump().substr(0, 80));
      s.array.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(ctx + ": data_offsets", "[begin, end] non-negative integers", off.dump().substr(0, 80));
    s.begin = off[0].get<uint64_t>();
    s.end = off[1].get<uint64_t>();
    if (s.begin > s.end || s.end > data_size)
      fail(ctx + ": data_offsets", "0 <= begin <= end <= " + std::to_string(data_size) + " (data size)",
           "[" + std::to_string(s.begin) + ", " + std::to_string(s.end) + "]");
    int64_t nbytes = detail::checked_nbytes(s.array.shape, s.array.dtype, ctx);
    if (static_cast<uint64_t>(nbytes) != s.end - s.begin)
      fail(ctx + ": " + std::string(dtype_name(s.array.dtype)) + " " + shape_str(s.array.shape),
           std::to_string(nbytes) + " bytes", std::to_string(s.end - s.begin) + " bytes (data_offsets)");
    slots.push_back(std::move(s));
  }
  std::sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const Slot& s : slots) {
    if (s.begin != pos)
      fail(what + ": tensor '" + s.array.name + "' data_offsets",
           "to begin at " + std::to_string(pos) + " (tensors contiguous, no gaps or overlaps)",
           std::to_string(s.begin));
    pos = s.end;
  }
  if (pos != data_size)
    fail(what + ": safetensors data", std::to_string(pos) + " bytes (what the header describes)",
         std::to_string(data_size) + " bytes");
  StateDict out;
  out.reserve(slots.size());
  for (Slot& s : slots) {
    s.array.bytes.resize(s.end - s.begin);
    if (s.end > s.begin) std::memcpy(s.array.bytes.data(), data + s.begin, s.end - s.begin);
    out.push_back(std::move(s.array));
  }
  return out;
}

StateDict read_safetensors(const std::filesystem::path& path, Metadata* metadata) {
  return parse_safetensors(read_file(path), path.string(), metadata);
}

namespace {

// The 8-byte length and the JSON header (padded so the data start 8-byte aligned, as the Rust
// writer does); the tensors' bytes follow in StateDict order.
std::string safetensors_preamble(const StateDict& tensors, const Metadata& metadata) {
  json h = json::object();
  uint64_t pos = 0;
  for (const NamedArray& a : tensors) {
    int64_t nbytes = detail::checked_nbytes(a.shape, a.dtype, a.name);
    KILN_ASSERT(static_cast<uint64_t>(nbytes) == a.bytes.size(), a.name + ": bytes do not match shape");
    if (a.name == "__metadata__" || h.contains(a.name))
      throw Error("cannot write safetensors: tensor name '" + a.name + "' is reserved or repeated");
    h[a.name] = {{"dtype", st_dtype(a.dtype)}, {"shape", a.shape}, {"data_offsets", {pos, pos + nbytes}}};
    pos += static_cast<uint64_t>(nbytes);
  }
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  detail::append_le<uint64_t>(out, header.size());
  return out + header;
}

}  // namespace

std::string encode_safetensors(const StateDict& tensors, const Metadata& metadata) {
  std::string out = safetensors_preamble(tensors, metadata);
  for (const NamedArray& a : tensors) out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  return out;
}

void write_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                       const Metadata& metadata) {
  std::string preamble = safetensors_preamble(tensors, metadata);
  AtomicFile file(path);  // streamed: no second copy of the weights in memory
  file.write(preamble);
  for (const NamedArray& a : tensors) file.write(a.bytes.data(), a.bytes.size());
  file.commit();
}

}  // namespace kiln::io
