// The restricted unpickler: a loop over opcodes that builds PickleValues in an arena. GLOBAL
// names are checked against the allow-list as soon as they are read; calls (REDUCE, NEWOBJ,
// BUILD) are interpreted only for those globals, by hand-written code below; nothing from the
// file is ever executed. Every read is bounds-checked; stack, memo and value counts are capped.
#include "kiln/io/pickle.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "kiln/core/error.h"
#include "kiln/io/bytes.h"

namespace kiln::io {
namespace {

// Python 2 module names (pickle's fix_imports) mapped to their Python 3 names.
std::string canonical_global(std::string module, const std::string& name) {
  if (module == "__builtin__") module = "builtins";
  if (module == "copy_reg") module = "copyreg";
  if (module == "numpy._core.multiarray") module = "numpy.core.multiarray";
  if (module == "numpy._core.numeric") module = "numpy.core.numeric";
  return module + "." + name;
}

const char* const kTorchStorages[] = {
    "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"};
const DType kTorchStorageTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64,
                                    DType::i32, DType::i16, DType::i8,  DType::u8,   DType::bool_};

std::vector<std::string> make_allow_list() {
  std::vector<std::string> v = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch.Size",
      "numpy.core.multiarray._reconstruct",
      "numpy.core.multiarray.scalar",
      "numpy.core.numeric._frombuffer",
      "numpy.ndarray",
      "numpy.dtype",
      "_codecs.encode",
      "builtins.set",
      "builtins.frozenset",
      "builtins.bytearray",
  };
  for (const char* s : kTorchStorages) v.push_back(std::string("torch.") + s);
  return v;
}

bool numpy_dtype_from_code(const std::string& code, DType& out) {
  std::string t = code;
  if (!t.empty() && (t[0] == '<' || t[0] == '|' || t[0] == '=')) t = t.substr(1);
  static const std::pair<const char*, DType> table[] = {
      {"f4", DType::f32}, {"f8", DType::f64}, {"f2", DType::f16}, {"i8", DType::i64},
      {"i4", DType::i32}, {"i2", DType::i16}, {"i1", DType::i8},  {"u1", DType::u8},
      {"b1", DType::bool_}, {"?", DType::bool_}, {"float32", DType::f32}, {"float64", DType::f64},
      {"int64", DType::i64}, {"int32", DType::i32}, {"uint8", DType::u8}, {"bool", DType::bool_}};
  for (const auto& [name, dt] : table)
    if (t == name) { out = dt; return true; }
  return false;
}

}  // namespace

const std::vector<std::string>& allowed_pickle_globals() {
  static const std::vector<std::string> list = make_allow_list();
  return list;
}

// --- PickleValue accessors ---------------------------------------------------------------------

const char* PickleValue::kind_name() const {
  switch (kind) {
    case PickleKind::none: return "None";
    case PickleKind::boolean: return "bool";
    case PickleKind::integer: return "int";
    case PickleKind::floating: return "float";
    case PickleKind::str: return "str";
    case PickleKind::bytes: return "bytes";
    case PickleKind::list: return "list";
    case PickleKind::tuple: return "tuple";
    case PickleKind::dict: return "dict";
    case PickleKind::set: return "set";
    case PickleKind::global: return "global";
    case PickleKind::ndarray: return "numpy.ndarray";
    case PickleKind::dtype: return "numpy.dtype";
    case PickleKind::storage: return "torch storage";
    case PickleKind::tensor: return "torch tensor";
    case PickleKind::object: return "object";
  }
  return "?";
}

const PickleValue* PickleValue::get(std::string_view key) const {
  if (kind != PickleKind::dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->is_text() && k->text == key) return v;
  return nullptr;
}

const PickleValue& PickleValue::at(std::string_view key, const std::string& what) const {
  if (kind != PickleKind::dict) fail(what, "a dict", kind_name());
  const PickleValue* v = get(key);
  if (!v) fail(what, "a key '" + std::string(key) + "'", "none (the dict has " +
               std::to_string(entries.size()) + " keys)");
  return *v;
}

