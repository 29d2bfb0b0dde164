// Runtime files of a program (see rootfs.h).
#include "kiln/image/rootfs.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace fs = std::filesystem;

namespace kiln::image {
namespace {

std::string strip_slash(const std::string& p) {
  size_t i = 0;
  while (i < p.size() && p[i] == '/') ++i;
  std::string s = p.substr(i);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Runs argv with stdout captured; returns {exit code, stdout}. stderr is captured too, appended
// to the message when the program fails.
std::pair<int, std::string> run_capture(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe(out) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (text.size() < (size_t(16) << 20)) text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), text};
}

}  // namespace

std::string elf_interpreter(const fs::path& exe) {
  std::string what = exe.string();
  std::string bytes = read_file(exe);
  if (bytes.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0)
    fail(what, "an ELF executable", "another kind of file");
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    fail(what, "a 64-bit x86-64 (linux/amd64) ELF file", "another architecture");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > bytes.size() ||
      uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > bytes.size() - eh.e_phoff)
    fail(what + ": program headers", "inside the file", "offsets past its end");
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_INTERP) continue;
    if (ph.p_offset > bytes.size() || ph.p_filesz > bytes.size() - ph.p_offset || ph.p_filesz < 2)
      fail(what + ": PT_INTERP", "a path inside the file", "an offset past its end");
    std::string interp(bytes.data() + ph.p_offset, ph.p_filesz);
    while (!interp.empty() && interp.back() == '\0') interp.pop_back();
    if (interp.empty() || interp[0] != '/') fail(what + ": PT_INTERP", "an absolute path", "'" + interp + "'");
    return interp;
  }
  fail(what, "a dynamically linked executable (with a PT_INTERP program header)",
       "a static one or a shared library",
       "a static binary needs no libraries: it can be the only file of an image");
}

std::vector<std::string> loader_dependencies(const fs::path& exe) {
  return loader_dependencies(exe, elf_interpreter(exe));
}

std::vector<std::string> loader_dependencies(const fs::path& exe, const std::string& interp) {
  auto [rc, text] = run_capture({interp, "--list", fs::absolute(exe).string()});
  if (rc != 0) throw Error("the dynamic loader " + interp + " could not list the libraries of " + exe.string() +
                           " (exit " + std::to_string(rc) + "):\n" + text);
  // "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)", "\t/lib64/ld-linux-x86-64.so.2 (0x...)",
  // "\tlinux-vdso.so.1 (0x...)" (in the kernel, no file), "\tlibfoo.so => not found".
  std::vector<std::string> libs;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    line = line.substr(b);
    std::string path;
    size_t arrow = line.find(" => ");
    if (arrow != std::string::npos) {
      path = line.substr(arrow + 4);
      if (path.rfind("not found", 0) == 0)
        throw Error(exe.string() + " needs " + line.substr(0, arrow) + ", which the dynamic loader did not find",
                    "install the library or point LD_LIBRARY_PATH at it before building the image");
    } else {
      path = line;
    }
    size_t paren = path.find(" (0x");
    if (paren != std::string::npos) path = path.substr(0, paren);
    if (path.empty() || path[0] != '/') continue;  // the vDSO
    libs.push_back(path);
  }
  bool has_interp = false;
  for (const auto& l : libs) has_interp = has_interp || l == interp;
  if (!has_interp) libs.push_back(interp);
  return libs;
}

void Rootfs::add_parents(const std::string& image_path) {
  std::string p = strip_slash(image_path);
  for (size_t pos = p.find('/'); pos != std::string::npos; pos = p.find('/', pos + 1)) {
    std::string dir = p.substr(0, pos);
    auto it = entries_.find(dir);
    if (it != entries_.end()) {
      KILN_ASSERT(it->second.is_dir, "image path " + image_path + ": parent " + dir + " is not a directory");
      continue;
    }
    io::TarEntry e;
    e.name = dir;
    e.is_dir = true;
    e.mode = 0755;
    entries_[dir] = std::move(e);
  }
}

