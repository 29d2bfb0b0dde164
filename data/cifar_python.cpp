// CIFAR-100's python version, and both versions' .tar.gz archives. The python version: the pickled dicts `train`, `test` (b"data": uint8 (N,3072) in
// R,G,B planes, b"fine_labels": N ints) and `meta` (b"fine_label_names"), read with io's
// restricted unpickler (nothing executes), either from cifar-100-python/ or straight from
// cifar-100-python.tar.gz in memory (gunzip, tar, unpickle).
#include <cstring>
#include <map>

#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/io/gzip.h"
#include "kiln/io/pickle.h"
#include "kiln/io/tar.h"

namespace kiln::data {

namespace {

// The real archive inflates to about 180 MiB; anything far beyond is not CIFAR-100.
constexpr size_t kMaxTarBytes = size_t(512) << 20;

}  // namespace

std::vector<std::string> parse_cifar_python_meta(std::string_view pickle, const std::string& what) {
  const io::Pickle doc = io::unpickle(pickle, what);
  const auto& seq = doc.root().at("fine_label_names", what).as_sequence(what + ": fine_label_names");
  if (seq.empty() || seq.size() > 100)
    fail(what + ": fine_label_names", "1 to 100 class names", std::to_string(seq.size()) + " names");
  std::vector<std::string> names;
  for (size_t i = 0; i < seq.size(); ++i)
    names.emplace_back(seq[i]->as_text(what + ": fine_label_names[" + std::to_string(i) + "]"));
  return names;
}

Dataset parse_cifar_python_split(std::string_view pickle, const std::string& what,
                                 const std::vector<std::string>& class_names) {
  const io::Pickle doc = io::unpickle(pickle, what);
  const io::PickleValue& root = doc.root();
  const io::NamedArray& data = root.at("data", what).as_ndarray(what + ": data");
  if (data.dtype != io::DType::u8)
    fail(what + ": data", "a uint8 array", std::string(io::dtype_name(data.dtype)) + " array");
  if (data.shape.size() != 2 || data.shape[1] != kImageBytes)
    fail(what + ": data", "shape (N, 3072)", io::shape_str(data.shape));
  const int64_t n = data.shape[0];
  const auto& labels = root.at("fine_labels", what).as_sequence(what + ": fine_labels");
  if (static_cast<int64_t>(labels.size()) != n)
    fail(what + ": fine_labels", std::to_string(n) + " labels (one per image in data)",
         std::to_string(labels.size()));
  Dataset ds;
  ds.source = what;
  ds.class_names = class_names;
  ds.images.resize(static_cast<size_t>(n * kImageBytes));
  if (n > 0) std::memcpy(ds.images.data(), data.bytes.data(), ds.images.size());
  ds.labels.resize(static_cast<size_t>(n));
  const auto classes = static_cast<int64_t>(class_names.size());
  for (int64_t i = 0; i < n; ++i) {
    const std::string rec = what + ": record " + std::to_string(i) + " fine_labels";
    const int64_t l = labels[static_cast<size_t>(i)]->as_int(rec);
    if (l < 0 || l >= classes)
      fail(rec, "a label in [0, " + std::to_string(classes) + ")", std::to_string(l),
           "the file is corrupt or does not belong with this meta file");
    ds.labels[static_cast<size_t>(i)] = l;
  }
  return ds;
}

Cifar100 parse_cifar_targz(std::string_view targz, const std::string& what) {
  const std::string tar = io::gunzip(targz, what, kMaxTarBytes);
  const std::vector<io::TarEntry> entries = io::parse_tar(tar, what);
  std::map<std::string, const io::TarEntry*> by_base;
  for (const auto& e : entries) {
    if (e.is_dir) continue;
    const auto slash = e.name.rfind('/');
    by_base[slash == std::string::npos ? e.name : e.name.substr(slash + 1)] = &e;
  }
  auto member = [&](const char* base) {
    auto it = by_base.find(base);
    return it == by_base.end() ? nullptr : it->second;
  };
  Cifar100 c;
  c.synthetic = member(kSyntheticMarker) != nullptr;
  if (member("train.bin") && member("test.bin")) {
    // The binary version's archive (cifar-100-binary.tar.gz).
    const io::TarEntry* names = member("fine_label_names.txt");
    if (!names)
      fail(what, "fine_label_names.txt next to train.bin in the archive", "no such member");
    c.format = "binary-tar.gz";
    const auto n = parse_label_names(names->data, what + ":" + names->name);
    if (n.size() > 100) fail(what + ":" + names->name, "at most 100 class names", std::to_string(n.size()));
    c.train = parse_cifar_binary(member("train.bin")->data, what + ":" + member("train.bin")->name, n);
    c.test = parse_cifar_binary(member("test.bin")->data, what + ":" + member("test.bin")->name, n);
  } else {
    const io::TarEntry *train = member("train"), *test = member("test"), *meta = member("meta");
    if (!train || !test || !meta)
      fail(what, "a tar.gz holding cifar-100-python/train, test and meta (or cifar-100-binary/train.bin, test.bin)",
           std::string("an archive without ") + (!train ? "train" : !test ? "test" : "meta"),
           "download cifar-100-python.tar.gz again (kiln download cifar100)");
    c.format = "python-tar.gz";
    const auto names = parse_cifar_python_meta(meta->data, what + ":" + meta->name);
    c.train = parse_cifar_python_split(train->data, what + ":" + train->name, names);
    c.test = parse_cifar_python_split(test->data, what + ":" + test->name, names);
  }
  c.train.synthetic = c.test.synthetic = c.synthetic;
  return c;
}

Cifar100 parse_cifar_python_targz(std::string_view targz, const std::string& what) {
  Cifar100 c = parse_cifar_targz(targz, what);
  if (c.format != "python-tar.gz")
    fail(what, "the python version's archive (cifar-100-python.tar.gz)", "the " + c.format + " version");
  return c;
}

}  // namespace kiln::data
