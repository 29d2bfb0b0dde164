// CIFAR-100's binary version and the search that finds either published form under --data.
#include "kiln/data/dataset.h"

#include <cstring>
#include <system_error>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/parts.h"

namespace fs = std::filesystem;

namespace kiln::data {

namespace {

const char* kPutFilesHint =
    "run `kiln download cifar100 --dir DIR`, or put the files there by hand: either "
    "cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz), its "
    "extracted cifar-100-python/ folder, or the binary version's cifar-100-binary/ folder "
    "(train.bin, test.bin, fine_label_names.txt); `kiln synth --dir DIR` makes a synthetic "
    "stand-in for offline tests";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool has_binary(const fs::path& d) { return is_file(d / "train.bin") && is_file(d / "test.bin"); }
bool has_python(const fs::path& d) {
  return is_file(d / "train") && is_file(d / "test") && is_file(d / "meta");
}
bool is_targz(const fs::path& p) {
  const std::string s = p.filename().string();
  return is_file(p) && (s.ends_with(".tar.gz") || s.ends_with(".tgz"));
}

std::vector<std::string> read_binary_names(const fs::path& d) {
  const fs::path names = d / "fine_label_names.txt";
  if (!is_file(names))
    fail(names.string(), "the fine label names (one per line) next to train.bin", "no such file",
         "the binary version of CIFAR-100 ships fine_label_names.txt in cifar-100-binary/");
  auto out = parse_label_names(read_file(names), names.string());
  if (out.size() > 100)
    fail(names.string(), "at most 100 class names", std::to_string(out.size()) + " lines");
  return out;
}

Cifar100 load_binary(const fs::path& d) {
  Cifar100 c;
  c.format = "binary";
  c.root = d;
  c.synthetic = fs::exists(d / kSyntheticMarker);
  const auto names = read_binary_names(d);
  c.train = parse_cifar_binary(read_file(d / "train.bin"), (d / "train.bin").string(), names);
  c.test = parse_cifar_binary(read_file(d / "test.bin"), (d / "test.bin").string(), names);
  c.train.synthetic = c.test.synthetic = c.synthetic;
  return c;
}

Cifar100 load_python(const fs::path& d) {
  Cifar100 c;
  c.format = "python";
  c.root = d;
  c.synthetic = fs::exists(d / kSyntheticMarker);
  const auto names = parse_cifar_python_meta(read_file(d / "meta"), (d / "meta").string());
  c.train = parse_cifar_python_split(read_file(d / "train"), (d / "train").string(), names);
  c.test = parse_cifar_python_split(read_file(d / "test"), (d / "test").string(), names);
  c.train.synthetic = c.test.synthetic = c.synthetic;
  return c;
}

// A parts folder (parts.h): the names and test half may come from elsewhere (the test channel).
Cifar100 load_parts(const fs::path& d, const std::vector<std::string>& fallback_names) {
  Cifar100 c;
  c.format = "binary-parts";
  c.root = d;
  c.synthetic = fs::exists(d / kSyntheticMarker);
  std::vector<std::string> names = fallback_names;
  if (!is_file(d / "fine_label_names.txt") && names.empty())
    fail((d / "fine_label_names.txt").string(),
         "the fine label names next to the training parts, or a test folder that has them", "neither",
         "pass --test-data DIR (the `test` channel) with fine_label_names.txt and test.bin, as `kiln data shard` "
         "writes them");
  if (is_file(d / "fine_label_names.txt")) names = read_binary_names(d);
  c.train = load_train_parts(d, names);
  if (is_file(d / "test.bin")) {
    c.test = parse_cifar_binary(read_file(d / "test.bin"), (d / "test.bin").string(), names);
  } else {
    c.test.class_names = names;
    c.test.source = (d / "test.bin").string() + " (absent)";
  }
  c.train.synthetic = c.test.synthetic = c.synthetic;
  return c;
}

}  // namespace

std::vector<std::string> parse_label_names(std::string_view text, const std::string& what) {
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (!line.empty()) names.emplace_back(line);
    pos = end + 1;
  }
  if (names.empty()) fail(what, "class names, one per line", "no names");
  return names;
}