int64_t PickleValue::as_int(const std::string& what) const {
  if (kind == PickleKind::integer) return integer;
  if (kind == PickleKind::boolean) return boolean;
  fail(what, "an int", kind_name());
}

std::string_view PickleValue::as_text(const std::string& what) const {
  if (!is_text()) fail(what, "a str or bytes", kind_name());
  return text;
}

const NamedArray& PickleValue::as_ndarray(const std::string& what) const {
  if (kind != PickleKind::ndarray) fail(what, "a numpy array", kind_name());
  return array;
}

const std::vector<PickleValue*>& PickleValue::as_sequence(const std::string& what) const {
  if (kind != PickleKind::list && kind != PickleKind::tuple) fail(what, "a list or tuple", kind_name());
  return items;
}

// --- the unpickler -----------------------------------------------------------------------------

class Unpickler {
 public:
  Unpickler(std::string_view bytes, const std::string& what, const UnpickleLimits& limits)
      : s_(bytes), what_(what), limits_(limits),
        budget_(limits.max_bytes ? limits.max_bytes : (uint64_t(64) << 20) + 16 * uint64_t(bytes.size())) {}

  Pickle run();

 private:
  using V = PickleValue;

  [[noreturn]] void bad(const std::string& expected, const std::string& found, const std::string& hint = {}) {
    fail(what_ + ": pickle at offset " + std::to_string(op_pos_), expected, found, hint);
  }
  // Counts `n` more bytes against the memory budget before they are allocated.
  void charge(uint64_t n) {
    if (n <= budget_ - used_) { used_ += n; return; }
    std::string basis = limits_.max_bytes ? "the caller's limit"
                                          : "64 MiB + 16 x the pickle's " + detail::human_bytes(s_.size());
    bad("values of at most " + detail::human_bytes(budget_) + " in all (" + basis + ")",
        detail::human_bytes(used_) + " made and " + detail::human_bytes(n) + " more asked",
        "a legitimate pickle makes about 3x its size; this one copies values over and over (e.g. an allowed "
        "call on one memoized value), so it is refused");
  }
  V* make(PickleKind k) {
    if (doc_.arena_.size() >= limits_.max_values) bad("at most " + std::to_string(limits_.max_values) + " values", "more");
    charge(sizeof(V));
    doc_.arena_.emplace_back();
    doc_.arena_.back().kind = k;
    return &doc_.arena_.back();
  }
  V* make_int(int64_t i) { V* v = make(PickleKind::integer); v->integer = i; return v; }
  V* make_text(PickleKind k, std::string_view t) { V* v = make(k); charge(t.size()); v->text = std::string(t); return v; }
  // items copied from another value (set(list), torch.Size(tuple), OrderedDict(pairs))
  std::vector<V*> copy_items(const std::vector<V*>& items) { charge(items.size() * sizeof(V*)); return items; }

  // Input
  std::string_view take(uint64_t n) {
    if (n > s_.size() - pos_) bad(std::to_string(n) + " more bytes", std::to_string(s_.size() - pos_) + " (truncated)");
    std::string_view r = s_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return r;
  }
  template <typename T> T take_le() { return detail::load_le<T>(take(sizeof(T)).data()); }
  std::string_view line() {
    size_t nl = s_.find('\n', pos_);
    if (nl == std::string_view::npos) bad("a newline-terminated argument", "the end of the data");
    std::string_view r = s_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return r;
  }

