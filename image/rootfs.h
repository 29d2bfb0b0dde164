// The files a container needs to run one dynamically linked program, taken from this machine:
// the program, every shared library the dynamic loader resolves for it (the loader included),
// and a few named data files. Paths are reproduced as they are here, symlinks included: on
// Debian 12, /lib is a link to usr/lib and libz.so.1 a link to libz.so.1.2.13, and the image
// holds the same links, so the loader inside the image finds each library where it found it here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kiln/io/tar.h"

namespace kiln::image {

// PT_INTERP of an ELF executable ("/lib64/ld-linux-x86-64.so.2"). Throws kiln::Error naming the
// file when it is not a dynamically linked x86-64 ELF executable.
std::string elf_interpreter(const std::filesystem::path& exe);

// The shared libraries the dynamic loader loads for `exe`, as absolute paths, in load order,
// the loader itself included: `INTERP --list EXE` (what ldd does, without a shell script), so the
// answer honours LD_LIBRARY_PATH, RUNPATH and ld.so.cache exactly as running the program would.
// Throws when the loader reports a library "not found".
std::vector<std::string> loader_dependencies(const std::filesystem::path& exe);
// The same for a shared library (no PT_INTERP of its own), listed by the loader `interp`.
std::vector<std::string> loader_dependencies(const std::filesystem::path& exe, const std::string& interp);

// A directory tree being assembled for one image layer. Entries are keyed by their absolute path
// in the image; tar() writes them sorted, owned by root, with one fixed mtime.
class Rootfs {
 public:
  // `host` (an absolute path here) appears at the same path in the image. Each component that
  // is a symlink here becomes the same symlink there, followed to its target, which is added too.
  // Regular files keep their permission bits. Directories are added empty (their own entries).
  void add_host_path(const std::string& host);
  // A file from elsewhere at `image_path` (e.g. the kiln binary at /usr/local/bin/kiln).
  void add_file(const std::string& image_path, const std::filesystem::path& source, uint32_t mode);
  void add_bytes(const std::string& image_path, std::string data, uint32_t mode = 0644);
  void add_dir(const std::string& image_path, uint32_t mode = 0755);

  size_t size() const { return entries_.size(); }
  uint64_t content_bytes() const;
  // The layer: an uncompressed tar, entries sorted by path, parents before children.
  std::string tar(int64_t mtime) const;

 private:
  void add_parents(const std::string& image_path);
  std::map<std::string, io::TarEntry> entries_;  // key: path without the leading '/'
};

}  // namespace kiln::image
