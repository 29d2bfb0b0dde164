// PyTorch checkpoints (.pth/.pt) as torch.save writes them since PyTorch 1.6: a zip archive with
// `<prefix>/data.pkl` (a pickled OrderedDict of tensors) and one `<prefix>/data/<key>` record per
// storage. Reading uses kiln's restricted unpickler (io/pickle.h): nothing is executed. Tensors
// become contiguous C-order NamedArrays (views with offsets and strides are gathered). A legacy
// pre-1.6 file is refused with a hint to re-save it. A state_dict nested in a dict under "state_dict"
// or "model" (Lightning / common checkpoints) is accepted.
// Writing produces what torch.save(OrderedDict) writes: loadable by torch.load(weights_only=True).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kiln/io/array.h"

namespace kiln::io {

// Memory budget of loading. Storages are read (inflated) once each and dropped after their last
// view, but every tensor owns its bytes, so views sharing a storage are copies: the tensors may
// take at most max_bytes in all, checked before anything is allocated; over it, kiln::Error says
// by how much. The zip's entries must not overlap (io/zip.h) and data.pkl is unpickled under
// its own budget (io/pickle.h).
struct PthLimits {
  uint64_t max_bytes = 0;  // 0: twice the bytes of the storages the state_dict uses, + 16 MiB
};

StateDict parse_pth(std::string_view bytes, const std::string& what, const PthLimits& limits = {});
StateDict read_pth(const std::filesystem::path& path, const PthLimits& limits = {});

// `archive_name` is the zip's top folder (torch uses the file's stem, newer versions "archive").
std::string encode_pth(const StateDict& tensors, const std::string& archive_name = "archive");
void write_pth(const std::filesystem::path& path, const StateDict& tensors);  // atomic

}  // namespace kiln::io