  // Stack
  void push(V* v) {
    if (stack_.size() >= limits_.max_stack) bad("a stack of at most " + std::to_string(limits_.max_stack), "deeper");
    stack_.push_back(v);
  }
  V* pop() {
    if (stack_.size() <= stack_floor()) bad("a value on the stack", "an empty stack");
    V* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  V* top() {
    if (stack_.size() <= stack_floor()) bad("a value on the stack", "an empty stack");
    return stack_.back();
  }
  size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<V*> pop_mark() {
    if (marks_.empty()) bad("a MARK", "none");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<V*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  // Memo
  void memo_put(uint64_t idx, V* v) {
    if (memo_.size() >= limits_.max_memo && !memo_.count(idx))
      bad("a memo of at most " + std::to_string(limits_.max_memo) + " entries", "more");
    memo_[idx] = v;
  }
  V* memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad("a memo entry " + std::to_string(idx), "none");
    return it->second;
  }
  uint64_t text_index(std::string_view t) {
    uint64_t v = 0;
    if (t.empty() || t.size() > 18) bad("a decimal memo index", detail::quoted(t));
    for (char c : t) {
      if (c < '0' || c > '9') bad("a decimal memo index", detail::quoted(t));
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
  }

  V* text_int(std::string_view t);
  V* text_float(std::string_view t);
  std::string unescape_string(std::string_view t);
  V* long_bytes(std::string_view b);
  V* global(const std::string& module, const std::string& name);
  V* call(V* callable, V* args);
  void build(V* obj, V* state);
  V* persistent(V* pid);
  void fill_ndarray(V* arr, V* state);
  void set_item(V* dict, V* k, V* v) {
    if (dict->kind != PickleKind::dict) bad("a dict for SETITEM(S)", dict->kind_name());
    charge(sizeof(dict->entries[0]));
    dict->entries.emplace_back(k, v);
  }
  void append(V* list, V* item) {
    charge(sizeof(item));
    if (list->kind == PickleKind::list || list->kind == PickleKind::set) list->items.push_back(item);
    else bad("a list for APPEND(S)", list->kind_name());
  }
  static bool is_global(const V* v, const char* name) { return v->kind == PickleKind::global && v->text == name; }

  std::string_view s_;
  const std::string& what_;
  UnpickleLimits limits_;
  size_t pos_ = 0, op_pos_ = 0;
  uint64_t budget_, used_ = 0;
  Pickle doc_;
  std::vector<V*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, V*> memo_;
};

PickleValue* Unpickler::text_int(std::string_view t) {
  if (t == "00") { V* v = make(PickleKind::boolean); v->boolean = false; return v; }
  if (t == "01") { V* v = make(PickleKind::boolean); v->boolean = true; return v; }
  if (!t.empty() && t.back() == 'L') t.remove_suffix(1);
  bool neg = !t.empty() && t[0] == '-';
  if (neg) t.remove_prefix(1);
  if (t.empty()) bad("a decimal integer", "an empty one");
  int64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') bad("a decimal integer", detail::quoted(t));
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v))
      bad("an integer that fits in 64 bits", detail::quoted(t));
  }
  return make_int(neg ? -v : v);
}

PickleValue* Unpickler::text_float(std::string_view t) {
  std::string s(t);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) bad("a decimal float", detail::quoted(t));
  V* v = make(PickleKind::floating);
  v->floating = d;
  return v;
}

// Protocol 0 STRING: a Python repr, 'abc' or "abc" with backslash escapes.
std::string Unpickler::unescape_string(std::string_view t) {
  if (t.size() < 2 || (t[0] != '\'' && t[0] != '"') || t.back() != t[0]) bad("a quoted string", detail::quoted(t));
  t = t.substr(1, t.size() - 2);
  std::string r;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '\\' || i + 1 == t.size()) { r += t[i]; continue; }
    char c = t[++i];
    switch (c) {
      case 'n': r += '\n'; break;
      case 't': r += '\t'; break;
      case 'r': r += '\r'; break;
      case 'x': {
        if (i + 2 >= t.size()) bad("two hex digits after \\x", "the end of the string");
        std::string hex(t.substr(i + 1, 2));
        if (hex.size() != 2 || !std::isxdigit(static_cast<unsigned char>(hex[0])) ||
            !std::isxdigit(static_cast<unsigned char>(hex[1])))
          bad("two hex digits after \\x", detail::quoted(hex));
        r += static_cast<char>(std::stoi(hex, nullptr, 16));
        i += 2;
        break;
      }
      default: r += c;  // \\ \' \"
    }
  }
  return r;
}