Dataset parse_cifar_binary(std::string_view bytes, const std::string& what,
                           const std::vector<std::string>& class_names) {
  const auto rec = static_cast<size_t>(kBinaryRecordBytes);
  if (bytes.empty()) fail(what, "CIFAR-100 binary records of 3074 bytes", "an empty file");
  if (bytes.size() % rec != 0)
    fail(what, "a whole number of 3074-byte records (1 coarse label, 1 fine label, 3072 pixels)",
         std::to_string(bytes.size()) + " bytes: record " + std::to_string(bytes.size() / rec) +
             " is truncated to " + std::to_string(bytes.size() % rec) + " bytes",
         "the file is truncated or is not CIFAR-100's binary version (CIFAR-10's records are "
         "3073 bytes); download it again");
  const int64_t n = static_cast<int64_t>(bytes.size() / rec);
  const int64_t classes = static_cast<int64_t>(class_names.size());
  Dataset ds;
  ds.source = what;
  ds.class_names = class_names;
  ds.labels.resize(static_cast<size_t>(n));
  ds.images.resize(static_cast<size_t>(n * kImageBytes));
  for (int64_t i = 0; i < n; ++i) {
    const char* r = bytes.data() + i * kBinaryRecordBytes;
    const int64_t fine = static_cast<uint8_t>(r[1]);
    if (fine >= classes)
      fail(what + ": record " + std::to_string(i) + " (byte offset " +
               std::to_string(i * kBinaryRecordBytes + 1) + ")",
           "a fine label below " + std::to_string(classes), std::to_string(fine),
           "the file is corrupt or does not match fine_label_names.txt");
    ds.labels[static_cast<size_t>(i)] = fine;
    std::memcpy(ds.images.data() + i * kImageBytes, r + 2, kImageBytes);
  }
  return ds;
}

std::string find_cifar100(const fs::path& dir, std::string* format) {
  auto found = [&](const fs::path& p, const char* f) {
    if (format) *format = f;
    return p.string();
  };
  if (has_binary(dir)) return found(dir, "binary");
  if (has_binary(dir / "cifar-100-binary")) return found(dir / "cifar-100-binary", "binary");
  if (has_python(dir)) return found(dir, "python");
  if (has_python(dir / "cifar-100-python")) return found(dir / "cifar-100-python", "python");
  if (is_targz(dir / "cifar-100-python.tar.gz"))
    return found(dir / "cifar-100-python.tar.gz", "tar.gz");
  if (is_targz(dir / "cifar-100-binary.tar.gz"))
    return found(dir / "cifar-100-binary.tar.gz", "tar.gz");
  if (is_targz(dir)) return found(dir, "tar.gz");
  if (!find_train_parts(dir).empty()) return found(dir, "binary-parts");
  if (is_file(dir / "test.bin") && is_file(dir / "fine_label_names.txt")) return found(dir, "binary-test");
  return {};
}

Cifar100 load_cifar100(const fs::path& dir, const std::vector<std::string>& fallback_class_names) {
  std::string format;
  const std::string where = find_cifar100(dir, &format);
  if (where.empty()) {
    std::error_code ec;
    const std::string state = fs::exists(dir, ec) ? "none of them" : "no such directory";
    fail("--data " + dir.string(),
         "CIFAR-100 as train.bin+test.bin, cifar-100-binary/, train+test+meta, "
         "cifar-100-python/, cifar-100-python.tar.gz, cifar-100-binary.tar.gz or training parts "
         "train-KKKKK-of-NNNNN.bin",
         state, kPutFilesHint);
  }
  if (format == "binary") return load_binary(where);
  if (format == "python") return load_python(where);
  if (format == "binary-parts") return load_parts(where, fallback_class_names);
  if (format == "binary-test") {
    Cifar100 c;
    c.format = format;
    c.root = where;
    c.synthetic = fs::exists(dir / kSyntheticMarker);
    const auto names = read_binary_names(dir);
    c.test = parse_cifar_binary(read_file(dir / "test.bin"), (dir / "test.bin").string(), names);
    c.train.class_names = names;
    c.train.source = (dir / "train.bin").string() + " (absent: a test folder)";
    c.train.synthetic = c.test.synthetic = c.synthetic;
    return c;
  }
  Cifar100 c = parse_cifar_targz(read_file(where), where);
  c.root = where;
  return c;
}

}  // namespace kiln::data
