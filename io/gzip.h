// gzip (RFC 1952) through zlib, in memory. gunzip stops with a kiln::Error once the output would
// exceed max_out bytes, so a small hostile file cannot inflate into all of memory. Concatenated
// gzip members are decompressed one after the other, as gzip(1) does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kiln::io {

std::string gunzip(std::string_view bytes, const std::string& what, size_t max_out);
// The same, handing the output to `sink` in 64 KiB pieces instead of keeping it (hashing a layer
// of any size in bounded memory). Returns the number of bytes produced.
uint64_t gunzip_stream(std::string_view bytes, const std::string& what, uint64_t max_out,
                       const std::function<void(const char*, size_t)>& sink);
std::string gzip(std::string_view bytes, int level = 6);
bool looks_like_gzip(std::string_view bytes);  // the 1f 8b magic

}  // namespace kiln::io
