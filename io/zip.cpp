// ZIP reader/writer (PKWARE APPNOTE 6.3): end of central directory (and its ZIP64 form), central
// directory headers, local headers. Offsets are validated against the buffer before every read.
#include "kiln/io/zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "kiln/core/error.h"
#include "kiln/io/bytes.h"

namespace kiln::io {
namespace {

using detail::append_le;
using detail::load_le;

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50,
                   kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;
constexpr size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kEnd64Size = 56, kLocator64Size = 20;

uint32_t crc_of(std::string_view data) {
  uLong c = crc32(0L, Z_NULL, 0);
  size_t pos = 0;
  while (pos < data.size()) {  // zlib takes uInt lengths
    uInt n = static_cast<uInt>(std::min<size_t>(data.size() - pos, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(data.data() + pos), n);
    pos += n;
  }
  return static_cast<uint32_t>(c);
}

}  // namespace

bool looks_like_zip(std::string_view bytes) {
  return bytes.size() >= 4 && load_le<uint32_t>(bytes.data()) == kLocalSig;
}

ZipReader::ZipReader(std::string_view bytes, std::string what) : bytes_(bytes), what_(std::move(what)) {
  const size_t n = bytes.size();
  if (n < kEndSize) fail(what_, "a zip archive", std::to_string(n) + " bytes");
  // The end record sits in the last 22 + 65535 (comment) bytes; search backwards.
  size_t end = std::string_view::npos;
  size_t lowest = n > kEndSize + 65535 ? n - kEndSize - 65535 : 0;
  for (size_t p = n - kEndSize + 1; p-- > lowest;) {
    if (load_le<uint32_t>(bytes.data() + p) == kEndSig) { end = p; break; }
  }
  if (end == std::string_view::npos)
    fail(what_, "a zip end-of-central-directory record", "none (truncated or not a zip archive)");
  const char* e = bytes.data() + end;
  uint64_t count = load_le<uint16_t>(e + 10);
  uint64_t cd_size = load_le<uint32_t>(e + 12);
  uint64_t cd_offset = load_le<uint32_t>(e + 16);
  if (end >= kLocator64Size && load_le<uint32_t>(bytes.data() + end - kLocator64Size) == kLocator64Sig) {
    uint64_t e64 = load_le<uint64_t>(bytes.data() + end - kLocator64Size + 8);
    if (e64 > n || n - e64 < kEnd64Size || load_le<uint32_t>(bytes.data() + e64) != kEnd64Sig)
      fail(what_ + ": ZIP64 end record offset", "a ZIP64 end record inside the file", std::to_string(e64));
    const char* z = bytes.data() + e64;
    count = load_le<uint64_t>(z + 32);
    cd_size = load_le<uint64_t>(z + 40);
    cd_offset = load_le<uint64_t>(z + 48);
  }
  if (cd_offset > n || cd_size > n - cd_offset)
    fail(what_ + ": central directory", "inside the " + std::to_string(n) + "-byte file",
         "offset " + std::to_string(cd_offset) + " size " + std::to_string(cd_size));
  if (count > cd_size / kCentralSize)
    fail(what_ + ": central directory entry count", "at most " + std::to_string(cd_size / kCentralSize),
         std::to_string(count));
  size_t p = static_cast<size_t>(cd_offset);
  const size_t cd_end = static_cast<size_t>(cd_offset + cd_size);
  entries_.reserve(static_cast<size_t>(count));
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [local header, end of data) per entry
  spans.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    std::string ctx = what_ + ": central directory entry " + std::to_string(i);
    if (cd_end - p < kCentralSize || load_le<uint32_t>(bytes.data() + p) != kCentralSig)
      fail(ctx, "a central directory header", "other bytes");
    const char* c = bytes.data() + p;
    uint16_t flags = load_le<uint16_t>(c + 8);
    ZipEntry ent;
    ent.method = load_le<uint16_t>(c + 10);
    ent.crc32 = load_le<uint32_t>(c + 16);
    ent.compressed_size = load_le<uint32_t>(c + 20);
    ent.size = load_le<uint32_t>(c + 24);
    size_t name_len = load_le<uint16_t>(c + 28), extra_len = load_le<uint16_t>(c + 30),
           comment_len = load_le<uint16_t>(c + 32);
    uint64_t local = load_le<uint32_t>(c + 42);
    if (cd_end - p - kCentralSize < name_len + extra_len + comment_len)
      fail(ctx, "name, extra and comment inside the central directory", "lengths past its end");
    ent.name.assign(c + kCentralSize, name_len);
    ctx = what_ + ": zip entry '" + ent.name + "'";
    // ZIP64 extended information: the 64-bit forms of the fields stored as 0xFFFFFFFF, in order.
    const char* x = c + kCentralSize + name_len;
    for (size_t q = 0; q + 4 <= extra_len;) {
      uint16_t id = load_le<uint16_t>(x + q), len = load_le<uint16_t>(x + q + 2);
      if (q + 4 + len > extra_len) fail(ctx + ": extra field", "inside the header", "a length past its end");
      if (id == 0x0001) {
        size_t r = q + 4, r_end = q + 4 + len;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFFu) return;
          if (r_end - r < 8) fail(ctx + ": ZIP64 extra field", "8 more bytes", "fewer");
          field = load_le<uint64_t>(x + r);
          r += 8;
        };
        take(ent.size);
        take(ent.compressed_size);
        take(local);
      }
      q += 4 + len;
    }
    if (flags & 1) throw Error(ctx + " is encrypted; kiln reads unencrypted archives only");
    if (ent.method != 0 && ent.method != 8)
      fail(ctx + ": compression method", "0 (stored) or 8 (deflate)", std::to_string(ent.method));
    if (local > n || n - local < kLocalSize || load_le<uint32_t>(bytes.data() + local) != kLocalSig)
      fail(ctx + ": local header offset", "a local header inside the file", std::to_string(local));
    const char* l = bytes.data() + local;
    uint64_t data = local + kLocalSize + load_le<uint16_t>(l + 26) + load_le<uint16_t>(l + 28);
    if (data > n || ent.compressed_size > n - data)
      fail(ctx + ": data", "inside the " + std::to_string(n) + "-byte file",
           "offset " + std::to_string(data) + " size " + std::to_string(ent.compressed_size));
    // deflate expands at most ~1032:1; a larger claim is corrupt (and would allocate for nothing)
    if (ent.method == 8 && ent.size / 1100 > ent.compressed_size + 1)
      fail(ctx + ": uncompressed size", "at most 1100 x the compressed size", std::to_string(ent.size));
    if (ent.method == 0 && ent.compressed_size != ent.size)
      fail(ctx + ": stored size", std::to_string(ent.size), std::to_string(ent.compressed_size));
    ent.data_offset = data;
    spans.emplace_back(local, data + ent.compressed_size);
    entries_.push_back(std::move(ent));
    p += kCentralSize + name_len + extra_len + comment_len;
  }
  // Entries that share bytes (one deflate stream named by many entries) would be inflated and
  // kept once per name: a 700 KB archive could ask for gigabytes. Writers never overlap entries.
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::tie(spans[a], a) < std::tie(spans[b], b); });
  for (size_t k = 1; k < order.size(); ++k) {
    size_t a = order[k - 1], b = order[k];
    if (spans[b].first < spans[a].second)
      fail(what_ + ": zip entries '" + entries_[a].name + "' and '" + entries_[b].name + "'",
           "entries at separate places in the file",
           "overlapping bytes (" + std::to_string(spans[a].first) + ".." + std::to_string(spans[a].second) + " and " +
               std::to_string(spans[b].first) + ".." + std::to_string(spans[b].second) + ")",
           "the archive is corrupt or crafted; re-create it with torch.save or zip");
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  for (const ZipEntry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::string_view ZipReader::read(const ZipEntry& entry, std::string& scratch, uint64_t max_size) const {
  std::string ctx = what_ + ": zip entry '" + entry.name + "'";
  if (entry.size > max_size)
    fail(ctx + ": size", "at most " + std::to_string(max_size) + " bytes", std::to_string(entry.size));
  std::string_view raw = bytes_.substr(entry.data_offset, entry.compressed_size);
  std::string_view out;
  if (entry.method == 0) {
    out = raw;
  } else {
    if (entry.size >= 0xFFFFFFFFu || raw.size() >= 0xFFFFFFFFu)
      throw Error(ctx + ": deflated entries of 4 GiB or more are not supported");
    scratch.assign(static_cast<size_t>(entry.size), '\0');
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK) throw Error(ctx + ": zlib inflateInit2 failed");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
    zs.avail_in = static_cast<uInt>(raw.size());
    zs.next_out = reinterpret_cast<Bytef*>(scratch.data());
    zs.avail_out = static_cast<uInt>(scratch.size());
    // Z_FINISH with the whole input and exactly the declared output room: anything but
    // Z_STREAM_END means corrupt data, truncated data, or more output than declared.
    int rc = inflate(&zs, Z_FINISH);
    uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != entry.size)
      fail(ctx, "deflate data of " + std::to_string(entry.size) + " bytes", "corrupt or truncated data");
    out = scratch;
  }
  uint32_t crc = crc_of(out);
  if (crc != entry.crc32) fail(ctx + ": CRC-32", std::to_string(entry.crc32), std::to_string(crc),
                               "the file is corrupt");
  return out;
}

