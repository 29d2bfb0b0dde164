// Hostile inputs: every reader, fed truncated files (every prefix) and randomly corrupted ones,
// either succeeds or throws kiln::Error: no crash, no other exception, no huge allocation. The
// suite also runs under ASan/UBSan, which turns any out-of-bounds read into a failure here.
#include <random>

#include "fixtures.h"
#include "io/gzip.h"
#include "io/npy.h"
#include "io/pickle.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "io/tar.h"

using namespace kiln::io;
using kiln_test::fixtures;

namespace {

using Parser = void (*)(std::string_view);

// Returns true when `parse` threw kiln::Error; fails the test on any other exception.
bool rejects(Parser parse, std::string_view bytes, const std::string& label) {
  try {
    parse(bytes);
    return false;
  } catch (const kiln::Error&) {
    return true;
  } catch (const std::exception& e) {
    FAIL(label << ": expected kiln::Error or success, got " << typeid(e).name() << ": " << e.what());
  }
  return false;
}

// Every prefix (every `step` bytes) must be rejected; returns how many were tried.
void truncations_rejected(Parser parse, const std::string& bytes, const std::string& label, size_t step = 1) {
  size_t accepted = 0;
  for (size_t n = 0; n < bytes.size(); n += step)
    if (!rejects(parse, std::string_view(bytes).substr(0, n), label + " truncated to " + std::to_string(n))) ++accepted;
  CHECK_MESSAGE(accepted == 0, label << ": " << accepted << " truncated copies were accepted");
}

// Random byte corruptions: only kiln::Error or success are allowed.
void corruptions_survived(Parser parse, const std::string& bytes, const std::string& label, int rounds) {
  std::mt19937_64 rng(12345);
  for (int r = 0; r < rounds; ++r) {
    std::string m = bytes;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      size_t at = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[at] = static_cast<char>(rng()); break;
        case 1: m[at] = '\xff'; break;
        case 2: m[at] = '\0'; break;
        default: m[at] = static_cast<char>(m[at] ^ (1 << (rng() % 8)));
      }
    }
    rejects(parse, m, label + " corruption round " + std::to_string(r));
  }
}

void p_npy(std::string_view b) { parse_npy(b, "t.npy"); }
void p_st(std::string_view b) { parse_safetensors(b, "t.safetensors"); }
void p_pth(std::string_view b) { parse_pth(b, "t.pth"); }
void p_pickle(std::string_view b) { unpickle(b, "t.pkl"); }
void p_gz(std::string_view b) { gunzip(b, "t.gz", 1 << 24); }
void p_tar(std::string_view b) { parse_tar(b, "t.tar"); }

}  // namespace

TEST_CASE("NPY: truncated, corrupted and overflowing headers give kiln::Error") {
  std::string f = kiln::read_file(fixtures() / "f32.npy");
  truncations_rejected(p_npy, f, "f32.npy");
  corruptions_survived(p_npy, f, "f32.npy", 3000);
  NamedArray a;
  a.shape = {2};
  a.bytes.resize(8);
  std::string good = encode_npy(a);
  auto with_shape = [&](const std::string& shape) {
    std::string s = good;
    size_t at = s.find("(2,)");
    return s.replace(at, 4, shape);
  };
  CHECK_THROWS_WITH_AS(parse_npy(with_shape("(4611686018427387904, 4)"), "big.npy"), doctest::Contains("fits in 64 bits"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_npy(with_shape("(99999999999999999999,)"), "big.npy"), doctest::Contains("64 bits"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_npy(with_shape("(3,)"), "short.npy"), doctest::Contains("truncated"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_npy(with_shape("(-1,)"), "neg.npy"), doctest::Contains("non-negative"), kiln::Error);
}

TEST_CASE("safetensors: truncated and corrupted files give kiln::Error") {
  NamedArray a;
  a.name = "w";
  a.shape = {3, 2};
  a.bytes.resize(24);
  NamedArray b = a;
  b.name = "b";
  b.dtype = DType::i64;
  b.shape = {3};
  std::string f = encode_safetensors({a, b}, {{"k", "v"}});
  truncations_rejected(p_st, f, "safetensors");
  corruptions_survived(p_st, f, "safetensors", 3000);
}

TEST_CASE("pickles: truncated and corrupted CIFAR-style pickles give kiln::Error") {
  std::string meta = kiln::read_file(fixtures() / "cifar_meta");
  truncations_rejected(p_pickle, meta, "cifar_meta");
  corruptions_survived(p_pickle, meta, "cifar_meta", 3000);
  std::string train = kiln::read_file(fixtures() / "cifar_train");
  truncations_rejected(p_pickle, train, "cifar_train", 13);
  corruptions_survived(p_pickle, train, "cifar_train", 1500);
  std::string p5 = kiln::read_file(fixtures() / "cifar_train_p5");
  corruptions_survived(p_pickle, p5, "cifar_train_p5", 1500);
}

TEST_CASE(".pth: truncated and corrupted zips give kiln::Error") {
  std::string f = kiln::read_file(fixtures() / "views.pth");
  truncations_rejected(p_pth, f, "views.pth", 3);
  corruptions_survived(p_pth, f, "views.pth", 3000);
  std::string d = kiln::read_file(fixtures() / "deflated.pth");
  truncations_rejected(p_pth, d, "deflated.pth", 5);
  corruptions_survived(p_pth, d, "deflated.pth", 2000);
}

TEST_CASE("gzip and tar: truncated and corrupted archives give kiln::Error") {
  std::string tgz = kiln::read_file(fixtures() / "cifar.tar.gz");
  truncations_rejected(p_gz, tgz, "cifar.tar.gz", 17);
  corruptions_survived(p_gz, tgz, "cifar.tar.gz", 300);
  std::string tar = gunzip(tgz, "cifar.tar.gz", 1 << 26);
  // A tar cut anywhere before its end-of-archive block is rejected (a cut inside the zero blocks
  // after it is a complete archive).
  size_t content_end = tar.find_last_not_of('\0') + 1;
  size_t accepted_mid_block = 0;
  for (size_t n = 1; n < content_end + 512; n += 97)
    if (!rejects(p_tar, std::string_view(tar).substr(0, n), "tar")) ++accepted_mid_block;
  CHECK(accepted_mid_block == 0);
  corruptions_survived(p_tar, tar, "cifar.tar", 1000);
  std::string pax = kiln::read_file(fixtures() / "pax.tar");
  corruptions_survived(p_tar, pax, "pax.tar", 2000);
}
