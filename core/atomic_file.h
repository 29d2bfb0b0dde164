// Files that matter (checkpoints, models, datasets) are written atomically: the bytes go to a
// temporary file in the destination's directory, are fsync'ed, then renamed over the target and
// the directory is fsync'ed. A crash leaves either the old file or the new one, never half of one.
#pragma once

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string_view>

namespace kiln {

// Streaming form: write() any number of times, then commit(). Destroying an uncommitted
// AtomicFile removes the temporary file and leaves the target untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  const std::filesystem::path& target() const { return target_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path tmp_;
  std::FILE* file_ = nullptr;
};

void write_file_atomic(const std::filesystem::path& target, std::span<const std::byte> bytes);
void write_file_atomic(const std::filesystem::path& target, std::string_view bytes);

// Whole file into memory; throws kiln::Error naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace kiln
