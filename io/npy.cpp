// NPY reader/writer. The header is a Python dict literal ({'descr': '<f4', 'fortran_order':
// False, 'shape': (2, 3), }); a tiny literal parser reads exactly that grammar and nothing else.
#include "kiln/io/npy.h"

#include <cstring>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/io/bytes.h"

namespace kiln::io {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

// Reads the header dict: string keys, values are strings, True/False or tuples of integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view s, const std::string& what) : s_(s), what_(what) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') { ++i_; break; }
      std::string key = string_lit();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() == '[')
          bad("'descr' a simple dtype string like '<f4'", "a structured dtype",
              "kiln reads plain numeric arrays; save with arr.astype(np.float32)");
        descr = string_lit();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = bool_lit();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple_lit();
        have_shape = true;
      } else {
        bad("keys descr, fortran_order, shape", quoted_key(key));
      }
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      expect('}');
      break;
    }
    if (!have_descr || !have_fortran || !have_shape)
      bad("keys descr, fortran_order and shape", "a header missing one of them");
  }

 private:
  [[noreturn]] void bad(const std::string& expected, const std::string& found,
                        const std::string& hint = {}) {
    fail(what_ + ": NPY header", expected, found, hint);
  }
  static std::string quoted_key(const std::string& k) { return detail::quoted(k); }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() { while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_; }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("'") + c + "' at offset " + std::to_string(i_),
                         i_ < s_.size() ? detail::quoted(s_.substr(i_, 20)) : "the end");
    ++i_;
  }
  std::string string_lit() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') bad("a quoted string at offset " + std::to_string(i_),
                                   detail::quoted(s_.substr(i_, 20)));
    size_t end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos) bad("a closing quote", "the end of the header");
    std::string r(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return r;
  }
  bool bool_lit() {
    if (s_.substr(i_, 4) == "True") { i_ += 4; return true; }
    if (s_.substr(i_, 5) == "False") { i_ += 5; return false; }
    bad("True or False for fortran_order", detail::quoted(s_.substr(i_, 10)));
  }
  std::vector<int64_t> tuple_lit() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') { ++i_; break; }
      if (dims.size() >= 64) bad("at most 64 dimensions", "more");
      int64_t v = 0;
      size_t start = i_;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, peek() - '0', &v))
          bad("a dimension that fits in 64 bits", detail::quoted(s_.substr(start, 30)));
        ++i_;
      }
      if (i_ == start) bad("a non-negative integer dimension", detail::quoted(s_.substr(i_, 20)));
      if (peek() == 'L') ++i_;  // Python 2 long literal
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      expect(')');
      break;
    }
    return dims;
  }

  std::string_view s_;
  const std::string& what_;
  size_t i_ = 0;
};

}  // namespace

std::string npy_descr(DType dtype) {
  switch (dtype) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::f16: return "<f2";
    case DType::i64: return "<i8";
    case DType::i32: return "<i4";
    case DType::i16: return "<i2";
    case DType::i8: return "|i1";
    case DType::u8: return "|u1";
    case DType::bool_: return "|b1";
    case DType::bf16: break;
  }
  throw Error("NPY has no bfloat16 dtype", "convert the array to float32 first");
}

DType dtype_from_npy_descr(const std::string& descr, const std::string& what) {
  if (descr.size() >= 2 && descr[0] == '>' && descr.substr(1) != "i1" && descr.substr(1) != "u1" &&
      descr.substr(1) != "b1")
    throw Error(what + ": big-endian dtype '" + descr + "' is not supported",
                "re-save it little-endian: np.save(path, arr.astype(arr.dtype.newbyteorder('<')))");
  std::string t = descr;
  if (!t.empty() && (t[0] == '<' || t[0] == '|' || t[0] == '=' || t[0] == '>')) t = t.substr(1);
  if (t == "f4") return DType::f32;
  if (t == "f8") return DType::f64;
  if (t == "f2") return DType::f16;
  if (t == "i8") return DType::i64;
  if (t == "i4") return DType::i32;
  if (t == "i2") return DType::i16;
  if (t == "i1") return DType::i8;
  if (t == "u1") return DType::u8;
  if (t == "b1") return DType::bool_;
  fail(what + ": NPY dtype", "one of <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1", detail::quoted(descr),
       "convert the array, e.g. arr.astype(np.float32), before np.save");
}

