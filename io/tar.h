// tar archives in memory: reads ustar, GNU (././@LongLink long names, base-256 sizes) and pax
// (path/size records) headers; writes ustar (names longer than 100 bytes split into prefix/name,
// up to 255 bytes), with each entry's mode and mtime, so image layers come out byte-identical.
// Regular files and directories are returned, symbolic links when asked for; hard links and
// devices are skipped.
// Names with "..", absolute paths or NUL bytes are rejected, so extracting cannot escape a directory.
// An archive must end with a zero end-of-archive block: a truncated download is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

struct TarEntry {
  std::string name;  // "cifar-100-python/train" (directories without the trailing '/')
  bool is_dir = false;
  std::string data;  // file contents (empty for directories and links)
  bool is_symlink = false;
  std::string link_target = {};  // a symlink's target, as stored ("usr/lib", "../lib/libz.so.1")
  uint32_t mode = 0;        // permission bits; 0 writes 0755 for directories, 0644 for files
  int64_t mtime = 0;        // seconds since the epoch
};

// keep_symlinks: return symbolic links (is_symlink) instead of skipping them. Their targets are
// returned as stored: a caller that creates them must not follow them outside its directory.
std::vector<TarEntry> parse_tar(std::string_view bytes, const std::string& what, bool keep_symlinks = false);
std::string encode_tar(const std::vector<TarEntry>& entries);

}  // namespace kiln::io