// LONG1/LONG4: little-endian two's complement of any length; kiln keeps 64-bit integers.
PickleValue* Unpickler::long_bytes(std::string_view b) {
  if (b.empty()) return make_int(0);
  if (b.size() > 8) bad("an integer of at most 8 bytes", std::to_string(b.size()) + " bytes");
  uint64_t u = 0;
  for (size_t i = 0; i < b.size(); ++i) u |= uint64_t(static_cast<unsigned char>(b[i])) << (8 * i);
  if (b.size() < 8 && (static_cast<unsigned char>(b.back()) & 0x80)) u |= ~uint64_t(0) << (8 * b.size());
  return make_int(static_cast<int64_t>(u));
}

PickleValue* Unpickler::global(const std::string& module, const std::string& name) {
  std::string full = canonical_global(module, name);
  const auto& allow = allowed_pickle_globals();
  if (std::find(allow.begin(), allow.end(), full) == allow.end()) {
    std::string shown = detail::quoted(full, 120);
    throw Error(what_ + ": pickle global " + shown.substr(1, shown.size() - 2) + " is not allowed",
                "kiln's restricted unpickler accepts only tensors, state_dicts and numpy arrays (see "
                "docs/io.md for the allow-list); save plain weights with torch.save(model.state_dict(), path)");
  }
  return make_text(PickleKind::global, full);
}

PickleValue* Unpickler::persistent(V* pid) {
  // torch.save: ('storage', <storage class>, key, location, numel)
  if (pid->kind != PickleKind::tuple || pid->items.size() != 5 || !pid->items[0]->is_text() ||
      pid->items[0]->text != "storage")
    bad("a torch persistent id ('storage', type, key, location, numel)", pid->kind_name());
  V* type = pid->items[1];
  V* key = pid->items[2];
  V* numel = pid->items[4];
  if (type->kind != PickleKind::global || !key->is_text() || numel->kind != PickleKind::integer || numel->integer < 0)
    bad("a storage id (torch.<Type>Storage, 'key', 'cpu', numel)", "other values");
  V* st = make_text(PickleKind::storage, key->text);
  bool found = false;
  for (size_t i = 0; i < std::size(kTorchStorages); ++i)
    if (type->text == std::string("torch.") + kTorchStorages[i]) { st->array.dtype = kTorchStorageTypes[i]; found = true; }
  if (!found) bad("a torch storage type", type->text);
  st->integer = numel->integer;
  return st;
}