void Rootfs::add_host_path(const std::string& host) {
  if (host.empty() || host[0] != '/') fail("image file " + host, "an absolute path", "a relative one");
  // Walk the components; `done` is the resolved (symlink-free) prefix so far.
  std::vector<std::string> pending;
  {
    std::string p = strip_slash(host);
    for (size_t s = 0; s <= p.size();) {
      size_t e = p.find('/', s);
      if (e == std::string::npos) e = p.size();
      if (e > s) pending.push_back(p.substr(s, e - s));
      s = e + 1;
    }
  }
  std::string done;  // no leading '/'
  int links = 0;
  while (!pending.empty()) {
    std::string comp = pending.front();
    pending.erase(pending.begin());
    if (comp == ".") continue;
    if (comp == "..") {
      size_t cut = done.rfind('/');
      done = cut == std::string::npos ? "" : done.substr(0, cut);
      continue;
    }
    std::string cur = done.empty() ? comp : done + "/" + comp;
    struct stat st;
    if (lstat(("/" + cur).c_str(), &st) != 0)
      fail("image file /" + cur + (cur == strip_slash(host) ? "" : " (for " + host + ")"), "an existing file",
           std::strerror(errno));
    if (S_ISLNK(st.st_mode)) {
      if (++links > 40) fail("image file " + host, "a path that resolves", "a symlink loop");
      std::string target = fs::read_symlink("/" + cur).string();
      io::TarEntry e;
      e.name = cur;
      e.is_symlink = true;
      e.link_target = target;
      add_parents("/" + cur);
      entries_[cur] = e;
      // Continue from the link's target, then the remaining components.
      std::vector<std::string> next;
      std::string t = target;
      if (!t.empty() && t[0] == '/') done.clear();
      for (size_t s = 0; s <= t.size();) {
        size_t e2 = t.find('/', s);
        if (e2 == std::string::npos) e2 = t.size();
        if (e2 > s) next.push_back(t.substr(s, e2 - s));
        s = e2 + 1;
      }
      pending.insert(pending.begin(), next.begin(), next.end());
      continue;
    }
    done = cur;
    if (S_ISDIR(st.st_mode)) {
      if (!entries_.count(cur)) add_dir("/" + cur, st.st_mode & 07777);
    } else if (S_ISREG(st.st_mode)) {
      if (!pending.empty()) fail("image file " + host, "a path through directories", "/" + cur + " is a file");
      add_file("/" + cur, "/" + cur, st.st_mode & 07777);
    } else {
      fail("image file /" + cur, "a regular file, directory or symlink", "a device, socket or fifo");
    }
  }
}

void Rootfs::add_file(const std::string& image_path, const fs::path& source, uint32_t mode) {
  add_bytes(image_path, read_file(source), mode);
}

void Rootfs::add_bytes(const std::string& image_path, std::string data, uint32_t mode) {
  std::string key = strip_slash(image_path);
  KILN_ASSERT(!key.empty(), "image file path is empty");
  add_parents(image_path);
  io::TarEntry e;
  e.name = key;
  e.data = std::move(data);
  e.mode = mode;
  entries_[key] = std::move(e);
}

void Rootfs::add_dir(const std::string& image_path, uint32_t mode) {
  std::string key = strip_slash(image_path);
  add_parents(image_path);
  io::TarEntry e;
  e.name = key;
  e.is_dir = true;
  e.mode = mode;
  entries_[key] = std::move(e);
}

uint64_t Rootfs::content_bytes() const {
  uint64_t n = 0;
  for (const auto& [k, e] : entries_) n += e.data.size();
  return n;
}

std::string Rootfs::tar(int64_t mtime) const {
  // std::map orders "a/b" after "a" and before "a0" only if '/' sorts first; use a path-wise
  // order so a directory always precedes its children.
  std::vector<const io::TarEntry*> sorted;
  for (const auto& [k, e] : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const io::TarEntry* a, const io::TarEntry* b) {
    return std::lexicographical_compare(a->name.begin(), a->name.end(), b->name.begin(), b->name.end(),
                                        [](char x, char y) {
                                          auto k = [](char c) { return c == '/' ? '\0' : c; };
                                          return static_cast<unsigned char>(k(x)) < static_cast<unsigned char>(k(y));
                                        });
  });
  std::vector<io::TarEntry> out;
  out.reserve(sorted.size());
  for (const io::TarEntry* e : sorted) {
    io::TarEntry c = *e;
    c.mtime = mtime;
    out.push_back(std::move(c));
  }
  return io::encode_tar(out);
}

}  // namespace kiln::image
