// torch.save zip checkpoints: read through ZipReader + the restricted unpickler; written with a
// hand-emitted protocol-2 pickle (only opcodes torch.load(weights_only=True) accepts) + ZipWriter.
#include "kiln/io/pth.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/io/bytes.h"
#include "kiln/io/pickle.h"
#include "kiln/io/zip.h"

namespace kiln::io {
namespace {

const char* storage_class(DType t) {
  switch (t) {
    case DType::f32: return "FloatStorage";
    case DType::f64: return "DoubleStorage";
    case DType::f16: return "HalfStorage";
    case DType::bf16: return "BFloat16Storage";
    case DType::i64: return "LongStorage";
    case DType::i32: return "IntStorage";
    case DType::i16: return "ShortStorage";
    case DType::i8: return "CharStorage";
    case DType::u8: return "ByteStorage";
    case DType::bool_: return "BoolStorage";
  }
  return "?";
}

// Checks that tensor `t` (a view of `storage_numel` elements) lies inside its storage and
// returns its size in bytes; sets `contiguous` when it is one run of the storage in C order.
int64_t checked_view(const PickleValue& t, int64_t storage_numel, const std::string& ctx, bool& contiguous) {
  const size_t es = dtype_size(t.array.dtype);
  if (t.size.size() != t.stride.size())
    fail(ctx + ": stride", std::to_string(t.size.size()) + " entries (one per dim)", std::to_string(t.stride.size()));
  if (t.size.size() > 64) fail(ctx + ": dims", "at most 64", std::to_string(t.size.size()));
  int64_t nbytes = detail::checked_nbytes(t.size, t.array.dtype, ctx);
  int64_t numel = nbytes / static_cast<int64_t>(es);
  if (t.storage_offset < 0) fail(ctx + ": storage_offset", ">= 0", std::to_string(t.storage_offset));
  contiguous = true;
  if (numel == 0) return 0;
  // The last element the view touches must lie inside the storage (each step overflow-checked:
  // a storage_offset near INT64_MAX must not wrap around).
  int64_t last = t.storage_offset;
  int64_t expect = 1;
  for (size_t d = t.size.size(); d-- > 0;) {
    if (t.stride[d] < 0 || (t.stride[d] == 0 && t.size[d] > 1))
      throw Error(ctx + ": negative or zero (expanded) strides are not supported", "save tensor.contiguous() instead");
    if (__builtin_add_overflow(last, detail::checked_mul(t.size[d] - 1, t.stride[d], ctx, "view extent"), &last))
      fail(ctx + ": view extent (offset " + std::to_string(t.storage_offset) + ")", "a size that fits in 64 bits",
           "an overflow");
    if (t.size[d] != 1 && t.stride[d] != expect) contiguous = false;
    expect = detail::checked_mul(expect, t.size[d], ctx, "numel");
  }
  if (last >= storage_numel)
    fail(ctx + ": view (offset " + std::to_string(t.storage_offset) + ", size " + shape_str(t.size) + ")",
         "elements inside its storage of " + std::to_string(storage_numel), "an element at index " + std::to_string(last));
  // A view with positive strides that does not overlap itself has at most as many elements as its
  // storage; refusing more bounds what a hostile file can make kiln allocate.
  if (numel > storage_numel)
    fail(ctx + ": view of " + shape_str(t.size), "at most " + std::to_string(storage_numel) +
         " elements (its storage)", std::to_string(numel), "save tensor.contiguous() instead");
  return nbytes;
}

// Gathers a view checked by checked_view() into a contiguous C-order array.
void materialize(const PickleValue& t, std::string_view storage, int64_t nbytes, bool contiguous, NamedArray& out) {
  const size_t es = dtype_size(t.array.dtype);
  out.dtype = t.array.dtype;
  out.shape = t.size;
  if (nbytes == 0) return;
  out.bytes.resize(static_cast<size_t>(nbytes));
  const char* src = storage.data();
  char* dst = reinterpret_cast<char*>(out.bytes.data());
  if (contiguous) {
    std::memcpy(dst, src + static_cast<size_t>(t.storage_offset) * es, static_cast<size_t>(nbytes));
    return;
  }
  // Strided view (e.g. a transposed weight saved as is): walk it in C order.
  const int64_t numel = nbytes / static_cast<int64_t>(es);
  std::vector<int64_t> idx(t.size.size(), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t off = t.storage_offset;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.stride[d];
    std::memcpy(dst + static_cast<size_t>(i) * es, src + static_cast<size_t>(off) * es, es);
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < t.size[d]) break;
      idx[d] = 0;
    }
  }
}

