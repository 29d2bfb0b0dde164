// Hostile inputs: every reader, fed truncated files (every prefix) and randomly corrupted ones,
// either succeeds or throws kiln::Error: no crash, no other exception, no huge allocation. The
// suite also runs under ASan/UBSan, which turns any out-of-bounds read into a failure here.
#include <cstring>
#include <random>

#include "fixtures.h"
#include "kiln/io/bytes.h"
#include "kiln/io/gzip.h"
#include "kiln/io/npy.h"
#include "kiln/io/pickle.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/io/tar.h"
#include "kiln/io/zip.h"


using namespace kiln::io;
using kiln_test::fixtures;
using namespace std::literals;

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

namespace {

// A torch-style .pth whose data.pkl holds one tensor 'w' = _rebuild_tensor_v2 over storage
// `key` (FloatStorage of `numel`) with the given size and stride tuples (pickle fragments).
std::string crafted_pth(const std::string& key, int numel, const std::string& size, const std::string& stride,
                        size_t storage_bytes) {
  auto u = [](const std::string& s) {
    std::string r = "X";
    kiln::io::detail::append_le<uint32_t>(r, static_cast<uint32_t>(s.size()));
    return r + s;
  };
  std::string p = "\x80\x02" "ccollections\nOrderedDict\n)R(" + u("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" +
                  u("storage") + "ctorch\nFloatStorage\n" + u(key) + u("cpu") + "K" + std::string(1, static_cast<char>(numel)) +
                  "tQK\x00"s + size + stride + "\x89" "ccollections\nOrderedDict\n)RtRu.";
  ZipWriter z;
  z.add("a/data.pkl", p);
  z.add("a/data/0", std::string(storage_bytes, '\x01'));
  z.add("a/version", "3\n");
  return z.finish();
}

std::string le64(uint64_t v) {
  std::string s;
  kiln::io::detail::append_le<uint64_t>(s, v);
  return s;
}

}  // namespace

TEST_CASE(".pth with lying tensor geometry or storages gives a named kiln::Error") {
  auto rejects_with = [](const std::string& bytes, const char* needle) {
    CHECK_THROWS_WITH_AS(parse_pth(bytes, "crafted.pth"), doctest::Contains(needle), kiln::Error);
  };
  const std::string ok_stride = "(K\x04K\x01t";
  // sanity: the crafted file itself is fine
  StateDict sd = parse_pth(crafted_pth("0", 8, "(K\x02K\x04t", ok_stride, 32), "crafted.pth");
  REQUIRE(sd.size() == 1);
  CHECK(sd[0].shape == std::vector<int64_t>{2, 4});
  rejects_with(crafted_pth("0", 8, "(\x8a\x08" + le64(uint64_t(1) << 62) + "K\x04t", ok_stride, 32), "fits in 64 bits");
  rejects_with(crafted_pth("0", 8, "(K\x03K\x04t", ok_stride, 32), "inside its storage");
  rejects_with(crafted_pth("1", 8, "(K\x02K\x04t", ok_stride, 32), "storage record 'a/data/1'");
  rejects_with(crafted_pth("0", 5, "(K\x02K\x04t", ok_stride, 32), "expected 20 bytes");
  rejects_with(crafted_pth("0", 8, "(K\x02K\x04t", "(K\x00K\x01t"s, 32), "expanded");
  rejects_with(crafted_pth("0", 8, "(K\x02K\x04t", "(K\x01t", 32), "one per dim");
}

TEST_CASE("zip archives with offsets pointing outside the file give a named kiln::Error") {
  ZipWriter z;
  z.add("a/data.pkl", "\x80\x02}.");
  z.add("a/version", "3\n");
  std::string good = z.finish();
  CHECK(parse_pth(good, "ok.pth").empty());
  // The ZIP64 end record is 56 + 20 + 22 bytes from the end; its cd_offset is at +48.
  size_t end64 = good.size() - 22 - 20 - 56;
  std::string bad_cd = good;
  std::memcpy(&bad_cd[end64 + 48], le64(uint64_t(1) << 40).data(), 8);
  CHECK_THROWS_WITH_AS(parse_pth(bad_cd, "cd.pth"), doctest::Contains("central directory"), kiln::Error);
  // The first central directory header's local header offset (at +42) pointed past the end.
  size_t cd = good.find("PK\x01\x02");
  std::string bad_local = good;
  uint32_t far = 0x7fffff00u;
  std::memcpy(&bad_local[cd + 42], &far, 4);
  CHECK_THROWS_WITH_AS(parse_pth(bad_local, "local.pth"), doctest::Contains("local header offset"), kiln::Error);
  // Its sizes (at +20 and +24) claiming more data than the file holds.
  std::string bad_size = good;
  std::memcpy(&bad_size[cd + 20], &far, 4);
  std::memcpy(&bad_size[cd + 24], &far, 4);
  CHECK_THROWS_WITH_AS(parse_pth(bad_size, "size.pth"), doctest::Contains("-byte file"), kiln::Error);
  // The ZIP64 locator pointing at garbage.
  std::string bad_loc = good;
  std::memcpy(&bad_loc[good.size() - 22 - 20 + 8], le64(3).data(), 8);
  CHECK_THROWS_WITH_AS(parse_pth(bad_loc, "loc.pth"), doctest::Contains("ZIP64 end record"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_pth(std::string("PK\x03\x04", 4) + std::string(40, '\0'), "noend.pth"),
                       doctest::Contains("end-of-central-directory"), kiln::Error);
}
