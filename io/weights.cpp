// Format dispatch for weight files: content sniffing on read, extension on write.
#include "kiln/io/weights.h"

#include <fstream>

#include "kiln/core/error.h"
#include "kiln/io/npy.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"

namespace kiln::io {

const char* weights_format_name(WeightsFormat f) {
  switch (f) {
    case WeightsFormat::pth: return "pth";
    case WeightsFormat::safetensors: return "safetensors";
    case WeightsFormat::npy: return "npy";
  }
  return "?";
}

WeightsFormat detect_weights_format(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string());
  char head[9] = {};
  in.read(head, 9);
  std::streamsize n = in.gcount();
  if (n >= 4 && std::string_view(head, 4) == "PK\x03\x04") return WeightsFormat::pth;
  if (n >= 6 && std::string_view(head, 6) == "\x93NUMPY") return WeightsFormat::npy;
  // Byte 8 before byte 0: a safetensors header length may begin with any byte (0x80 included),
  // while byte 8 is '{' in every safetensors file and in no legacy pickle (0xf9 there).
  if (n == 9 && head[8] == '{') return WeightsFormat::safetensors;
  if (n >= 1 && static_cast<unsigned char>(head[0]) == 0x80) return WeightsFormat::pth;  // legacy: parse_pth explains
  fail(path.string(), "a .pth (torch.save zip), .safetensors or .npy file", "unrecognised contents");
}

WeightsFormat weights_format_from_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  if (ext == ".safetensors") return WeightsFormat::safetensors;
  if (ext == ".pth" || ext == ".pt" || ext == ".bin" || ext == ".ckpt") return WeightsFormat::pth;
  if (ext == ".npy") return WeightsFormat::npy;
  fail(path.string(), "a file name ending in .safetensors, .pth, .pt or .npy", "'" + ext + "'");
}

StateDict read_weights(const std::filesystem::path& path) {
  switch (detect_weights_format(path)) {
    case WeightsFormat::pth: return read_pth(path);
    case WeightsFormat::safetensors: return read_safetensors(path);
    case WeightsFormat::npy: return {read_npy(path)};
  }
  return {};
}

void write_weights(const std::filesystem::path& path, const StateDict& tensors) {
  switch (weights_format_from_extension(path)) {
    case WeightsFormat::pth: return write_pth(path, tensors);
    case WeightsFormat::safetensors: return write_safetensors(path, tensors);
    case WeightsFormat::npy:
      if (tensors.size() != 1)
        fail(path.string(), "one array for an .npy file", std::to_string(tensors.size()) + " arrays",
             "write a .safetensors file for several tensors");
      return write_npy(path, tensors[0]);
  }
}

}  // namespace kiln::io