// --- a minimal protocol-2 pickle emitter ---
void op_unicode(std::string& p, const std::string& s) {
  p += 'X';
  detail::append_le<uint32_t>(p, static_cast<uint32_t>(s.size()));
  p += s;
}
void op_int(std::string& p, int64_t v) {
  if (v >= 0 && v < 256) { p += 'K'; p += static_cast<char>(v); return; }
  if (v >= 0 && v < 65536) { p += 'M'; detail::append_le<uint16_t>(p, static_cast<uint16_t>(v)); return; }
  if (v >= INT32_MIN && v <= INT32_MAX) { p += 'J'; detail::append_le<int32_t>(p, static_cast<int32_t>(v)); return; }
  p += '\x8a';
  p += '\x08';
  detail::append_le<int64_t>(p, v);
}
void op_int_tuple(std::string& p, const std::vector<int64_t>& v) {
  if (v.empty()) { p += ')'; return; }
  p += '(';
  for (int64_t x : v) op_int(p, x);
  p += 't';
}

}  // namespace

StateDict parse_pth(std::string_view bytes, const std::string& what, const PthLimits& limits) {
  if (!looks_like_zip(bytes)) {
    if (!bytes.empty() && static_cast<unsigned char>(bytes[0]) == 0x80)
      throw Error(what + " is a legacy (pre-1.6, non-zip) torch.save file, which kiln does not read",
                  "re-save it with PyTorch >= 1.6, whose default is the zip format: "
                  "sd = torch.load(old_path); torch.save(sd, new_path)");
    fail(what, "a PyTorch checkpoint (a zip archive written by torch.save)",
         bytes.size() < 4 ? std::to_string(bytes.size()) + " bytes" : "other bytes (" + detail::quoted(bytes.substr(0, 8)) + ")");
  }
  ZipReader zip(bytes, what);
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash + 1, std::string::npos, "data.pkl") == 0) { pkl = &e; break; }
  }
  if (!pkl) fail(what, "a '<archive>/data.pkl' record (torch.save's zip format)", "none",
                 "is this a TorchScript archive or a zip of something else? Save with torch.save(model.state_dict(), path)");
  std::string prefix = pkl->name.substr(0, pkl->name.size() - std::strlen("data.pkl"));
  std::string scratch;
  std::string_view pkl_bytes = zip.read(*pkl, scratch, uint64_t(1) << 30);
  Pickle doc = unpickle(pkl_bytes, what + ": " + pkl->name);

  const PickleValue* sd = &doc.root();
  // A checkpoint dict with the weights under "state_dict" (Lightning) or "model".
  for (const char* key : {"state_dict", "model"}) {
    const PickleValue* inner = sd->get(key);
    if (inner && inner->kind == PickleKind::dict) { sd = inner; break; }
  }
  if (sd->kind != PickleKind::dict)
    fail(what + ": data.pkl", "a dict of tensors (a state_dict)", sd->kind_name(),
         "save the state_dict, not the module: torch.save(model.state_dict(), path)");

  // Pass 1: every tensor's view checked against its storage's size (from the zip directory, before
  // anything is inflated) and the bytes the StateDict will take added up against the budget.
  struct Storage {
    const ZipEntry* entry = nullptr;
    size_t last_use = 0;      // index of the last tensor viewing it
    std::string owned;        // a deflated record's inflated bytes, while needed
    std::string_view bytes;
    bool loaded = false;
  };
  struct View {
    std::string name;
    const PickleValue* tensor;
    Storage* storage;
    int64_t nbytes;
    bool contiguous;
  };
  std::map<std::string, const ZipEntry*> records;
  for (const ZipEntry& e : zip.entries()) records.emplace(e.name, &e);
  std::map<std::string, Storage> storages;  // by storage key
  std::vector<View> views;
  views.reserve(sd->entries.size());
  uint64_t storage_bytes = 0, tensor_bytes = 0;
  for (const auto& [k, v] : sd->entries) {
    if (!k->is_text()) fail(what + ": state_dict key", "a string", k->kind_name());
    std::string ctx = what + ": tensor '" + k->text + "'";
    if (v->kind != PickleKind::tensor) fail(ctx, "a tensor", v->kind_name());
    const PickleValue& st = *v->storage;
    const int64_t es = static_cast<int64_t>(dtype_size(st.array.dtype));
    auto [it, fresh] = storages.try_emplace(st.text);
    Storage& s = it->second;
    if (fresh) {
      std::string rec = prefix + "data/" + st.text;
      auto r = records.find(rec);
      if (r == records.end()) fail(ctx, "a storage record '" + rec + "'", "none");
      s.entry = r->second;
      int64_t want = detail::checked_mul(st.integer, es, ctx, "storage size");
      if (static_cast<uint64_t>(want) != s.entry->size)
        fail(ctx + ": storage '" + rec + "' of " + std::to_string(st.integer) + " " + dtype_name(st.array.dtype),
             std::to_string(want) + " bytes", std::to_string(s.entry->size) + " bytes");
      storage_bytes += s.entry->size;
    } else if (s.entry->size != static_cast<uint64_t>(detail::checked_mul(st.integer, es, ctx, "storage size"))) {
      fail(ctx + ": storage '" + st.text + "'", std::to_string(s.entry->size) + " bytes, as its other views say",
           std::to_string(st.integer) + " elements of " + dtype_name(st.array.dtype));
    }
    s.last_use = views.size();
    bool contiguous = true;
    int64_t nbytes = checked_view(*v, static_cast<int64_t>(s.entry->size) / es, ctx, contiguous);
    tensor_bytes += static_cast<uint64_t>(nbytes);
    views.push_back({k->text, v, &s, nbytes, contiguous});
  }
  // Views share storages, but each NamedArray owns its bytes: 4,000 views of one storage would be
  // 4,000 copies. A state_dict needs about its storages' bytes (tied weights: twice).
  const uint64_t budget = limits.max_bytes ? limits.max_bytes : 2 * storage_bytes + (uint64_t(16) << 20);
  if (tensor_bytes > budget)
    fail(what + ": its " + std::to_string(views.size()) + " tensors",
         "at most " + detail::human_bytes(budget) + " in all (" +
             (limits.max_bytes ? std::string("the caller's limit")
                               : "twice its " + detail::human_bytes(storage_bytes) + " of storages + 16 MiB") + ")",
         detail::human_bytes(tensor_bytes) + ", " + detail::human_bytes(tensor_bytes - budget) + " over",
         "its tensors view the same storages over and over; a genuine state_dict would be saved "
         "with each tensor on its own: torch.save({k: v.clone() for k, v in sd.items()}, path)");

  // Pass 2: each storage read (inflated) once, when first needed, and dropped after its last view.
  StateDict out;
  out.reserve(views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    View& w = views[i];
    Storage& s = *w.storage;
    if (!s.loaded) {
      s.bytes = zip.read(*s.entry, s.owned);
      s.loaded = true;
    }
    NamedArray a;
    a.name = std::move(w.name);
    materialize(*w.tensor, s.bytes, w.nbytes, w.contiguous, a);
    out.push_back(std::move(a));
    if (s.last_use == i) std::string().swap(s.owned);
  }
  return out;
}

