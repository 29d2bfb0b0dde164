// NPY: numpy-written files read exactly; kiln-written files round-trip and numpy reads them back.
#include <cstring>

#include "fixtures.h"
#include "kiln/io/npy.h"

using namespace kiln::io;
using kiln_test::fixtures;

TEST_CASE("read_npy reads numpy's float32, uint8, int64, bool and 0-d files") {
  NamedArray a = read_npy(fixtures() / "f32.npy");
  CHECK(a.dtype == DType::f32);
  CHECK(a.shape == std::vector<int64_t>{3, 4});
  CHECK(a.f32()[11] == 11.0f);
  NamedArray u = read_npy(fixtures() / "u8.npy");
  CHECK(u.dtype == DType::u8);
  CHECK(u.shape == std::vector<int64_t>{1, 2, 3});
  CHECK(static_cast<int>(u.bytes[5]) == 5);
  NamedArray i = read_npy(fixtures() / "i64.npy");
  int64_t v[2];
  std::memcpy(v, i.bytes.data(), 16);
  CHECK(v[0] == -5);
  CHECK(v[1] == (int64_t(1) << 40));
  CHECK(read_npy(fixtures() / "b1.npy").dtype == DType::bool_);
  NamedArray s = read_npy(fixtures() / "f64_scalar.npy");
  CHECK(s.shape.empty());
  double d;
  std::memcpy(&d, s.bytes.data(), 8);
  CHECK(d == 2.5);
}

TEST_CASE("Fortran-order and big-endian NPY files are rejected with a hint") {
  CHECK_THROWS_WITH_AS(read_npy(fixtures() / "fortran.npy"), doctest::Contains("Fortran-order"), kiln::Error);
  CHECK_THROWS_WITH_AS(read_npy(fixtures() / "bigendian.npy"), doctest::Contains("big-endian"), kiln::Error);
}

TEST_CASE("encode_npy round-trips and numpy reads kiln's file") {
  NamedArray a;
  a.name = "x";
  a.dtype = DType::f32;
  a.shape = {2, 3};
  a.bytes.resize(24);
  for (int k = 0; k < 6; ++k) a.f32()[k] = static_cast<float>(k) * 0.5f;
  std::string enc = encode_npy(a);
  CHECK(enc.size() % 64 == 24 % 64);  // header padded so data start 64-byte aligned
  NamedArray b = parse_npy(enc, "mem");
  CHECK(b.shape == a.shape);
  CHECK(b.bytes == a.bytes);
  auto path = kiln_test::work_dir() / "kiln.npy";
  write_npy(path, a);
  std::string out;
  int rc = kiln_test::run(kiln_test::python() + " -c \"import numpy as n; a=n.load('" + path.string() +
                              "'); assert a.dtype==n.float32 and a.shape==(2,3) and a[1,2]==2.5, a; print('ok')\"",
                          &out);
  CHECK_MESSAGE(rc == 0, out);
}
