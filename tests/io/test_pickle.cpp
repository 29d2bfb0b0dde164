// The restricted unpickler: CIFAR-style numpy pickles read exactly; anything outside the
// allow-list is refused before it could run (a marker file proves nothing ran).
#include <cstring>

#include "fixtures.h"
#include "kiln/io/pickle.h"

using namespace kiln::io;
using kiln_test::fixtures;
using namespace std::literals;

namespace {

void check_cifar(const Pickle& p, const std::string& file) {
  const PickleValue& root = p.root();
  REQUIRE(root.kind == PickleKind::dict);
  const NamedArray& data = root.at("data", file).as_ndarray(file + " data");
  CHECK(data.dtype == DType::u8);
  CHECK(data.shape == std::vector<int64_t>{5, 3072});
  std::string want = kiln::read_file(fixtures() / "cifar_train.data");
  REQUIRE(data.bytes.size() == want.size());
  CHECK(std::memcmp(data.bytes.data(), want.data(), want.size()) == 0);
  const auto& labels = root.at("fine_labels", file).as_sequence(file);
  REQUIRE(labels.size() == 5);
  CHECK(labels[0]->as_int("label") == 19);
  CHECK(labels[4]->as_int("label") == 1);
  const auto& names = root.at("filenames", file).as_sequence(file);
  CHECK(names[0]->as_text("name") == "apple_s_000022.png");
  CHECK(names[1]->as_text("name") == "\xe9t\xe9.png");  // latin1 bytes survive _codecs.encode
  CHECK(root.at("batch_label", file).kind == PickleKind::bytes);
}

}  // namespace

TEST_CASE("a CIFAR-100 style pickle (protocol 2, bytes keys, numpy uint8 array) is read exactly") {
  std::string bytes = kiln::read_file(fixtures() / "cifar_train");
  check_cifar(unpickle(bytes, "cifar_train"), "cifar_train");
}

TEST_CASE("the same pickle at protocols 3, 4 and 5 is read exactly") {
  for (const char* f : {"cifar_train_p3", "cifar_train_p4", "cifar_train_p5"}) {
    CAPTURE(f);
    std::string bytes = kiln::read_file(fixtures() / f);
    check_cifar(unpickle(bytes, f), f);
  }
}

TEST_CASE("CIFAR meta: str keys and lists of str") {
  std::string bytes = kiln::read_file(fixtures() / "cifar_meta");
  Pickle p = unpickle(bytes, "meta");
  const auto& names = p.root().at("fine_label_names", "meta").as_sequence("meta");
  REQUIRE(names.size() == 2);
  CHECK(names[1]->as_text("name") == "aquarium_fish");
  CHECK(names[1]->kind == PickleKind::str);
}

TEST_CASE("a Python 2 pickle (BINSTRING/SHORT_BINSTRING, protocol 0 text opcodes) is read") {
  // {'data': [1, 2L, 'x'], 'k': 'y'*300} as Python 2 cPickle writes at protocol 2 and 0.
  std::string big(300, 'y');
  std::string p2(
      "\x80\x02}q\x00(U\x04" "dataq\x01]q\x02(K\x01\x8a\x01\x02U\x01xeU\x01kT"sv);
  uint32_t n = 300;
  p2.append(reinterpret_cast<const char*>(&n), 4);
  p2 += big + "u.";
  Pickle a = unpickle(p2, "py2");
  CHECK(a.root().at("data", "py2").as_sequence("data")[1]->as_int("x") == 2);
  CHECK(a.root().at("k", "py2").as_text("k") == big);
  std::string p0 = "(dp0\nS'data'\np1\n(lp2\nI1\naL2L\naS'x\\n'\np3\nasS'f'\nF1.5\ns.";
  Pickle b = unpickle(p0, "py2 text");
  CHECK(b.root().at("data", "p0").as_sequence("d")[2]->as_text("s") == "x\n");
  CHECK(b.root().at("f", "p0").floating == 1.5);
}

