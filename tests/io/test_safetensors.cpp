// safetensors: round trip, metadata, and the strict validation of the header.
#include <cstring>

#include "fixtures.h"
#include "kiln/io/bytes.h"
#include "kiln/core/atomic_file.h"
#include "kiln/io/safetensors.h"
#include "kiln/io/weights.h"

using namespace kiln::io;

namespace {

NamedArray arr(const std::string& name, DType t, std::vector<int64_t> shape) {
  NamedArray a;
  a.name = name;
  a.dtype = t;
  a.shape = std::move(shape);
  a.bytes.resize(static_cast<size_t>(a.numel()) * dtype_size(t));
  for (size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = static_cast<std::byte>(i * 7 + 3);
  return a;
}

// A safetensors file from a literal header and `data_size` bytes of data.
std::string with_header(const std::string& header, size_t data_size) {
  std::string s;
  kiln::io::detail::append_le<uint64_t>(s, header.size());
  return s + header + std::string(data_size, '\0');
}

}  // namespace

TEST_CASE("safetensors round-trips tensors in order, with dtypes and metadata") {
  StateDict sd = {arr("conv1.weight", DType::f32, {4, 3, 3, 3}), arr("bn1.num_batches_tracked", DType::i64, {}),
                  arr("a.bf16", DType::bf16, {5}), arr("mask", DType::bool_, {2, 2}), arr("e", DType::f32, {0, 3})};
  std::string enc = encode_safetensors(sd, {{"format", "pt"}});
  uint64_t hl;
  std::memcpy(&hl, enc.data(), 8);
  CHECK((8 + hl) % 8 == 0);
  Metadata md;
  StateDict back = parse_safetensors(enc, "mem", &md);
  REQUIRE(back.size() == sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    CHECK(back[i].name == sd[i].name);
    CHECK(back[i].dtype == sd[i].dtype);
    CHECK(back[i].shape == sd[i].shape);
    CHECK(back[i].bytes == sd[i].bytes);
  }
  CHECK(md.at("format") == "pt");
}

TEST_CASE("safetensors headers that lie are rejected with the field named") {
  auto rejects = [](const std::string& file, const char* needle) {
    CHECK_THROWS_WITH_AS(parse_safetensors(file, "t.safetensors"), doctest::Contains(needle), kiln::Error);
  };
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "bytes (data_offsets)");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", 4), "data_offsets");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8),
          "no gaps or overlaps");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "to begin at 0");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "what the header describes");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})", 4), "fits in 64 bits");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
  rejects(with_header(R"({"a":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}})", 8), "dtype");
  rejects(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4), "exactly dtype");
  rejects(with_header(R"({"a":[[[[[[[[1]]]]]]]]})", 0), "nested");
  rejects(with_header(R"({"a":)", 0), "not valid JSON");
  rejects(with_header(R"({"__metadata__":{"k":1}})", 0), "a string");
  std::string huge;
  kiln::io::detail::append_le<uint64_t>(huge, uint64_t(1) << 62);
  rejects(huge + "{}", "header length");
  rejects("abc", "8-byte header length");
}

TEST_CASE("read_weights knows a safetensors file by its '{' whatever its header length's first byte") {
  // The first 8 bytes are the header length, little-endian: its low byte may be 0x80 (the
  // first byte of a legacy torch.save pickle) or anything else; byte 8 is '{' in every
  // safetensors file and in no .pth (zip: compression method; legacy pickle: 0xf9).
  StateDict sd = {arr("w", DType::f32, {3})};
  kiln::test::TempDir dir("safetensors_detect");
  int seen = 0;
  for (size_t pad = 0; pad < 512; pad += 8) {
    std::string enc = encode_safetensors(sd, {{"note", std::string(pad, 'x')}});
    const auto low = static_cast<unsigned char>(enc[0]);
    if (low != 0x80 && low != 'P') continue;
    ++seen;
    CAPTURE(static_cast<int>(low));
    const auto path = dir / ("w" + std::to_string(pad) + ".safetensors");
    kiln::write_file_atomic(path, enc);
    CHECK(detect_weights_format(path) == WeightsFormat::safetensors);
    StateDict back = read_weights(path);
    REQUIRE(back.size() == 1);
    CHECK(back[0].bytes == sd[0].bytes);
  }
  CHECK(seen >= 2);  // lengths step by 8: 0x80 and 0x50 each come round in 256 bytes of padding
}