StateDict read_pth(const std::filesystem::path& path, const PthLimits& limits) {
  std::string bytes = read_file(path);
  return parse_pth(bytes, path.string(), limits);
}

namespace {

// What torch.save(OrderedDict) pickles: OrderedDict() then SETITEMS of
// key -> _rebuild_tensor_v2(persistent storage, offset 0, size, stride, False, OrderedDict()).
std::string state_dict_pickle(const StateDict& tensors) {
  std::string p = "\x80\x02";
  p += "ccollections\nOrderedDict\n)R(";
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedArray& a = tensors[i];
    int64_t nbytes = detail::checked_nbytes(a.shape, a.dtype, a.name);
    KILN_ASSERT(static_cast<uint64_t>(nbytes) == a.bytes.size(), a.name + ": bytes do not match shape");
    for (size_t j = 0; j < i; ++j)
      if (tensors[j].name == a.name) throw Error("cannot write .pth: tensor name '" + a.name + "' repeats");
    std::vector<int64_t> stride(a.shape.size());
    int64_t s = 1;
    for (size_t d = a.shape.size(); d-- > 0;) {  // torch's contiguous strides treat size 0 as 1
      stride[d] = s;
      s *= std::max<int64_t>(a.shape[d], 1);
    }
    op_unicode(p, a.name);
    p += "ctorch._utils\n_rebuild_tensor_v2\n(";
    p += "(";
    op_unicode(p, "storage");
    p += "ctorch\n";
    p += storage_class(a.dtype);
    p += "\n";
    op_unicode(p, std::to_string(i));
    op_unicode(p, "cpu");
    op_int(p, a.numel());
    p += "tQ";
    op_int(p, 0);
    op_int_tuple(p, a.shape);
    op_int_tuple(p, stride);
    p += '\x89';                                  // requires_grad False
    p += "ccollections\nOrderedDict\n)R";         // backward_hooks
    p += "tR";
  }
  p += "u.";
  return p;
}

// The records in torch's order: data.pkl, byteorder, data/<i>, version.
void add_pth_records(ZipWriter& zip, const StateDict& tensors, const std::string& archive_name) {
  const std::string dir = archive_name + "/";
  zip.add(dir + "data.pkl", state_dict_pickle(tensors));
  zip.add(dir + "byteorder", "little");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedArray& a = tensors[i];
    zip.add(dir + "data/" + std::to_string(i),
            std::string_view(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size()));
  }
  zip.add(dir + "version", "3\n");
}

}  // namespace

std::string encode_pth(const StateDict& tensors, const std::string& archive_name) {
  ZipWriter zip;
  add_pth_records(zip, tensors, archive_name);
  return zip.finish();
}

void write_pth(const std::filesystem::path& path, const StateDict& tensors) {
  AtomicFile file(path);  // streamed: no second copy of the weights in memory
  ZipWriter zip([&file](std::string_view bytes) { file.write(bytes); });
  add_pth_records(zip, tensors, "archive");
  zip.finish();
  file.commit();
}

}  // namespace kiln::io