TEST_CASE("globals outside the allow-list are refused and nothing runs") {
  auto marker = fixtures() / "PWNED";
  CHECK_THROWS_WITH_AS(unpickle(kiln::read_file(fixtures() / "evil_os.pkl"), "evil_os.pkl"),
                       doctest::Contains("pickle global os.system is not allowed"), kiln::Error);
  CHECK_THROWS_WITH_AS(unpickle(kiln::read_file(fixtures() / "evil.pkl"), "evil.pkl"),
                       doctest::Contains("pickle global posix.system is not allowed"), kiln::Error);
  CHECK_THROWS_WITH_AS(unpickle("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93.", "m"),
                       doctest::Contains("builtins.eval is not allowed"), kiln::Error);
  CHECK_THROWS_WITH_AS(unpickle("cnumpy\nload\n.", "m"), doctest::Contains("numpy.load is not allowed"), kiln::Error);
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("allowed globals are only interpreted, never called beyond their known meaning") {
  // numpy.ndarray is allowed as a class argument but calling it is not supported.
  CHECK_THROWS_AS(unpickle("cnumpy\nndarray\n)R.", "m"), kiln::Error);
  // REDUCE on a non-global value
  CHECK_THROWS_AS(unpickle("\x80\x02])R.", "m"), kiln::Error);
  // _codecs.encode with an unknown codec
  CHECK_THROWS_AS(unpickle("c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x05\x00\x00\x00rot13\x86R."sv, "m"), kiln::Error);
}

TEST_CASE("stack, memo and values are bounded") {
  UnpickleLimits small;
  small.max_stack = 100;
  small.max_memo = 10;
  small.max_values = 1000;
  std::string deep(200, ']');
  CHECK_THROWS_WITH_AS(unpickle(deep + ".", "m", small), doctest::Contains("stack"), kiln::Error);
  std::string memo = "\x80\x02]";
  for (int i = 0; i < 20; ++i) memo += std::string("r") + std::string(reinterpret_cast<const char*>(&i), 4);
  CHECK_THROWS_WITH_AS(unpickle(memo + ".", "m", small), doctest::Contains("memo"), kiln::Error);
  std::string many = "]";
  for (int i = 0; i < 2000; ++i) many += "Na";
  CHECK_THROWS_WITH_AS(unpickle(many + ".", "m", small), doctest::Contains("values"), kiln::Error);
  CHECK_THROWS_WITH_AS(unpickle("h\x05.", "m"), doctest::Contains("memo entry 5"), kiln::Error);
  CHECK_THROWS_AS(unpickle("a.", "m"), kiln::Error);
  CHECK_THROWS_AS(unpickle("K\x01K\x02.", "m"), kiln::Error);  // two values at STOP
  CHECK_THROWS_AS(unpickle("\x8b\xff\xff\xff\x7f.", "m"), kiln::Error);  // LONG4 past the end
  CHECK_THROWS_AS(unpickle("\x8a\x09" "123456789.", "m"), kiln::Error);  // integer over 64 bits
  // A self-referencing list through the memo (a cycle) does not leak (ASan checks).
  Pickle cyc = unpickle("]q\x00h\x00" "a."sv, "cycle");
  CHECK(cyc.root().items.size() == 1);
  CHECK(cyc.root().items[0] == &cyc.root());
}

TEST_CASE("the byte layout of CIFAR-100's own Python 2 pickles (cPickle protocol 2) is read") {
  // The opening of cifar-100-python/train as Python 2.7 + numpy wrote it, shrunk to a (2, 3)
  // array: _reconstruct(ndarray, (0,), 'b'), dtype('u1', 0, 1) with BUILD state
  // (3, '|', None, None, None, -1, -1, 0), then BUILD (1, shape, dtype, False, <BINSTRING data>).
  std::string_view b =
      "\x80\x02}q\x01(U\x04" "dataq\x02" "cnumpy.core.multiarray\n_reconstruct\nq\x03" "cnumpy\nndarray\nq\x04"
      "K\x00\x85U\x01" "b\x87Rq\x05(K\x01K\x02K\x03\x86" "cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07"
      "(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x06" "abcdeftb"
      "U\x0b" "fine_labelsq\x08]q\x09(K\x13K\x1d" "eu."sv;
  Pickle p = unpickle(b, "py2 cifar");
  const NamedArray& data = p.root().at("data", "py2").as_ndarray("data");
  CHECK(data.dtype == DType::u8);
  CHECK(data.shape == std::vector<int64_t>{2, 3});
  CHECK(static_cast<char>(data.bytes[5]) == 'f');
  CHECK(p.root().at("fine_labels", "py2").as_sequence("l")[1]->as_int("l") == 29);
}
