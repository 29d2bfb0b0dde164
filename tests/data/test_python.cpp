// CIFAR-100's python version (pickles written like the published Python 2 files, and by
// Python 3) as a folder and as the .tar.gz, cross-checked against the binary version of the
// same records; corrupt gzip/tar/pickle inputs give errors naming the file.
#include <doctest/doctest.h>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/io/gzip.h"
#include "kiln/io/tar.h"
#include "tests/support/support.h"

using namespace kiln::data;
namespace kt = kiln::test;
namespace fs = std::filesystem;

namespace {

fs::path make_fixture(const kt::TempDir& d, int ntrain, int ntest, const std::string& extra = {}) {
  std::string out;
  const std::string cmd = kt::quote(kt::python()) + " " +
                          kt::quote(kt::source_root().string() + "/tests/data/make_cifar_python.py") + " " +
                          kt::quote(d.path.string()) + " " + std::to_string(ntrain) + " " +
                          std::to_string(ntest) + (extra.empty() ? "" : " " + extra);
  INFO(cmd, "\n", out);
  REQUIRE_MESSAGE(kt::run(cmd, &out) == 0, "fixture generator failed: ", out);
  return d.path;
}

using kiln::test::error_of;

void check_same(const Dataset& a, const Dataset& b) {
  CHECK(a.labels == b.labels);
  CHECK(a.images == b.images);
  CHECK(a.class_names == b.class_names);
}

}  // namespace

TEST_CASE("the python version, its tar.gz and the binary version hold the same records") {
  kt::TempDir d("py");
  make_fixture(d, 60, 25);
  const Cifar100 bin = load_cifar100(d.path / "cifar-100-binary");
  const Cifar100 py = load_cifar100(d.path / "cifar-100-python");
  const Cifar100 tgz = load_cifar100(d.path / "cifar-100-python.tar.gz");
  CHECK(py.format == "python");
  CHECK(tgz.format == "python-tar.gz");
  REQUIRE(bin.train.size() == 60);
  REQUIRE(py.test.size() == 25);
  check_same(bin.train, py.train);
  check_same(bin.test, py.test);
  check_same(bin.train, tgz.train);
  check_same(bin.test, tgz.test);
  CHECK(py.train.class_names[1] == "aquarium_fish");
  CHECK_FALSE(tgz.synthetic);

  // Search order: binary first, then the python folder, then the archive.
  std::string format;
  find_cifar100(d.path, &format);
  CHECK(format == "binary");
  fs::remove_all(d.path / "cifar-100-binary");
  find_cifar100(d.path, &format);
  CHECK(format == "python");
  fs::remove_all(d.path / "cifar-100-python");
  CHECK(find_cifar100(d.path, &format) == (d.path / "cifar-100-python.tar.gz").string());
  CHECK(format == "tar.gz");
  CHECK(load_cifar100(d.path).format == "python-tar.gz");
  fs::remove(d.path / "cifar-100-python.tar.gz");
  CHECK(find_cifar100(d.path, &format) == (d.path / "cifar-100-binary.tar.gz").string());
  const Cifar100 btgz = load_cifar100(d.path);
  CHECK(btgz.format == "binary-tar.gz");
  check_same(bin.train, btgz.train);
  check_same(bin.test, btgz.test);
  // The binary archive is not the python version's.
  CHECK(error_of([&] { parse_cifar_python_targz(kiln::read_file(d.path / "cifar-100-binary.tar.gz"), "b.tar.gz"); })
            .find("the binary-tar.gz version") != std::string::npos);
}

TEST_CASE("a SYNTHETIC member in the archive marks the dataset synthetic") {
  kt::TempDir d("pysyn");
  make_fixture(d, 5, 5, "SYNTHETIC");
  CHECK(load_cifar100(d.path / "cifar-100-python.tar.gz").synthetic);
}

TEST_CASE("corrupt python-version inputs name the file and what is wrong") {
  kt::TempDir d("pybad");
  make_fixture(d, 20, 5);
  const fs::path p = d.path / "cifar-100-python";
  const std::string train = kiln::read_file(p / "train");
  const std::string meta = kiln::read_file(p / "meta");
  const auto names = parse_cifar_python_meta(meta, "meta");
  REQUIRE(names.size() == 100);

  const std::string trunc = error_of([&] { parse_cifar_python_split(train.substr(0, train.size() / 2), "p/train", names); });
  CHECK(trunc.find("p/train") != std::string::npos);
  MESSAGE("truncated pickle: ", trunc);

  // Labels beyond the classes the meta file names.
  const std::vector<std::string> ten(names.begin(), names.begin() + 10);
  const std::string lab = error_of([&] { parse_cifar_python_split(train, "p/train", ten); });
  CHECK(lab.find("p/train: record") != std::string::npos);
  CHECK(lab.find("a label in [0, 10)") != std::string::npos);

  // meta handed in place of train: no data key.
  CHECK(error_of([&] { parse_cifar_python_split(meta, "p/meta", names); }).find("data") != std::string::npos);
  // Not a pickle at all.
  CHECK(error_of([&] { parse_cifar_python_meta("hello world", "p/x"); }).find("p/x") != std::string::npos);

  const std::string tgz = kiln::read_file(d.path / "cifar-100-python.tar.gz");
  std::string bad = tgz;
  for (size_t i = 40; i < 200 && i < bad.size(); ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  const std::string gz = error_of([&] { parse_cifar_python_targz(bad, "x.tar.gz"); });
  CHECK(gz.find("x.tar.gz") != std::string::npos);
  MESSAGE("corrupt gzip: ", gz);
  CHECK(error_of([&] { parse_cifar_python_targz(tgz.substr(0, tgz.size() / 2), "h.tar.gz"); }).find("h.tar.gz") != std::string::npos);
  const std::string notar = error_of([&] { parse_cifar_python_targz(kiln::io::gzip(std::string(2048, 'z')), "t.tar.gz"); });
  CHECK(notar.find("t.tar.gz") != std::string::npos);
  MESSAGE("bad tar: ", notar);
  const std::string nometa = error_of([&] {
    parse_cifar_python_targz(kiln::io::gzip(kiln::io::encode_tar({{"cifar-100-python/train", false, train}})), "m.tar.gz");
  });
  CHECK(nometa.find("without test") != std::string::npos);
  const std::string nonames = error_of([&] {
    parse_cifar_targz(kiln::io::gzip(kiln::io::encode_tar({{"b/train.bin", false, std::string(3074, '\0')},
                                                          {"b/test.bin", false, std::string(3074, '\0')}})),
                      "n.tar.gz");
  });
  CHECK(nonames.find("fine_label_names.txt") != std::string::npos);
}
