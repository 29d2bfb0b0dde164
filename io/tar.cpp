// tar reader/writer. A header is 512 bytes: name[100] mode[8] uid[8] gid[8] size[12] mtime[12]
// chksum[8] typeflag[1] linkname[100] magic[6] version[2] uname[32] gname[32] devmajor[8]
// devminor[8] prefix[155]; data follow, padded to 512 bytes.
#include "kiln/io/tar.h"

#include <cstring>

#include "kiln/core/error.h"
#include "kiln/io/bytes.h"

namespace kiln::io {
namespace {

constexpr size_t kBlock = 512;

std::string field_str(const char* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != '\0') ++len;
  return std::string(p, len);
}

uint64_t parse_number(const char* p, size_t n, const std::string& ctx) {
  if (static_cast<unsigned char>(p[0]) & 0x80) {  // GNU base-256 for sizes >= 8 GiB
    if (static_cast<unsigned char>(p[0]) != 0x80) fail(ctx, "a non-negative base-256 number", "a negative one");
    uint64_t v = 0;
    for (size_t i = 1; i < n; ++i) {
      if (v >> 56) fail(ctx, "a number below 2^64", "a larger one");
      v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  bool any = false;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) fail(ctx, "an octal number below 2^63", "a larger one");
    v = v * 8 + static_cast<uint64_t>(p[i] - '0');
    any = true;
  }
  for (; i < n; ++i)
    if (p[i] != ' ' && p[i] != '\0') fail(ctx, "an octal number", detail::quoted(std::string_view(p, n)));
  if (!any) return 0;
  return v;
}

// Returns the cleaned name, or throws when it could escape the extraction directory.
std::string clean_name(std::string name, const std::string& what) {
  while (name.rfind("./", 0) == 0) name = name.substr(2);
  while (!name.empty() && name.back() == '/') name.pop_back();
  bool bad = name.empty() || name[0] == '/' || name.find('\0') != std::string::npos;
  size_t start = 0;
  while (!bad && start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) bad = true;
    start = end + 1;
  }
  if (bad) fail(what + ": tar entry name", "a relative path without '..'", detail::quoted(name));
  return name;
}

// pax records "LEN key=value\n"; returns path and size overrides.
void parse_pax(std::string_view d, std::string& path, std::string& link, uint64_t& size, bool& has_size,
               const std::string& ctx) {
  size_t pos = 0;
  while (pos < d.size()) {
    size_t sp = d.find(' ', pos);
    if (sp == std::string_view::npos) fail(ctx, "pax records 'LEN key=value'", "a malformed record");
    uint64_t len = 0;
    for (size_t i = pos; i < sp; ++i) {
      if (d[i] < '0' || d[i] > '9' || len > (uint64_t(1) << 40)) fail(ctx, "a decimal record length", "other bytes");
      len = len * 10 + static_cast<uint64_t>(d[i] - '0');
    }
    if (len < sp - pos + 2 || len > d.size() - pos) fail(ctx, "a record inside the header", "a bad record length");
    std::string_view rec = d.substr(sp + 1, pos + len - sp - 2);  // without the trailing '\n'
    size_t eq = rec.find('=');
    if (eq != std::string_view::npos) {
      std::string_view key = rec.substr(0, eq), val = rec.substr(eq + 1);
      if (key == "path") path = std::string(val);
      if (key == "linkpath") link = std::string(val);
      if (key == "size") {
        size = 0;
        for (char c : val) {
          if (c < '0' || c > '9' || size > (uint64_t(1) << 58)) fail(ctx + ": pax size", "a decimal number", detail::quoted(val));
          size = size * 10 + static_cast<uint64_t>(c - '0');
        }
        has_size = true;
      }
    }
    pos += len;
  }
}

}  // namespace

