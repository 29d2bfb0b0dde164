// gzip, tar and zip: round trips, Python-written archives (GNU and pax long names), bounds.
#include "fixtures.h"
#include "kiln/io/gzip.h"
#include "kiln/io/pickle.h"
#include "kiln/io/tar.h"
#include "kiln/io/zip.h"

using namespace kiln::io;
using kiln_test::fixtures;

TEST_CASE("gzip round-trips; gunzip enforces its output bound") {
  std::string text(100000, 'a');
  for (size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
  std::string z = gzip(text);
  CHECK(looks_like_gzip(z));
  CHECK(z.size() < text.size() / 4);
  CHECK(gunzip(z, "mem", text.size()) == text);
  CHECK(gunzip(z + z, "mem", 2 * text.size()) == text + text);  // concatenated members
  CHECK_THROWS_WITH_AS(gunzip(z, "bomb.gz", 1000), doctest::Contains("at most 1000 bytes"), kiln::Error);
  CHECK(gunzip(gzip(""), "empty", 10).empty());
}

TEST_CASE("tar.gz written by Python's tarfile (GNU long names) is read; CIFAR pickle inside unpickles") {
  std::string tgz = kiln::read_file(fixtures() / "cifar.tar.gz");
  std::vector<TarEntry> entries = parse_tar(gunzip(tgz, "cifar.tar.gz", 1 << 26), "cifar.tar.gz");
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].name == "cifar-100-python/train");
  CHECK(entries[2].name == "cifar-100-python/" + std::string(150, 'x') + "/train");
  CHECK(entries[0].data == kiln::read_file(fixtures() / "cifar_train"));
  Pickle p = unpickle(entries[0].data, entries[0].name);
  CHECK(p.root().at("data", "train").as_ndarray("data").shape[1] == 3072);
}

TEST_CASE("pax tar (long path record) and directories are read") {
  std::vector<TarEntry> e = parse_tar(kiln::read_file(fixtures() / "pax.tar"), "pax.tar");
  REQUIRE(e.size() == 2);
  CHECK(e[0].name == "p/" + std::string(200, 'y'));
  CHECK(e[0].data == "abc");
  CHECK(e[1].is_dir);
  CHECK(e[1].name == "dir");
}

TEST_CASE("encode_tar round-trips (long names split into prefix) and Python's tarfile reads it") {
  std::vector<TarEntry> in = {{"model", true, ""},
                              {"model/model.safetensors", false, std::string(1000, '\x01')},
                              {"model/" + std::string(120, 'n') + "/config.json", false, "{}"},
                              {"model/empty", false, ""}};
  std::string t = encode_tar(in);
  CHECK(t.size() % 512 == 0);
  std::vector<TarEntry> out = parse_tar(t, "mem");
  REQUIRE(out.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    CHECK(out[i].name == in[i].name);
    CHECK(out[i].is_dir == in[i].is_dir);
    CHECK(out[i].data == in[i].data);
  }
  auto path = kiln_test::work_dir() / "model.tar.gz";
  kiln::write_file_atomic(path, gzip(t));
  std::string py_out;
  int rc = kiln_test::run(kiln_test::python() + " -c \"import tarfile; t=tarfile.open('" + path.string() +
                              "'); print(sorted(m.name for m in t.getmembers()))\"",
                          &py_out);
  CHECK_MESSAGE(rc == 0, py_out);
  CHECK(py_out.find("model/model.safetensors") != std::string::npos);
  CHECK(py_out.find(std::string(120, 'n') + "/config.json") != std::string::npos);
}

TEST_CASE("encode_tar writes symlinks, modes and mtimes that Python's tarfile and parse_tar read back") {
  TarEntry dir{"usr", true, ""}, exe{"usr/kiln", false, "\x7f" "ELF"}, link{"lib", false, ""};
  dir.mode = 0750;
  exe.mode = 0755;
  link.is_symlink = true;
  link.link_target = "usr/lib";
  for (TarEntry* e : {&dir, &exe, &link}) e->mtime = 1700000000;
  std::string t = encode_tar({dir, exe, link});
  std::vector<TarEntry> plain = parse_tar(t, "mem");
  CHECK(plain.size() == 2);  // symlinks skipped unless asked for
  std::vector<TarEntry> out = parse_tar(t, "mem", true);
  REQUIRE(out.size() == 3);
  CHECK(out[0].mode == 0750);
  CHECK(out[1].mode == 0755);
  CHECK(out[1].mtime == 1700000000);
  CHECK(out[2].is_symlink);
  CHECK(out[2].link_target == "usr/lib");
  CHECK(out[2].data.empty());
  auto path = kiln_test::work_dir() / "links.tar";
  kiln::write_file_atomic(path, t);
  std::string py_out;
  int rc = kiln_test::run(kiln_test::python() + " -c \"import tarfile; t=tarfile.open('" + path.string() +
                              "'); print([(m.name, oct(m.mode), m.mtime, m.issym(), m.linkname) for m in t])\"",
                          &py_out);
  CHECK_MESSAGE(rc == 0, py_out);
  CHECK(py_out.find("('usr', '0o750', 1700000000, False, '')") != std::string::npos);
  CHECK(py_out.find("('usr/kiln', '0o755', 1700000000, False, '')") != std::string::npos);
  CHECK(py_out.find("('lib', '0o777', 1700000000, True, 'usr/lib')") != std::string::npos);
}

TEST_CASE("tar entries that would escape the extraction directory are refused") {
  for (std::string bad : {"../etc/passwd", "/abs", "a/../../b"}) {
    CAPTURE(bad);
    std::string t = encode_tar({{"ok", false, "x"}});
    // rewrite the name field (and checksum) of the first header
    std::string h = t.substr(0, 512);
    std::fill(h.begin(), h.begin() + 100, '\0');
    std::copy(bad.begin(), bad.end(), h.begin());
    std::fill(h.begin() + 148, h.begin() + 156, ' ');
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    std::snprintf(&h[148], 8, "%06o", sum);
    h[155] = ' ';
    CHECK_THROWS_WITH_AS(parse_tar(h + t.substr(512), "evil.tar"), doctest::Contains("without '..'"), kiln::Error);
  }
  std::string t = encode_tar({{"ok", false, "x"}});
  t[0] = 'X';  // checksum no longer matches
  CHECK_THROWS_WITH_AS(parse_tar(t, "bad.tar"), doctest::Contains("checksum"), kiln::Error);
}

TEST_CASE("ZipWriter aligns data to 64 bytes and ZipReader reads it back, CRC-checked") {
  ZipWriter w;
  w.add("a/data.pkl", "hello");
  w.add("a/data/0", std::string(100, 'z'));
  std::string zip = w.finish();
  ZipReader r(zip, "mem.zip");
  REQUIRE(r.entries().size() == 2);
  for (const ZipEntry& e : r.entries()) CHECK(e.data_offset % 64 == 0);
  std::string scratch;
  CHECK(r.read(*r.find("a/data.pkl"), scratch) == "hello");
  zip[static_cast<size_t>(r.find("a/data.pkl")->data_offset)] = 'j';
  ZipReader r2(zip, "mem.zip");
  CHECK_THROWS_WITH_AS(r2.read(*r2.find("a/data.pkl"), scratch), doctest::Contains("CRC-32"), kiln::Error);
}
