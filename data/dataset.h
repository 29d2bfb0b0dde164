// CIFAR-100 in memory: uint8 images (N,3,32,32) as R,G,B planes per record (the binary
// version's byte order), int64 fine labels and the class names from the dataset's own meta
// files. data/ knows nothing of the engine: it fills plain float buffers (see loader.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::data {

inline constexpr int64_t kImageC = 3, kImageH = 32, kImageW = 32;
inline constexpr int64_t kImageBytes = kImageC * kImageH * kImageW;  // 3072
inline constexpr int64_t kBinaryRecordBytes = 2 + kImageBytes;      // coarse, fine, pixels

struct Dataset {
  std::vector<uint8_t> images;           // size() * 3072 bytes, record i at i*3072 (CHW)
  std::vector<int64_t> labels;           // fine labels in [0, num_classes())
  std::vector<std::string> class_names;  // fine label names, index = label
  bool synthetic = false;                // made by `kiln synth` (a SYNTHETIC marker file)
  std::string source;                    // file it came from, for messages

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  const uint8_t* image(int64_t i) const { return images.data() + i * kImageBytes; }
};

// Both halves of CIFAR-100 as found under one directory.
struct Cifar100 {
  Dataset train, test;
  std::string format;          // "binary", "python", "python-tar.gz", "binary-tar.gz", "binary-parts", "binary-test"
  std::filesystem::path root;  // the folder (or archive) actually read
  bool synthetic = false;
};

// Finds CIFAR-100 under `dir` (or `dir` itself) in this order, first match wins:
//   1. dir/train.bin + dir/test.bin                       (binary version, folder itself)
//   2. dir/cifar-100-binary/train.bin + test.bin          (binary version, as extracted)
//   3. dir/train + dir/test + dir/meta                    (python version, folder itself)
//   4. dir/cifar-100-python/{train,test,meta}             (python version, as extracted)
//   5. dir/cifar-100-python.tar.gz                      (python version's archive, in memory)
//   6. dir/cifar-100-binary.tar.gz                      (binary version's archive, in memory)
//   7. dir itself is a .tar.gz file of either version
//   8. dir/train-KKKKK-of-NNNNN.bin ...  (the training records in parts, data/parts.h; format
//      "binary-parts"): class names from dir/fine_label_names.txt, else `fallback_class_names`
//      (the test folder's); the test half from dir/test.bin when there, else none
//   9. dir/test.bin + dir/fine_label_names.txt, no train.bin (a test folder as `kiln data shard`
//      writes it, format "binary-test"): the test half and names only, no training records
// Throws kiln::Error listing what was looked for when nothing matches.
Cifar100 load_cifar100(const std::filesystem::path& dir, const std::vector<std::string>& fallback_class_names = {});

// Describes where load_cifar100 would read from, without reading ("" if nothing found).
std::string find_cifar100(const std::filesystem::path& dir, std::string* format = nullptr);

// The binary version: records of 1 coarse byte, 1 fine byte, 3072 pixel bytes. `class_names`
// gives the number of classes (labels >= it are an error naming the file and record).
Dataset parse_cifar_binary(std::string_view bytes, const std::string& what,
                           const std::vector<std::string>& class_names);
// One name per line, blank lines (trailing newlines) ignored.
std::vector<std::string> parse_label_names(std::string_view text, const std::string& what);

// The python version: the unpickled `train`/`test` dicts (b"data" uint8 (N,3072),
// b"fine_labels") and `meta` (b"fine_label_names"). Implemented in cifar_python.cpp.
std::vector<std::string> parse_cifar_python_meta(std::string_view pickle, const std::string& what);
Dataset parse_cifar_python_split(std::string_view pickle, const std::string& what,
                                 const std::vector<std::string>& class_names);
// The whole cifar-100-python.tar.gz in memory (anything else is an error).
Cifar100 parse_cifar_python_targz(std::string_view targz, const std::string& what);
// Either version's archive (cifar-100-python.tar.gz or cifar-100-binary.tar.gz), in memory.
Cifar100 parse_cifar_targz(std::string_view targz, const std::string& what);

// The marker file `kiln synth` writes next to train.bin so every consumer can tell.
inline constexpr const char* kSyntheticMarker = "SYNTHETIC";

}  // namespace kiln::data