PickleValue* Unpickler::call(V* fn, V* args) {
  if (fn->kind != PickleKind::global) bad("an allowed global to call", fn->kind_name());
  if (args->kind != PickleKind::tuple) bad("a tuple of arguments for " + fn->text, args->kind_name());
  const std::vector<V*>& a = args->items;
  const std::string& f = fn->text;
  auto need = [&](size_t lo, size_t hi) {
    if (a.size() < lo || a.size() > hi)
      bad(f + " with " + std::to_string(lo) + ".." + std::to_string(hi) + " arguments", std::to_string(a.size()));
  };
  if (f == "collections.OrderedDict") {
    need(0, 1);
    V* d = make(PickleKind::dict);
    if (a.size() == 1) {
      for (V* pair : a[0]->as_sequence(what_ + ": OrderedDict items")) {
        if ((pair->kind != PickleKind::list && pair->kind != PickleKind::tuple) || pair->items.size() != 2)
          bad("(key, value) pairs", pair->kind_name());
        set_item(d, pair->items[0], pair->items[1]);
      }
    }
    return d;
  }
  if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
    need(4, 7);
    if (a[0]->kind != PickleKind::storage) bad("a storage as first argument of " + f, a[0]->kind_name());
    V* t = make(PickleKind::tensor);
    t->storage = a[0];
    t->array.dtype = a[0]->array.dtype;
    t->storage_offset = a[1]->as_int(what_ + ": tensor storage_offset");
    for (V* d : a[2]->as_sequence(what_ + ": tensor size")) t->size.push_back(d->as_int(what_ + ": tensor size"));
    for (V* d : a[3]->as_sequence(what_ + ": tensor stride")) t->stride.push_back(d->as_int(what_ + ": tensor stride"));
    return t;
  }
  if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
    need(3, 4);
    if (a[0]->kind != PickleKind::tensor) bad("a tensor as first argument of " + f, a[0]->kind_name());
    return a[0];
  }
  if (f == "torch.Size") {
    need(0, 1);
    V* t = make(PickleKind::tuple);
    if (a.size() == 1) t->items = copy_items(a[0]->as_sequence(what_ + ": torch.Size"));
    return t;
  }
  if (f == "numpy.core.multiarray._reconstruct") {
    need(3, 3);
    if (!is_global(a[0], "numpy.ndarray")) bad("numpy.ndarray as the class to reconstruct", a[0]->text);
    return make(PickleKind::ndarray);  // filled by BUILD
  }
  if (f == "numpy.dtype") {
    need(1, 3);
    V* d = make(PickleKind::dtype);
    std::string code(a[0]->as_text(what_ + ": numpy.dtype"));
    if (!numpy_dtype_from_code(code, d->array.dtype))
      throw Error(what_ + ": numpy dtype '" + code + "' is not supported",
                  "kiln reads numeric numpy arrays (float16/32/64, int8/16/32/64, uint8, bool)");
    d->text = code;
    return d;
  }
  if (f == "numpy.core.multiarray.scalar") {
    need(2, 2);
    if (a[0]->kind != PickleKind::dtype) bad("a numpy.dtype", a[0]->kind_name());
    std::string_view raw = a[1]->as_text(what_ + ": numpy scalar");
    DType t = a[0]->array.dtype;
    if (raw.size() != dtype_size(t)) bad(std::to_string(dtype_size(t)) + " bytes for a numpy scalar", std::to_string(raw.size()));
    if (t == DType::f32) { V* v = make(PickleKind::floating); v->floating = detail::load_le<float>(raw.data()); return v; }
    if (t == DType::f64) { V* v = make(PickleKind::floating); v->floating = detail::load_le<double>(raw.data()); return v; }
    if (t == DType::i64) return make_int(detail::load_le<int64_t>(raw.data()));
    if (t == DType::i32) return make_int(detail::load_le<int32_t>(raw.data()));
    if (t == DType::u8 || t == DType::bool_) return make_int(static_cast<unsigned char>(raw[0]));
    bad("a float32/64, int32/64, uint8 or bool numpy scalar", dtype_name(t));
  }
  if (f == "numpy.core.numeric._frombuffer") {
    need(4, 4);  // (buffer, dtype, shape, order)
    V* arr = make(PickleKind::ndarray);
    if (a[1]->kind != PickleKind::dtype) bad("a numpy.dtype", a[1]->kind_name());
    V* state = make(PickleKind::tuple);
    V* fortran = make(PickleKind::boolean);
    fortran->boolean = a[3]->is_text() && a[3]->text == "F";
    state->items = {make_int(1), a[2], a[1], fortran, a[0]};
    fill_ndarray(arr, state);
    return arr;
  }
  if (f == "_codecs.encode") {
    need(1, 2);  // numpy's protocol-2 pickles: _codecs.encode(u'<latin1 text>', 'latin1')
    std::string_view s = a[0]->as_text(what_ + ": _codecs.encode");
    std::string enc = a.size() > 1 ? std::string(a[1]->as_text(what_ + ": _codecs.encode")) : "utf-8";
    if (a[0]->kind == PickleKind::bytes) return make_text(PickleKind::bytes, s);
    if (enc == "utf-8" || enc == "utf8") return make_text(PickleKind::bytes, s);
    if (enc != "latin1" && enc != "latin-1" && enc != "iso-8859-1") bad("latin1 or utf-8 encoding", detail::quoted(enc));
    std::string out;  // UTF-8 -> code points, each < 256
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) { out += static_cast<char>(c); ++i; continue; }
      if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
        uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
        if (cp > 0xFF) bad("latin1 text (code points < 256)", "a larger code point");
        out += static_cast<char>(cp);
        i += 2;
        continue;
      }
      bad("latin1 text (code points < 256)", "a larger code point");
    }
    return make_text(PickleKind::bytes, out);
  }
  if (f == "builtins.set" || f == "builtins.frozenset") {
    need(0, 1);
    V* st = make(PickleKind::set);
    if (a.size() == 1) st->items = copy_items(a[0]->as_sequence(what_ + ": set items"));
    return st;
  }
  if (f == "builtins.bytearray") {
    need(0, 2);
    return make_text(PickleKind::bytes, a.empty() ? std::string_view() : a[0]->as_text(what_ + ": bytearray"));
  }
  bad("a callable global", f + " (a class or value that kiln does not call)");
}

