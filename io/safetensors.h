// The safetensors format (Hugging Face, timm): 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the tensors' bytes. Reading validates strictly: header length sane, offsets in range,
// tensors contiguous and non-overlapping and covering the whole buffer, sizes = dtype * shape.
// Tensors are returned in file (offset) order; writing keeps the StateDict's order.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "kiln/io/array.h"

namespace kiln::io {

using Metadata = std::map<std::string, std::string>;

StateDict parse_safetensors(std::string_view bytes, const std::string& what,
                            Metadata* metadata = nullptr);
StateDict read_safetensors(const std::filesystem::path& path, Metadata* metadata = nullptr);

std::string encode_safetensors(const StateDict& tensors, const Metadata& metadata = {});
void write_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                       const Metadata& metadata = {});  // atomic

}  // namespace kiln::io