void ZipWriter::emit(std::string_view bytes) {
  if (sink_) sink_(bytes);
  else out_ += bytes;
  offset_ += bytes.size();
}

void ZipWriter::add(const std::string& name, std::string_view data, uint32_t align) {
  if (data.size() >= 0xFFFFFFFFu) throw Error("cannot write zip entry '" + name + "': 4 GiB or larger");
  KILN_ASSERT(name.size() < 65536, "zip entry name too long");
  uint64_t header_offset = offset_;
  uint32_t crc = crc_of(data);
  // The data start after the local header, the name and an extra field; torch pads with an
  // extra field of id "FB" so that the data start on an `align` boundary (so they can be mmapped).
  uint64_t base = offset_ + kLocalSize + name.size() + 4;
  size_t pad = align > 1 ? static_cast<size_t>((align - base % align) % align) : 0;
  std::string h;
  append_le<uint32_t>(h, kLocalSig);
  append_le<uint16_t>(h, 20);  // version needed
  append_le<uint16_t>(h, 0);   // flags
  append_le<uint16_t>(h, 0);   // stored
  append_le<uint16_t>(h, 0);   // time
  append_le<uint16_t>(h, 33);  // date 1980-01-01
  append_le<uint32_t>(h, crc);
  append_le<uint32_t>(h, static_cast<uint32_t>(data.size()));
  append_le<uint32_t>(h, static_cast<uint32_t>(data.size()));
  append_le<uint16_t>(h, static_cast<uint16_t>(name.size()));
  append_le<uint16_t>(h, static_cast<uint16_t>(4 + pad));
  h += name;
  h += "FB";
  append_le<uint16_t>(h, static_cast<uint16_t>(pad));
  h.append(pad, 'Z');
  emit(h);
  emit(data);
  central_.push_back({name, crc, data.size(), header_offset});
}