void Unpickler::fill_ndarray(V* arr, V* state) {
  // numpy's ndarray.__setstate__: (version, shape, dtype, is_fortran, rawdata)
  std::string ctx = what_ + ": numpy array state";
  const auto& s = state->as_sequence(ctx);
  if (s.size() != 5 && s.size() != 4) bad("(version, shape, dtype, fortran, data)", std::to_string(s.size()) + " items");
  size_t o = s.size() - 4;
  if (s[o + 1]->kind != PickleKind::dtype) bad("a numpy.dtype in the array state", s[o + 1]->kind_name());
  arr->array.dtype = s[o + 1]->array.dtype;
  arr->array.shape.clear();
  for (V* d : s[o]->as_sequence(ctx + " shape")) arr->array.shape.push_back(d->as_int(ctx + " shape"));
  if (s[o + 1]->text.size() > 0 && s[o + 1]->text[0] == '>' && dtype_size(arr->array.dtype) > 1)
    throw Error(what_ + ": big-endian numpy arrays are not supported", "re-save with arr.astype(arr.dtype.newbyteorder('<'))");
  std::string_view raw = s[o + 3]->as_text(ctx + " data (object arrays are not supported)");
  int64_t nbytes = detail::checked_nbytes(arr->array.shape, arr->array.dtype, ctx);
  if (static_cast<uint64_t>(nbytes) != raw.size())
    fail(ctx + ": " + std::string(dtype_name(arr->array.dtype)) + " " + shape_str(arr->array.shape),
         std::to_string(nbytes) + " bytes", std::to_string(raw.size()) + " bytes");
  bool fortran = s[o + 2]->kind == PickleKind::boolean ? s[o + 2]->boolean : s[o + 2]->as_int(ctx) != 0;
  if (fortran && arr->array.shape.size() > 1)
    throw Error(what_ + ": Fortran-order numpy arrays are not supported", "pickle np.ascontiguousarray(arr) instead");
  charge(raw.size());
  arr->array.bytes.resize(raw.size());
  if (!raw.empty()) std::memcpy(arr->array.bytes.data(), raw.data(), raw.size());
}

