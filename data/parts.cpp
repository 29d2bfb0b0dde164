// The training records in parts (see parts.h): finding, reading and writing them.
#include "kiln/data/parts.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <system_error>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace fs = std::filesystem;

namespace kiln::data {

namespace {

constexpr const char* kPartPattern = "train-KKKKK-of-NNNNN.bin (five digits each, KKKKK below NNNNN)";

bool five_digits(const std::string& s, size_t at, int64_t& v) {
  if (at + 5 > s.size()) return false;
  v = 0;
  for (size_t i = at; i < at + 5; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  return true;
}

// "train-00001-of-00004.bin" -> (1, 4); false for any other name.
bool parse_part_name(const std::string& name, int64_t& index, int64_t& count) {
  return name.size() == 24 && name.starts_with("train-") && five_digits(name, 6, index) &&
         name.compare(11, 4, "-of-") == 0 && five_digits(name, 15, count) && name.ends_with(".bin");
}

std::string records_text(const Dataset& d, int64_t begin, int64_t end) {
  std::string bytes(static_cast<size_t>((end - begin) * kBinaryRecordBytes), '\0');
  for (int64_t i = begin; i < end; ++i) {
    char* r = bytes.data() + (i - begin) * kBinaryRecordBytes;
    r[0] = 0;  // coarse label: not kept by kiln's readers
    r[1] = static_cast<char>(d.labels[static_cast<size_t>(i)]);
    std::copy_n(d.image(i), kImageBytes, reinterpret_cast<uint8_t*>(r + 2));
  }
  return bytes;
}

}  // namespace

bool is_train_part_name(const std::string& name) {
  int64_t index = 0, count = 0;
  return parse_part_name(name, index, count) && index < count;
}

std::string train_part_name(int64_t index, int64_t count) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "train-%05lld-of-%05lld.bin", static_cast<long long>(index),
                static_cast<long long>(count));
  return buf;
}

std::vector<TrainPart> find_train_parts(const fs::path& dir) {
  std::vector<TrainPart> parts;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return parts;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("train-") || !name.ends_with(".bin")) continue;
    TrainPart p;
    p.path = e.path();
    if (!parse_part_name(name, p.index, p.count) || p.index >= p.count)
      fail(e.path().string(), std::string("a training part named ") + kPartPattern, "'" + name + "'",
           "rename it, or write the parts with `kiln data shard`");
    if (!e.is_regular_file(ec)) fail(e.path().string(), "a training part (a regular file)", "something else");
    parts.push_back(p);
  }
  std::sort(parts.begin(), parts.end(), [](const TrainPart& a, const TrainPart& b) { return a.index < b.index; });
  for (const auto& p : parts)
    if (p.count != parts.front().count)
      fail(p.path.string(), "a part of the same " + std::to_string(parts.front().count) + " parts as " +
                                parts.front().path.filename().string(),
           "a part of " + std::to_string(p.count), "the folder mixes two shardings: keep one");
  return parts;
}

Dataset load_train_parts(const fs::path& dir, const std::vector<std::string>& class_names) {
  const std::vector<TrainPart> parts = find_train_parts(dir);
  if (parts.empty()) fail(dir.string(), std::string("training parts named ") + kPartPattern, "none");
  Dataset all;
  all.class_names = class_names;
  all.source = dir.string() + " (" + std::to_string(parts.size()) + " of " + std::to_string(parts.front().count) +
               " parts)";
  for (const auto& p : parts) {
    Dataset d = parse_cifar_binary(read_file(p.path), p.path.string(), class_names);
    all.labels.insert(all.labels.end(), d.labels.begin(), d.labels.end());
    all.images.insert(all.images.end(), d.images.begin(), d.images.end());
  }
  return all;
}

ShardReport write_train_parts(const Cifar100& ds, int64_t parts, const fs::path& out) {
  const int64_t n = ds.train.size();
  if (parts < 1 || parts > 99999) fail("--parts", "1 ... 99999 parts", std::to_string(parts));
  if (parts > n)
    fail("--parts", "at most the " + std::to_string(n) + " training records (no part may be empty)",
         std::to_string(parts));
  if (ds.train.num_classes() > 256) fail("dataset", "at most 256 classes (one label byte)", std::to_string(ds.train.num_classes()));
  std::error_code ec;
  if (fs::exists(out, ec))
    fail(out.string(), "a folder that does not exist yet", "it exists", "remove it or pick another --out");
  const fs::path tmp = out.parent_path() / (out.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  ShardReport rep;
  try {
    fs::create_directories(tmp / "training");
    fs::create_directories(tmp / "test");
    for (int64_t k = 0; k < parts; ++k) {
      const int64_t begin = n * k / parts, end = n * (k + 1) / parts;
      write_file_atomic(tmp / "training" / train_part_name(k, parts), records_text(ds.train, begin, end));
      rep.part_records.push_back(end - begin);
    }
    if (ds.test.size() > 0) write_file_atomic(tmp / "test" / "test.bin", records_text(ds.test, 0, ds.test.size()));
    std::string names;
    for (const auto& c : ds.train.class_names) names += c + "\n";
    write_file_atomic(tmp / "test" / "fine_label_names.txt", names);
    if (ds.synthetic) write_file_atomic(tmp / "test" / kSyntheticMarker, "made by kiln synth, then kiln data shard\n");
    fs::rename(tmp, out);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  rep.training = out / "training";
  rep.test = out / "test";
  return rep;
}

}  // namespace kiln::data
