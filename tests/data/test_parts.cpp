// The training records in parts (ShardedByS3Key, data/parts.h): `kiln data shard`'s writer and
// the reader behind --data: parts in order are the original records, any subset reads alone,
// class names from the test folder, bad names and truncated parts named with their size.
#include <doctest/doctest.h>

#include <string>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/parts.h"
#include "kiln/data/synth.h"
#include "tests/support/support.h"

using namespace kiln::data;
namespace kt = kiln::test;
namespace fs = std::filesystem;

namespace {

using kiln::test::error_of;

bool same_records(const Dataset& a, int64_t a_begin, const Dataset& b, int64_t b_begin, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (a.labels[static_cast<size_t>(a_begin + i)] != b.labels[static_cast<size_t>(b_begin + i)]) return false;
    if (!std::equal(a.image(a_begin + i), a.image(a_begin + i) + kImageBytes, b.image(b_begin + i))) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("parts: kiln data shard's writer splits train.bin in order; all parts read back are the original") {
  kt::TempDir d("parts");
  write_synthetic(d.path / "syn", {5, 23, 4, 1});
  const Cifar100 src = load_cifar100(d.path / "syn");
  const ShardReport rep = write_train_parts(src, 4, d.path / "out");
  CHECK(rep.part_records == std::vector<int64_t>{5, 6, 6, 6});  // 23*k/4 boundaries: 0 5 11 17 23
  CHECK(fs::file_size(rep.training / "train-00000-of-00004.bin") == 5 * 3074);
  CHECK(fs::file_size(rep.training / "train-00003-of-00004.bin") == 6 * 3074);
  CHECK(fs::exists(rep.test / "test.bin"));
  CHECK(fs::exists(rep.test / "fine_label_names.txt"));
  CHECK(fs::exists(rep.test / kSyntheticMarker));
  CHECK_FALSE(fs::exists(rep.training / kSyntheticMarker));  // the training channel holds parts only
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d.path)) entries += e.path().filename().string().find(".tmp-") != std::string::npos;
  CHECK(entries == 0);  // no temporary folder left

  std::string format;
  CHECK(find_cifar100(rep.training, &format) == rep.training.string());
  CHECK(format == "binary-parts");
  CHECK(find_cifar100(rep.test, &format) == rep.test.string());
  CHECK(format == "binary-test");
  const Cifar100 t = load_cifar100(rep.test);
  REQUIRE(t.test.size() == 4);
  CHECK(same_records(t.test, 0, src.test, 0, 4));
  CHECK(t.synthetic);
  const Cifar100 all = load_cifar100(rep.training, t.test.class_names);
  CHECK(all.format == "binary-parts");
  REQUIRE(all.train.size() == 23);
  CHECK(same_records(all.train, 0, src.train, 0, 23));
  CHECK(all.train.class_names == src.train.class_names);
  CHECK(all.test.size() == 0);

  // What one host of a ShardedByS3Key job receives: some parts, read in part order.
  fs::create_directories(d.path / "host2");
  fs::copy_file(rep.training / "train-00003-of-00004.bin", d.path / "host2" / "train-00003-of-00004.bin");
  fs::copy_file(rep.training / "train-00001-of-00004.bin", d.path / "host2" / "train-00001-of-00004.bin");
  const Cifar100 h2 = load_cifar100(d.path / "host2", t.test.class_names);
  REQUIRE(h2.train.size() == 12);
  CHECK(same_records(h2.train, 0, src.train, 5, 6));
  CHECK(same_records(h2.train, 6, src.train, 17, 6));

  CHECK(error_of([&] { write_train_parts(src, 2, d.path / "out"); }).find("it exists") != std::string::npos);
  CHECK(error_of([&] { write_train_parts(src, 24, d.path / "o2"); }).find("at most the 23 training records") !=
        std::string::npos);
  CHECK(error_of([&] { write_train_parts(src, 0, d.path / "o3"); }).find("--parts") != std::string::npos);
  CHECK_FALSE(fs::exists(d.path / "o2"));
}

