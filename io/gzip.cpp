// gzip through zlib's inflate/deflate with a gzip wrapper (windowBits 15 + 16).
#include "kiln/io/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "kiln/core/error.h"

namespace kiln::io {

bool looks_like_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

std::string gunzip(std::string_view bytes, const std::string& what, size_t max_out) {
  std::string out;
  gunzip_stream(bytes, what, max_out, [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

uint64_t gunzip_stream(std::string_view bytes, const std::string& what, uint64_t max_out,
                       const std::function<void(const char*, size_t)>& sink) {
  if (!looks_like_gzip(bytes))
    fail(what, "gzip data (starting with 1f 8b)", bytes.size() < 2 ? "a truncated file" : "other bytes");
  uint64_t total = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (pos > 0 && !looks_like_gzip(bytes.substr(pos))) {
      // Trailing zero padding after the last member is common (tar blocks); anything else is not.
      bool zeros = true;
      for (size_t i = pos; i < bytes.size() && zeros; ++i) zeros = bytes[i] == '\0';
      if (zeros) break;
      fail(what + ": data after gzip member at offset " + std::to_string(pos),
           "another gzip member or the end", "other bytes");
    }
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) throw Error(what + ": zlib inflateInit2 failed");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + pos));
    size_t in_left = bytes.size() - pos;
    int rc = Z_OK;
    char buf[1 << 16];
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0) {
        if (in_left == 0) break;
        uInt chunk = static_cast<uInt>(std::min<size_t>(in_left, 1u << 30));
        zs.avail_in = chunk;
        in_left -= chunk;
      }
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof buf;
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) {
        std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
        inflateEnd(&zs);
        throw Error(what + ": corrupt gzip data (" + msg + ")", "the download may be damaged; fetch it again");
      }
      size_t produced = sizeof buf - zs.avail_out;
      if (total + produced > max_out) {
        inflateEnd(&zs);
        fail(what + ": gunzipped size", "at most " + std::to_string(max_out) + " bytes", "more");
      }
      total += produced;
      sink(buf, produced);
    }
    size_t consumed = static_cast<size_t>(zs.total_in);
    inflateEnd(&zs);
    if (rc != Z_STREAM_END)
      throw Error(what + ": truncated gzip data (the stream ends early)", "the file is incomplete; fetch it again");
    pos += consumed;
  }
  return total;
}

std::string gzip(std::string_view bytes, int level) {
  z_stream zs{};
  KILN_ASSERT(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
              "deflateInit2");
  std::string out;
  char buf[1 << 16];
  size_t pos = 0;
  int rc = Z_OK;
  do {
    uInt chunk = static_cast<uInt>(std::min<size_t>(bytes.size() - pos, 1u << 30));
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + pos));
    zs.avail_in = chunk;
    pos += chunk;
    int flush = pos == bytes.size() ? Z_FINISH : Z_NO_FLUSH;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof buf;
      rc = deflate(&zs, flush);
      KILN_ASSERT(rc != Z_STREAM_ERROR, "deflate");
      out.append(buf, sizeof buf - zs.avail_out);
    } while (zs.avail_out == 0);
  } while (rc != Z_STREAM_END);
  deflateEnd(&zs);
  return out;
}

}  // namespace kiln::io
