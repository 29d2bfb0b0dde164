// CIFAR-100 readers on files generated here: the binary version, the search order of --data,
// corrupt inputs (truncated, wrong record size, label >= classes), and `kiln synth`'s output.
#include <doctest/doctest.h>

#include <string>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/synth.h"
#include "tests/support/support.h"

using namespace kiln::data;
namespace kt = kiln::test;
namespace fs = std::filesystem;

namespace {

std::string binary_records(int n, int classes, int bad_record = -1) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += static_cast<char>(i % 20);
    s += static_cast<char>(i == bad_record ? classes : i % classes);
    for (int k = 0; k < kImageBytes; ++k) s += static_cast<char>((i * 7 + k) & 0xff);
  }
  return s;
}

std::string names(int classes) {
  std::string s;
  for (int c = 0; c < classes; ++c) s += "class" + std::to_string(c) + "\n";
  return s + "\n";
}

using kiln::test::error_of;

}  // namespace

TEST_CASE("the binary version is read record by record with names from fine_label_names.txt") {
  kt::TempDir d("bin");
  const fs::path b = d.path / "cifar-100-binary";
  fs::create_directories(b);
  kiln::write_file_atomic(b / "train.bin", binary_records(7, 100));
  kiln::write_file_atomic(b / "test.bin", binary_records(3, 100));
  kiln::write_file_atomic(b / "fine_label_names.txt", names(100));
  std::string format;
  CHECK(find_cifar100(d.path, &format) == b.string());
  CHECK(format == "binary");
  const Cifar100 c = load_cifar100(d.path);
  CHECK(c.format == "binary");
  CHECK_FALSE(c.synthetic);
  REQUIRE(c.train.size() == 7);
  REQUIRE(c.test.size() == 3);
  CHECK(c.train.num_classes() == 100);
  CHECK(c.train.class_names[42] == "class42");
  CHECK(c.train.labels[5] == 5);
  CHECK(c.train.image(5)[0] == 35);
  CHECK(c.train.image(5)[3071] == static_cast<uint8_t>((35 + 3071) & 0xff));
  // The folder itself works too.
  CHECK(load_cifar100(b).train.size() == 7);
}

TEST_CASE("corrupt binary files name the file and the record") {
  std::vector<std::string> n100;
  for (int c = 0; c < 100; ++c) n100.push_back("c" + std::to_string(c));
  std::string bytes = binary_records(4, 100);
  const std::string trunc = error_of([&] { parse_cifar_binary(bytes.substr(0, bytes.size() - 10), "x/train.bin", n100); });
  CHECK(trunc.find("x/train.bin") != std::string::npos);
  CHECK(trunc.find("record 3 is truncated") != std::string::npos);
  // CIFAR-10's 3073-byte records.
  const std::string c10 = error_of([&] { parse_cifar_binary(std::string(3073 * 2, '\0'), "c10.bin", n100); });
  CHECK(c10.find("3074-byte records") != std::string::npos);
  const std::string label = error_of([&] { parse_cifar_binary(binary_records(4, 100, 2), "t.bin", n100); });
  CHECK(label.find("t.bin: record 2") != std::string::npos);
  CHECK(label.find("found 100") != std::string::npos);
  CHECK(error_of([&] { parse_cifar_binary("", "e.bin", n100); }).find("empty") != std::string::npos);
}

TEST_CASE("a missing dataset says where to put the files") {
  kt::TempDir d("missing");
  const std::string m = error_of([&] { load_cifar100(d.path / "nope"); });
  CHECK(m.find("no such directory") != std::string::npos);
  CHECK(m.find("kiln download cifar100") != std::string::npos);
  CHECK(m.find("cifar-100-python.tar.gz") != std::string::npos);
  fs::create_directories(d.path / "b");
  kiln::write_file_atomic(d.path / "b" / "train.bin", binary_records(1, 100));
  kiln::write_file_atomic(d.path / "b" / "test.bin", binary_records(1, 100));
  CHECK(error_of([&] { load_cifar100(d.path / "b"); }).find("fine_label_names.txt") != std::string::npos);
}

TEST_CASE("kiln synth writes a marked, learnable binary dataset") {
  kt::TempDir d("synth");
  write_synthetic(d.path, {.classes = 10, .train = 200, .test = 50, .seed = 3});
  const Cifar100 c = load_cifar100(d.path);
  CHECK(c.synthetic);
  CHECK(c.train.synthetic);
  CHECK(fs::exists(d.path / kSyntheticMarker));
  REQUIRE(c.train.size() == 200);
  REQUIRE(c.test.size() == 50);
  CHECK(c.train.num_classes() == 10);
  std::vector<int> count(10);
  for (int64_t l : c.train.labels) ++count[static_cast<size_t>(l)];
  for (int k : count) CHECK(k == 20);
  // Learnable: a nearest-class-mean classifier on raw pixels is far above chance (10%).
  std::vector<std::vector<double>> mean(10, std::vector<double>(kImageBytes));
  for (int64_t i = 0; i < c.train.size(); ++i)
    for (int64_t k = 0; k < kImageBytes; ++k)
      mean[static_cast<size_t>(c.train.labels[static_cast<size_t>(i)])][static_cast<size_t>(k)] += c.train.image(i)[k] / 20.0;
  int correct = 0;
  for (int64_t i = 0; i < c.test.size(); ++i) {
    int best = 0;
    double best_d = 1e300;
    for (int cl = 0; cl < 10; ++cl) {
      double dist = 0;
      for (int64_t k = 0; k < kImageBytes; ++k) {
        const double e = c.test.image(i)[k] - mean[static_cast<size_t>(cl)][static_cast<size_t>(k)];
        dist += e * e;
      }
      if (dist < best_d) best_d = dist, best = cl;
    }
    correct += best == c.test.labels[static_cast<size_t>(i)];
  }
  CHECK_MESSAGE(correct >= 35, "nearest-mean accuracy on synthetic data: ", correct, "/50");
  // Same seed, same bytes; another seed, other bytes.
  kt::TempDir d2("synth2");
  write_synthetic(d2.path, {.classes = 10, .train = 200, .test = 50, .seed = 3});
  CHECK(kiln::read_file(d.path / "train.bin") == kiln::read_file(d2.path / "train.bin"));
  write_synthetic(d2.path, {.classes = 10, .train = 200, .test = 50, .seed = 4});
  CHECK(kiln::read_file(d.path / "train.bin") != kiln::read_file(d2.path / "train.bin"));
}

TEST_CASE("the kiln synth and kiln data commands") {
  kt::TempDir d("cli");
  std::string out;
  const std::string bin = kt::quote(kt::kiln_bin());
  REQUIRE(kt::run(bin + " synth --dir " + kt::quote((d.path / "s").string()) +
                  " --classes 5 --train 20 --test 10 --seed 1", &out) == 0);
  CHECK(out.find("SYNTHETIC") != std::string::npos);
  REQUIRE(kt::run(bin + " data --data " + kt::quote((d.path / "s").string()), &out) == 0);
  CHECK(out.find("synthetic: yes") != std::string::npos);
  CHECK(out.find("train: 20 images") != std::string::npos);
  CHECK(kt::run(bin + " synth --dir " + kt::quote((d.path / "t").string()) + " --classes 101", &out) == 1);
  CHECK(out.find("[1, 100]") != std::string::npos);
}