std::vector<TarEntry> parse_tar(std::string_view bytes, const std::string& what, bool keep_symlinks) {
  std::vector<TarEntry> out;
  size_t pos = 0;
  std::string long_name;
  std::string pax_path, pax_link;
  uint64_t pax_size = 0;
  bool pax_has_size = false;
  while (true) {
    if (bytes.size() - pos < kBlock) {
      fail(what + ": tar header at offset " + std::to_string(pos), "512 bytes",
           std::to_string(bytes.size() - pos) + " bytes (truncated archive: no end-of-archive block)");
    }
    const char* h = bytes.data() + pos;
    bool zero = true;
    for (size_t i = 0; i < kBlock && zero; ++i) zero = h[i] == '\0';
    if (zero) break;  // end of archive
    std::string ctx = what + ": tar header at offset " + std::to_string(pos);
    uint64_t stored_sum = parse_number(h + 148, 8, ctx + ": checksum");
    uint64_t sum = 0;
    for (size_t i = 0; i < kBlock; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    if (sum != stored_sum) fail(ctx + ": checksum", std::to_string(stored_sum), std::to_string(sum),
                                "the archive is corrupt or not a tar file");
    uint64_t size = parse_number(h + 124, 12, ctx + ": size");
    if (pax_has_size) size = pax_size;
    char type = h[156];
    uint64_t padded = size + (kBlock - size % kBlock) % kBlock;
    if (size > bytes.size() - pos - kBlock || padded > bytes.size() - pos - kBlock) {
      fail(ctx + ": entry size", "at most " + std::to_string(bytes.size() - pos - kBlock) + " bytes",
           std::to_string(size), "the archive is truncated");
    }
    std::string_view data = bytes.substr(pos + kBlock, size);
    pos += kBlock + padded;
    if (type == 'L') { long_name = field_str(data.data(), data.size()); continue; }
    if (type == 'x') { parse_pax(data, pax_path, pax_link, pax_size, pax_has_size, ctx + ": pax header"); continue; }
    if (type == 'g' || type == 'K') continue;
    std::string name;
    if (!pax_path.empty()) name = pax_path;
    else if (!long_name.empty()) name = long_name;
    else {
      name = field_str(h, 100);
      if (std::memcmp(h + 257, "ustar\0", 6) == 0) {  // POSIX ustar: prefix/name
        std::string prefix = field_str(h + 345, 155);
        if (!prefix.empty()) name = prefix + "/" + name;
      }
    }
    long_name.clear();
    pax_path.clear();
    pax_has_size = false;
    std::string pax_link_here = std::move(pax_link);
    pax_link.clear();
    bool symlink = type == '2' && keep_symlinks;
    if (type != '0' && type != '\0' && type != '5' && type != '7' && !symlink) continue;  // links, devices, fifos
    TarEntry e;
    e.name = clean_name(name, what);
    e.is_dir = type == '5';
    e.is_symlink = symlink;
    e.mode = static_cast<uint32_t>(parse_number(h + 100, 8, ctx + ": mode") & 07777);
    e.mtime = static_cast<int64_t>(parse_number(h + 136, 12, ctx + ": mtime") & ((uint64_t(1) << 62) - 1));
    if (symlink) {
      e.link_target = pax_link_here.empty() ? field_str(h + 157, 100) : pax_link_here;
      if (e.link_target.empty()) fail(ctx + ": symlink target", "a non-empty name", "an empty one");
    } else if (!e.is_dir) {
      e.data = std::string(data);
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string encode_tar(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const TarEntry& e : entries) {
    char h[kBlock] = {};
    std::string name = e.is_dir ? e.name + "/" : e.name, prefix;
    if (name.size() > 100) {
      size_t cut = name.rfind('/', 155);
      if (cut == std::string::npos || name.size() - cut - 1 > 100 || cut == 0)
        throw Error("cannot write tar: name too long for ustar (255 bytes, split at a '/'): " + name);
      prefix = name.substr(0, cut);
      name = name.substr(cut + 1);
    }
    std::memcpy(h, name.data(), name.size());
    if (e.is_symlink && (e.link_target.empty() || e.link_target.size() > 100))
      throw Error("cannot write tar: symlink target must be 1 to 100 bytes: " + e.name + " -> " + e.link_target);
    std::snprintf(h + 100, 8, "%07o", e.mode ? (e.mode & 07777u) : e.is_symlink ? 0777u : e.is_dir ? 0755u : 0644u);
    std::snprintf(h + 108, 8, "%07o", 0u);
    std::snprintf(h + 116, 8, "%07o", 0u);
    bool has_data = !e.is_dir && !e.is_symlink;
    uint64_t size = has_data ? e.data.size() : 0;
    KILN_ASSERT(size < (uint64_t(1) << 33), "tar entry over 8 GiB: " + e.name);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
    KILN_ASSERT(e.mtime >= 0 && e.mtime < (int64_t(1) << 33), "tar mtime out of range: " + e.name);
    std::snprintf(h + 136, 12, "%011llo", static_cast<unsigned long long>(e.mtime));
    h[156] = e.is_symlink ? '2' : e.is_dir ? '5' : '0';
    std::memcpy(h + 157, e.link_target.data(), e.link_target.size());
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memcpy(h + 345, prefix.data(), prefix.size());
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    std::snprintf(h + 148, 8, "%06o", sum);  // six digits, NUL, and the space already there
    h[155] = ' ';
    out.append(h, kBlock);
    if (has_data) {
      out += e.data;
      out.append((kBlock - e.data.size() % kBlock) % kBlock, '\0');
    }
  }
  out.append(2 * kBlock, '\0');
  return out;
}

}  // namespace kiln::io
