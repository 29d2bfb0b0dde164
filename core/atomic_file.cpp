#include "kiln/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "kiln/core/error.h"

namespace kiln {
namespace {

std::string errno_text() { return std::strerror(errno); }

void fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems refuse to open directories
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  std::random_device rd;
  auto dir = target_.parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  tmp_ = target_;
  tmp_ += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_)
    throw Error("cannot create " + tmp_.string() + ": " + errno_text(),
                "check that the directory exists and is writable");
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void AtomicFile::write(const void* data, size_t size) {
  KILN_ASSERT(file_ != nullptr, "write after commit");
  if (size && std::fwrite(data, 1, size, file_) != size)
    throw Error("cannot write " + tmp_.string() + ": " + errno_text(), "is the disk full?");
}

void AtomicFile::commit() {
  KILN_ASSERT(file_ != nullptr, "commit twice");
  bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  std::string why = ok ? "" : errno_text();
  std::fclose(file_);
  file_ = nullptr;
  if (!ok || std::rename(tmp_.c_str(), target_.c_str()) != 0) {
    if (why.empty()) why = errno_text();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    throw Error("cannot write " + target_.string() + ": " + why, "is the disk full?");
  }
  fsync_dir(target_.parent_path());
}

void write_file_atomic(const std::filesystem::path& target, std::span<const std::byte> bytes) {
  AtomicFile f(target);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void write_file_atomic(const std::filesystem::path& target, std::string_view bytes) {
  AtomicFile f(target);
  f.write(bytes);
  f.commit();
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + ": " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path.string() + ": " + errno_text());
  return std::move(ss).str();
}

}  // namespace kiln
