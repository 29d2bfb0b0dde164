// torch.save zip checkpoints: read through ZipReader + the restricted unpickler; written with a
// hand-emitted protocol-2 pickle (only opcodes torch.load(weights_only=True) accepts) + ZipWriter.
#include "io/pth.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/bytes.h"
#include "io/pickle.h"
#include "io/zip.h"

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

// Gathers a (possibly strided) view of `storage` into a contiguous C-order array.
void materialize(const PickleValue& t, std::string_view storage, NamedArray& out, const std::string& ctx) {
  const size_t es = dtype_size(t.array.dtype);
  if (t.size.size() != t.stride.size())
    fail(ctx + ": stride", std::to_string(t.size.size()) + " entries (one per dim)", std::to_string(t.stride.size()));
  if (t.size.size() > 64) fail(ctx + ": dims", "at most 64", std::to_string(t.size.size()));
  out.dtype = t.array.dtype;
  out.shape = t.size;
  int64_t nbytes = detail::checked_nbytes(out.shape, out.dtype, ctx);
  int64_t numel = nbytes / static_cast<int64_t>(es);
  int64_t storage_numel = static_cast<int64_t>(storage.size() / es);
  if (t.storage_offset < 0) fail(ctx + ": storage_offset", ">= 0", std::to_string(t.storage_offset));
  if (numel == 0) return;
  // The last element the view touches must lie inside the storage.
  int64_t last = t.storage_offset;
  bool contiguous = true;
  int64_t expect = 1;
  for (size_t d = t.size.size(); d-- > 0;) {
    if (t.stride[d] < 0 || (t.stride[d] == 0 && t.size[d] > 1))
      throw Error(ctx + ": negative or zero (expanded) strides are not supported", "save tensor.contiguous() instead");
    last += detail::checked_mul(t.size[d] - 1, t.stride[d], ctx, "view extent");
    if (last < 0) fail(ctx + ": view extent", "a size that fits in 64 bits", "an overflow");
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
  out.bytes.resize(static_cast<size_t>(nbytes));
  const char* src = storage.data();
  char* dst = reinterpret_cast<char*>(out.bytes.data());
  if (contiguous) {
    std::memcpy(dst, src + static_cast<size_t>(t.storage_offset) * es, static_cast<size_t>(nbytes));
    return;
  }
  // Strided view (e.g. a transposed weight saved as is): walk it in C order.
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

StateDict parse_pth(std::string_view bytes, const std::string& what) {
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

  std::map<std::string, std::pair<std::string_view, std::string>> storages;  // key -> bytes (+ owner)
  StateDict out;
  out.reserve(sd->entries.size());
  for (const auto& [k, v] : sd->entries) {
    if (!k->is_text()) fail(what + ": state_dict key", "a string", k->kind_name());
    std::string ctx = what + ": tensor '" + k->text + "'";
    if (v->kind != PickleKind::tensor) fail(ctx, "a tensor", v->kind_name());
    const PickleValue& st = *v->storage;
    auto it = storages.find(st.text);
    if (it == storages.end()) {
      std::string rec = prefix + "data/" + st.text;
      const ZipEntry* e = zip.find(rec);
      if (!e) fail(ctx, "a storage record '" + rec + "'", "none");
      std::string own;
      std::string_view data = zip.read(*e, own);
      int64_t want = detail::checked_mul(st.integer, static_cast<int64_t>(dtype_size(st.array.dtype)), ctx, "storage size");
      if (static_cast<uint64_t>(want) != data.size())
        fail(ctx + ": storage '" + rec + "' of " + std::to_string(st.integer) + " " + dtype_name(st.array.dtype),
             std::to_string(want) + " bytes", std::to_string(data.size()) + " bytes");
      it = storages.emplace(st.text, std::make_pair(data, std::move(own))).first;
      if (!it->second.second.empty()) it->second.first = it->second.second;  // deflated: view the owned copy
    }
    NamedArray a;
    a.name = k->text;
    materialize(*v, it->second.first, a, ctx);
    out.push_back(std::move(a));
  }
  return out;
}

StateDict read_pth(const std::filesystem::path& path) {
  std::string bytes = read_file(path);
  return parse_pth(bytes, path.string());
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