TEST_CASE("parts: a truncated part, a bad name, mixed shardings and missing class names are named") {
  kt::TempDir d("parts-bad");
  write_synthetic(d.path / "syn", {5, 10, 2, 1});
  const ShardReport rep = write_train_parts(load_cifar100(d.path / "syn"), 2, d.path / "out");
  const auto names = load_cifar100(rep.test).test.class_names;
  const fs::path part = rep.training / "train-00001-of-00002.bin";

  // No class names next to the parts and none passed in: say where they should come from.
  std::string e = error_of([&] { load_cifar100(rep.training); });
  CHECK(e.find("fine_label_names.txt") != std::string::npos);
  CHECK(e.find("--test-data") != std::string::npos);
  // ... or next to them.
  kiln::write_file_atomic(rep.training / "fine_label_names.txt", kiln::read_file(rep.test / "fine_label_names.txt"));
  CHECK(load_cifar100(rep.training).train.size() == 10);
  fs::remove(rep.training / "fine_label_names.txt");

  std::string bytes = kiln::read_file(part);
  kiln::write_file_atomic(part, bytes.substr(0, bytes.size() - 100));
  e = error_of([&] { load_cifar100(rep.training, names); });
  CHECK(e.find(part.string()) != std::string::npos);
  CHECK(e.find(std::to_string(bytes.size() - 100) + " bytes") != std::string::npos);
  CHECK(e.find("3074-byte records") != std::string::npos);
  kiln::write_file_atomic(part, bytes);

  kiln::write_file_atomic(rep.training / "train-1-of-2.bin", bytes);
  e = error_of([&] { load_cifar100(rep.training, names); });
  CHECK(e.find("train-1-of-2.bin") != std::string::npos);
  CHECK(e.find("train-KKKKK-of-NNNNN.bin") != std::string::npos);
  fs::remove(rep.training / "train-1-of-2.bin");

  kiln::write_file_atomic(rep.training / "train-00002-of-00002.bin", bytes);
  CHECK(error_of([&] { load_cifar100(rep.training, names); }).find("KKKKK below NNNNN") != std::string::npos);
  fs::remove(rep.training / "train-00002-of-00002.bin");

  kiln::write_file_atomic(rep.training / "train-00002-of-00004.bin", bytes);
  e = error_of([&] { load_cifar100(rep.training, names); });
  CHECK(e.find("train-00002-of-00004.bin") != std::string::npos);
  CHECK(e.find("mixes two shardings") != std::string::npos);
  fs::remove(rep.training / "train-00002-of-00004.bin");

  CHECK(load_cifar100(rep.training, names).train.size() == 10);
}

TEST_CASE("parts: kiln data shard writes them and kiln data reads them back") {
  kt::TempDir d("parts-cli");
  write_synthetic(d.path / "syn", {5, 30, 3, 1});
  const std::string kiln = kt::quote(kt::kiln_bin());
  auto r = kt::run_command(kiln + " data shard --data " + kt::quote((d.path / "syn").string()) + " --parts 3 --out " +
                           kt::quote((d.path / "out").string()));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("wrote 3 parts of 30 training records") != std::string::npos);
  CHECK(fs::file_size(d.path / "out/training/train-00002-of-00003.bin") == 10 * 3074);
  r = kt::run_command(kiln + " data --data " + kt::quote((d.path / "out/training").string()) + " --test-data " +
                      kt::quote((d.path / "out/test").string()));
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("format: binary-parts") != std::string::npos);
  CHECK(r.output.find("train: 30 images") != std::string::npos);
  r = kt::run_command(kiln + " data shard --data " + kt::quote((d.path / "syn").string()) + " --out " +
                      kt::quote((d.path / "o2").string()));
  CHECK(r.status != 0);
  CHECK(r.output.find("--parts N") != std::string::npos);
}
