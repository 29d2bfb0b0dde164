// tar archives in memory: reads ustar, GNU (././@LongLink long names, base-256 sizes) and pax
// (path/size records) headers; writes ustar (names longer than 100 bytes split into prefix/name,
// up to 255 bytes). Regular files and directories are returned; links and devices are skipped.
// Names with "..", absolute paths or NUL bytes are rejected, so extracting cannot escape a directory.
// An archive must end with a zero end-of-archive block: a truncated download is an error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::io {

struct TarEntry {
  std::string name;  // "cifar-100-python/train" (directories without the trailing '/')
  bool is_dir = false;
  std::string data;  // file contents (empty for directories)
};

std::vector<TarEntry> parse_tar(std::string_view bytes, const std::string& what);
std::string encode_tar(const std::vector<TarEntry>& entries);

}  // namespace kiln::io
