// ZIP archives in memory, as torch.save writes them (PyTorch >= 1.6): the reader walks the central
// directory (ZIP64 end records and extra fields included), checks every offset and size against the
// buffer, and returns stored entries without copying and deflated ones through zlib (bounded).
// The writer writes stored entries whose data start on a 64-byte boundary (torch's "FB" padding
// extra field) and ZIP64 end records, like PyTorch's own writer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

bool looks_like_zip(std::string_view bytes);  // "PK\3\4" at the start

struct ZipEntry {
  std::string name;
  uint16_t method = 0;             // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;               // uncompressed
  uint64_t data_offset = 0;        // of the (compressed) data within the archive, validated
};

class ZipReader {
 public:
  // `bytes` must outlive the reader. Throws kiln::Error naming `what` on any inconsistency.
  ZipReader(std::string_view bytes, std::string what);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;  // nullptr when absent
  // An entry's contents, CRC-checked. Stored entries are viewed in place; deflated ones are
  // inflated into `scratch` (at most max_size bytes) and the view points there.
  std::string_view read(const ZipEntry& entry, std::string& scratch,
                        uint64_t max_size = uint64_t(1) << 34) const;
  const std::string& what() const { return what_; }

 private:
  std::string_view bytes_;
  std::string what_;
  std::vector<ZipEntry> entries_;
};

class ZipWriter {
 public:
  ZipWriter() = default;  // the archive is built in memory and returned by finish()
  // The archive's bytes go to `sink` as they are produced (e.g. an AtomicFile); finish() returns "".
  explicit ZipWriter(std::function<void(std::string_view)> sink) : sink_(std::move(sink)) {}
  // Stored (uncompressed) entries; each entry's data starts at a multiple of `align` bytes.
  void add(const std::string& name, std::string_view data, uint32_t align = 64);
  std::string finish();  // central directory + ZIP64 and classic end records

 private:
  struct Central { std::string name; uint32_t crc; uint64_t size, header_offset; };
  void emit(std::string_view bytes);
  std::function<void(std::string_view)> sink_;
  std::string out_;
  uint64_t offset_ = 0;
  std::vector<Central> central_;
};

}  // namespace kiln::io