std::string ZipWriter::finish() {
  uint64_t cd_offset = offset_;
  std::string trailer;  // central directory and end records
  for (const Central& c : central_) {
    append_le<uint32_t>(trailer, kCentralSig);
    append_le<uint16_t>(trailer, 0x031e);  // made by: unix, 3.0
    append_le<uint16_t>(trailer, 20);
    append_le<uint16_t>(trailer, 0);
    append_le<uint16_t>(trailer, 0);
    append_le<uint16_t>(trailer, 0);
    append_le<uint16_t>(trailer, 33);
    append_le<uint32_t>(trailer, c.crc);
    append_le<uint32_t>(trailer, static_cast<uint32_t>(c.size));
    append_le<uint32_t>(trailer, static_cast<uint32_t>(c.size));
    append_le<uint16_t>(trailer, static_cast<uint16_t>(c.name.size()));
    append_le<uint16_t>(trailer, c.header_offset >= 0xFFFFFFFFu ? 12 : 0);
    append_le<uint16_t>(trailer, 0);   // comment
    append_le<uint16_t>(trailer, 0);   // disk
    append_le<uint16_t>(trailer, 0);   // internal attributes
    append_le<uint32_t>(trailer, 0644u << 16);
    append_le<uint32_t>(trailer, c.header_offset >= 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<uint32_t>(c.header_offset));
    trailer += c.name;
    if (c.header_offset >= 0xFFFFFFFFu) {  // entries past 4 GiB: ZIP64 extra with the offset
      append_le<uint16_t>(trailer, 1);
      append_le<uint16_t>(trailer, 8);
      append_le<uint64_t>(trailer, c.header_offset);
    }
  }
  uint64_t cd_size = trailer.size();
  uint64_t end64 = cd_offset + cd_size;
  append_le<uint32_t>(trailer, kEnd64Sig);
  append_le<uint64_t>(trailer, kEnd64Size - 12);
  append_le<uint16_t>(trailer, 0x031e);
  append_le<uint16_t>(trailer, 45);
  append_le<uint32_t>(trailer, 0);
  append_le<uint32_t>(trailer, 0);
  append_le<uint64_t>(trailer, central_.size());
  append_le<uint64_t>(trailer, central_.size());
  append_le<uint64_t>(trailer, cd_size);
  append_le<uint64_t>(trailer, cd_offset);
  append_le<uint32_t>(trailer, kLocator64Sig);
  append_le<uint32_t>(trailer, 0);
  append_le<uint64_t>(trailer, end64);
  append_le<uint32_t>(trailer, 1);
  append_le<uint32_t>(trailer, kEndSig);
  append_le<uint16_t>(trailer, 0);
  append_le<uint16_t>(trailer, 0);
  append_le<uint16_t>(trailer, static_cast<uint16_t>(std::min<size_t>(central_.size(), 0xFFFF)));
  append_le<uint16_t>(trailer, static_cast<uint16_t>(std::min<size_t>(central_.size(), 0xFFFF)));
  append_le<uint32_t>(trailer, static_cast<uint32_t>(std::min<uint64_t>(cd_size, 0xFFFFFFFFu)));
  append_le<uint32_t>(trailer, static_cast<uint32_t>(std::min<uint64_t>(cd_offset, 0xFFFFFFFFu)));
  append_le<uint16_t>(trailer, 0);
  central_.clear();
  emit(trailer);
  offset_ = 0;
  return sink_ ? std::string() : std::move(out_);
}

}  // namespace kiln::io