NamedArray parse_npy(std::string_view bytes, const std::string& what) {
  if (bytes.size() < kMagicLen + 4 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
    fail(what, "an NPY file (starting with \\x93NUMPY)",
         bytes.size() < kMagicLen ? std::to_string(bytes.size()) + " bytes"
                                  : detail::quoted(bytes.substr(0, kMagicLen)));
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = detail::load_le<uint16_t>(bytes.data() + 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail(what, "a complete NPY v2 preamble", "a truncated file");
    header_len = detail::load_le<uint32_t>(bytes.data() + 8);
    header_start = 12;
  } else {
    fail(what + ": NPY version", "1.x, 2.x or 3.x", std::to_string(major));
  }
  if (header_len > bytes.size() - header_start)
    fail(what + ": NPY header length", "at most " + std::to_string(bytes.size() - header_start) +
         " bytes (what the file holds)", std::to_string(header_len));
  std::string_view header = bytes.substr(header_start, header_len);

  std::string descr;
  bool fortran = false;
  NamedArray a;
  HeaderParser(header, what).parse(descr, fortran, a.shape);
  if (fortran)
    throw Error(what + ": Fortran-order arrays are not supported",
                "save a C-order copy: np.save(path, np.ascontiguousarray(arr))");
  a.dtype = dtype_from_npy_descr(descr, what);
  int64_t nbytes = detail::checked_nbytes(a.shape, a.dtype, what);
  size_t data_start = header_start + header_len;
  size_t avail = bytes.size() - data_start;
  if (static_cast<uint64_t>(nbytes) != avail)
    fail(what + ": NPY data of " + std::string(dtype_name(a.dtype)) + " " + shape_str(a.shape),
         std::to_string(nbytes) + " bytes",
         std::to_string(avail) + " bytes" + (avail < static_cast<uint64_t>(nbytes) ? " (truncated file)" : ""));
  a.bytes.resize(static_cast<size_t>(nbytes));
  if (nbytes) std::memcpy(a.bytes.data(), bytes.data() + data_start, static_cast<size_t>(nbytes));
  return a;
}

NamedArray read_npy(const std::filesystem::path& path) {
  NamedArray a = parse_npy(read_file(path), path.string());
  a.name = path.stem().string();
  return a;
}

std::string encode_npy(const NamedArray& array) {
  int64_t nbytes = detail::checked_nbytes(array.shape, array.dtype, array.name);
  KILN_ASSERT(static_cast<uint64_t>(nbytes) == array.bytes.size(),
              array.name + ": byte count does not match dtype and shape");
  std::string dict = "{'descr': '" + npy_descr(array.dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_str(array.shape) + ", }";
  // numpy pads the header with spaces and a newline so the data start on a 64-byte boundary.
  size_t preamble = 10;
  size_t total = preamble + dict.size() + 1;
  int version = 1;
  if (total + 63 > 65535 + preamble) { version = 2; preamble = 12; total = preamble + dict.size() + 1; }
  size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(version);
  out += '\0';
  if (version == 1) detail::append_le<uint16_t>(out, static_cast<uint16_t>(dict.size()));
  else detail::append_le<uint32_t>(out, static_cast<uint32_t>(dict.size()));
  out += dict;
  out.append(reinterpret_cast<const char*>(array.bytes.data()), array.bytes.size());
  return out;
}

void write_npy(const std::filesystem::path& path, const NamedArray& array) {
  write_file_atomic(path, encode_npy(array));
}

}  // namespace kiln::io
