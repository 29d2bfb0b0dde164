// gzip (RFC 1952) through zlib, in memory. gunzip stops with a kiln::Error once the output would
// exceed max_out bytes, so a small hostile file cannot inflate into all of memory. Concatenated
// gzip members are decompressed one after the other, as gzip(1) does.
#pragma once

#include <string>
#include <string_view>

namespace kiln::io {

std::string gunzip(std::string_view bytes, const std::string& what, size_t max_out);
std::string gzip(std::string_view bytes, int level = 6);
bool looks_like_gzip(std::string_view bytes);  // the 1f 8b magic

}  // namespace kiln::io
