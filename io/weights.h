// One entry point for weight files whatever their format, chosen by content (not by name) when
// reading: a torch.save zip (.pth/.pt), safetensors, or a single .npy array. Writing picks the
// format from the extension: .safetensors, .pth/.pt, .npy (a single array only).
#pragma once

#include <filesystem>
#include <string>

#include "kiln/io/array.h"

namespace kiln::io {

enum class WeightsFormat { pth, safetensors, npy };

WeightsFormat detect_weights_format(const std::filesystem::path& path);  // by content; throws
WeightsFormat weights_format_from_extension(const std::filesystem::path& path);  // throws
const char* weights_format_name(WeightsFormat f);

StateDict read_weights(const std::filesystem::path& path);
void write_weights(const std::filesystem::path& path, const StateDict& tensors);  // atomic

}  // namespace kiln::io