void Unpickler::build(V* obj, V* state) {
  if (obj->kind == PickleKind::ndarray) return fill_ndarray(obj, state);
  if (obj->kind == PickleKind::dtype) {
    // (version, endian, subarray, names, fields, elsize, alignment, flags): keep the byte order
    if (state->kind == PickleKind::tuple && state->items.size() >= 2 && state->items[1]->is_text()) {
      std::string endian = state->items[1]->text;
      if (endian == ">" && dtype_size(obj->array.dtype) > 1)
        throw Error(what_ + ": big-endian numpy dtype is not supported", "re-save the array little-endian");
      obj->text = endian + obj->text;
    }
    return;
  }
  if (obj->kind == PickleKind::dict) return;     // OrderedDict attributes (torch's _metadata): unused
  if (obj->kind == PickleKind::tensor) return;   // _rebuild_parameter_with_state's extra state
  bad("BUILD on a numpy array, dtype or dict", obj->kind_name());
}

Pickle Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    unsigned char op = static_cast<unsigned char>(take(1)[0]);
    switch (op) {
      case 0x80: {  // PROTO
        unsigned char proto = static_cast<unsigned char>(take(1)[0]);
        if (proto > 5) bad("pickle protocol 0..5", std::to_string(proto));
        break;
      }
      case 0x95: take(8); break;  // FRAME: a length hint only
      case '.': {                 // STOP
        if (stack_.size() != 1 || !marks_.empty()) bad("exactly one value at STOP", std::to_string(stack_.size()));
        doc_.root_ = stack_.back();
        return std::move(doc_);
      }
      case '(': marks_.push_back(stack_.size()); if (marks_.size() > limits_.max_stack) bad("fewer marks", "too many"); break;
      case '0': pop(); break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      case 'N': push(make(PickleKind::none)); break;
      case 0x88: case 0x89: { V* v = make(PickleKind::boolean); v->boolean = op == 0x88; push(v); break; }
      case 'I': push(text_int(line())); break;
      case 'L': push(text_int(line())); break;
      case 'J': push(make_int(take_le<int32_t>())); break;
      case 'K': push(make_int(take_le<uint8_t>())); break;
      case 'M': push(make_int(take_le<uint16_t>())); break;
      case 0x8a: { uint8_t n = take_le<uint8_t>(); push(long_bytes(take(n))); break; }
      case 0x8b: { int32_t n = take_le<int32_t>(); if (n < 0) bad("a non-negative LONG4 length", std::to_string(n)); push(long_bytes(take(static_cast<uint64_t>(n)))); break; }
      case 'F': push(text_float(line())); break;
      case 'G': {
        std::string_view b = take(8);
        uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(b[static_cast<size_t>(i)]);  // big-endian
        V* v = make(PickleKind::floating);
        std::memcpy(&v->floating, &u, 8);
        push(v);
        break;
      }
      case 'S': push(make_text(PickleKind::bytes, unescape_string(line()))); break;
      case 'T': { int32_t n = take_le<int32_t>(); if (n < 0) bad("a non-negative length", std::to_string(n)); push(make_text(PickleKind::bytes, take(static_cast<uint64_t>(n)))); break; }
      case 'U': push(make_text(PickleKind::bytes, take(take_le<uint8_t>()))); break;
      case 'V': push(make_text(PickleKind::str, line())); break;  // raw-unicode-escape kept as is
      case 'X': push(make_text(PickleKind::str, take(take_le<uint32_t>()))); break;
      case 0x8c: push(make_text(PickleKind::str, take(take_le<uint8_t>()))); break;
      case 0x8d: push(make_text(PickleKind::str, take(take_le<uint64_t>()))); break;
      case 'B': push(make_text(PickleKind::bytes, take(take_le<uint32_t>()))); break;
      case 'C': push(make_text(PickleKind::bytes, take(take_le<uint8_t>()))); break;
      case 0x8e: case 0x96: push(make_text(PickleKind::bytes, take(take_le<uint64_t>()))); break;
      case ']': push(make(PickleKind::list)); break;
      case 'l': { V* v = make(PickleKind::list); v->items = pop_mark(); push(v); break; }
      case 'a': { V* item = pop(); append(top(), item); break; }
      case 'e': { auto items = pop_mark(); V* l = top(); for (V* it : items) append(l, it); break; }
      case ')': push(make(PickleKind::tuple)); break;
      case 't': { V* v = make(PickleKind::tuple); v->items = pop_mark(); push(v); break; }
      case 0x85: case 0x86: case 0x87: {
        size_t n = op - 0x84u;
        V* v = make(PickleKind::tuple);
        v->items.resize(n);
        for (size_t i = n; i-- > 0;) v->items[i] = pop();
        push(v);
        break;
      }
      case '}': push(make(PickleKind::dict)); break;
      case 'd': {
        auto items = pop_mark();
        if (items.size() % 2) bad("key/value pairs for DICT", "an odd count");
        V* d = make(PickleKind::dict);
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        push(d);
        break;
      }
      case 's': { V* v = pop(); V* k = pop(); set_item(top(), k, v); break; }
      case 'u': {
        auto items = pop_mark();
        if (items.size() % 2) bad("key/value pairs for SETITEMS", "an odd count");
        V* d = top();
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        break;
      }
      case 0x8f: push(make(PickleKind::set)); break;
      case 0x90: { auto items = pop_mark(); V* st = top(); if (st->kind != PickleKind::set) bad("a set for ADDITEMS", st->kind_name()); charge(items.size() * sizeof(V*)); for (V* it : items) st->items.push_back(it); break; }
      case 0x91: { V* v = make(PickleKind::set); v->items = pop_mark(); push(v); break; }
      case 'c': {
        std::string module(line());
        std::string name(line());
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        V* name = pop();
        V* module = pop();
        if (!name->is_text() || !module->is_text()) bad("module and name strings for STACK_GLOBAL", "other values");
        push(global(module->text, name->text));
        break;
      }
      case 'i': {  // INST: module, name, then the arguments since MARK
        std::string module(line());
        std::string name(line());
        V* g = global(module, name);
        V* args = make(PickleKind::tuple);
        args->items = pop_mark();
        push(call(g, args));
        break;
      }
      case 'o': {  // OBJ: class and arguments since MARK
        auto items = pop_mark();
        if (items.empty()) bad("a class for OBJ", "nothing");
        V* args = make(PickleKind::tuple);
        args->items.assign(items.begin() + 1, items.end());
        push(call(items[0], args));
        break;
      }
      case 'R': case 0x81: { V* args = pop(); V* fn = pop(); push(call(fn, args)); break; }
      case 0x92: { pop(); V* args = pop(); V* fn = pop(); push(call(fn, args)); break; }  // NEWOBJ_EX, kwargs dropped
      case 'b': { V* state = pop(); build(top(), state); break; }
      case 'P': { V* pid = make_text(PickleKind::str, line()); push(persistent(pid)); break; }
      case 'Q': { V* pid = pop(); push(persistent(pid)); break; }
      case 'p': memo_put(text_index(line()), top()); break;
      case 'q': memo_put(take_le<uint8_t>(), top()); break;
      case 'r': memo_put(take_le<uint32_t>(), top()); break;
      case 0x94: memo_put(memo_.size(), top()); break;
      case 'g': push(memo_get(text_index(line()))); break;
      case 'h': push(memo_get(take_le<uint8_t>())); break;
      case 'j': push(memo_get(take_le<uint32_t>())); break;
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        bad("a supported pickle opcode", std::string(hex) +
            (op == 0x82 || op == 0x83 || op == 0x84 ? " (EXT registry)" : op == 0x97 || op == 0x98 ? " (out-of-band buffer)" : ""));
      }
    }
  }
}

Pickle unpickle(std::string_view bytes, const std::string& what, const UnpickleLimits& limits) {
  return Unpickler(bytes, what, limits).run();
}

}  // namespace kiln::io
