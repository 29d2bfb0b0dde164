// The regression half of the fuzz harnesses: in the ordinary builds (gcc, release and
// ASan+UBSan) each harness is linked with this main instead of libFuzzer and replays the inputs
// that once crashed it (tests/fuzz/regressions/<harness>/, committed), so every fixed crash
// stays pinned by `meson test` without clang.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/core/atomic_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p = argv[i];
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p))
        if (e.is_regular_file()) inputs.push_back(e.path());
    } else {
      inputs.push_back(p);
    }
  }
  for (const auto& p : inputs) {
    std::string bytes = kiln::read_file(p);
    std::printf("%s (%zu bytes)\n", p.filename().c_str(), bytes.size());
    std::fflush(stdout);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());  // aborts on a crash
  }
  std::printf("%zu inputs replayed, no crash\n", inputs.size());
  return inputs.empty() ? 1 : 0;
}
