// .pth parity with PyTorch 1.13: torchvision's resnet18 state_dict read exactly; the round trip
// .pth -> kiln import -> .safetensors -> kiln export -> .pth -> torch.load(weights_only=True)
// gives identical tensors and torchvision's strict load_state_dict accepts it.
#include <cstring>
#include <fstream>

#include "fixtures.h"
#include "kiln/io/npy.h"
#include "kiln/io/pth.h"
#include "kiln/io/safetensors.h"
#include "kiln/io/weights.h"

using namespace kiln::io;
using kiln_test::fixtures;
using kiln_test::quote;

namespace {

const NamedArray& find(const StateDict& sd, const std::string& name) {
  for (const auto& a : sd)
    if (a.name == name) return a;
  FAIL("no tensor " << name);
  static NamedArray none;
  return none;
}

template <typename T>
T elem(const NamedArray& a, size_t i) {
  T v;
  std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

TEST_CASE("read_pth reads torchvision resnet18's state_dict exactly, in order") {
  StateDict sd = read_pth(fixtures() / "resnet18.pth");
  std::ifstream index(fixtures() / "ref" / "index.txt");
  std::string name;
  size_t i = 0;
  while (std::getline(index, name)) {
    REQUIRE(i < sd.size());
    NamedArray ref = read_npy(fixtures() / "ref" / (std::to_string(i) + ".npy"));
    CAPTURE(name);
    CHECK(sd[i].name == name);
    CHECK(sd[i].dtype == ref.dtype);
    CHECK(sd[i].shape == ref.shape);
    CHECK(sd[i].bytes == ref.bytes);
    ++i;
  }
  CHECK(i == sd.size());
  CHECK(sd.size() == 122);
  const NamedArray& nbt = find(sd, "bn1.num_batches_tracked");
  CHECK(nbt.dtype == DType::i64);
  CHECK(nbt.shape.empty());
  CHECK(elem<int64_t>(nbt, 0) == 1);
}

TEST_CASE("read_pth gathers strided views and shared storages, and maps every dtype") {
  StateDict sd = read_pth(fixtures() / "views.pth");
  const NamedArray& t = find(sd, "transposed");  // base(4,6).t(): (6,4) with strides (1,6)
  CHECK(t.shape == std::vector<int64_t>{6, 4});
  CHECK(t.f32()[1] == 6.0f);  // t[0][1] = base[1][0]
  CHECK(t.f32()[4] == 1.0f);  // t[1][0] = base[0][1]
  const NamedArray& a = find(sd, "slice_a");
  CHECK(elem<int64_t>(a, 0) == 2);
  const NamedArray& b = find(sd, "slice_b");
  CHECK(b.shape == std::vector<int64_t>{2, 2});
  CHECK(elem<int64_t>(b, 3) == 9);
  CHECK(find(sd, "f64").dtype == DType::f64);
  CHECK(find(sd, "f16").dtype == DType::f16);
  CHECK(find(sd, "bf16").dtype == DType::bf16);
  CHECK(elem<int32_t>(find(sd, "i32"), 1) == -2);
  CHECK(elem<int64_t>(find(sd, "scalar"), 0) == 7);
  CHECK(find(sd, "flags").dtype == DType::bool_);
  CHECK(elem<int8_t>(find(sd, "i8"), 0) == -128);
  CHECK(find(sd, "empty").shape == std::vector<int64_t>{0, 3});
  // a deflated archive holds the same tensors
  StateDict d = read_pth(fixtures() / "deflated.pth");
  REQUIRE(d.size() == sd.size());
  for (size_t i = 0; i < d.size(); ++i) CHECK(d[i].bytes == sd[i].bytes);
}

TEST_CASE("a checkpoint with the weights under 'state_dict' is read") {
  StateDict sd = read_pth(fixtures() / "nested.pth");
  REQUIRE(sd.size() == 1);
  CHECK(sd[0].name == "w");
}

TEST_CASE("a legacy (pre-1.6) torch.save file gets an error saying how to re-save it") {
  try {
    read_pth(fixtures() / "legacy.pth");
    FAIL("legacy.pth was accepted");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("legacy (pre-1.6, non-zip)") != std::string::npos);
    CHECK(e.full_message().find("torch.save(sd, new_path)") != std::string::npos);
  }
}

TEST_CASE("a .pth whose data.pkl would run a command is refused and nothing runs") {
  CHECK_THROWS_WITH_AS(read_pth(fixtures() / "evil.pth"), doctest::Contains("posix.system is not allowed"), kiln::Error);
  std::string out;
  int rc = kiln_test::run(kiln_test::kiln_bin() + " inspect " + quote(fixtures() / "evil.pth"), &out);
  CHECK(rc == 1);
  CHECK_MESSAGE(out.find("is not allowed") != std::string::npos, out);
  CHECK_FALSE(std::filesystem::exists(fixtures() / "PWNED"));
}

TEST_CASE("kiln import/export round trip: torch.load(weights_only=True) and torchvision strict load agree") {
  auto w = kiln_test::work_dir();
  std::string out;
  std::string kiln = kiln_test::kiln_bin();
  int rc = kiln_test::run(kiln + " import " + quote(fixtures() / "resnet18.pth") + " --output " + quote(w / "r18.safetensors"), &out);
  REQUIRE_MESSAGE(rc == 0, out);
  CHECK(out.find("122 tensors") != std::string::npos);
  rc = kiln_test::run(kiln + " export " + quote(w / "r18.safetensors") + " --output " + quote(w / "r18.pth"), &out);
  REQUIRE_MESSAGE(rc == 0, out);
  // kiln's own reader sees the same tensors in all three files
  StateDict orig = read_pth(fixtures() / "resnet18.pth");
  StateDict st = read_safetensors(w / "r18.safetensors");
  StateDict back = read_weights(w / "r18.pth");
  REQUIRE(st.size() == orig.size());
  REQUIRE(back.size() == orig.size());
  for (size_t i = 0; i < orig.size(); ++i) {
    CHECK(st[i].name == orig[i].name);
    CHECK(back[i].name == orig[i].name);
    CHECK(back[i].bytes == orig[i].bytes);
    CHECK(back[i].shape == orig[i].shape);
  }
  // and PyTorch 1.13 agrees, in weights_only mode, with torchvision's strict loader
  rc = kiln_test::run(kiln_test::python() + " " +
                          quote(std::filesystem::path(kiln_test::env_or("KILN_SOURCE_ROOT", ".")) / "tests/io/make_fixtures.py") +
                          " --check " + quote(w / "r18.pth") + " " + quote(fixtures() / "resnet18.pth"),
                      &out);
  CHECK_MESSAGE(rc == 0, out);
  rc = kiln_test::run(kiln + " inspect " + quote(w / "r18.pth"), &out);
  CHECK_MESSAGE(rc == 0, out);
  size_t at = out.find("layer4.1.bn2.num_batches_tracked ");
  REQUIRE_MESSAGE(at != std::string::npos, out);
  std::string row = out.substr(at, out.find('\n', at) - at);
  CHECK_MESSAGE(row.find(" int64 ") != std::string::npos, row);
  CHECK_MESSAGE(row.find("()") != std::string::npos, row);
  CHECK(out.find("pth, 122 tensors") != std::string::npos);
}

TEST_CASE("every dtype and view survives write_pth and torch.load(weights_only=True)") {
  StateDict sd = read_pth(fixtures() / "views.pth");
  auto path = kiln_test::work_dir() / "views_kiln.pth";
  write_pth(path, sd);
  std::string code =
      "import torch; a=torch.load('" + path.string() + "', weights_only=True); b=torch.load('" +
      (fixtures() / "views.pth").string() +
      "'); assert list(a)==list(b); bad=[k for k in b if a[k].dtype!=b[k].dtype or a[k].shape!=b[k].shape or not "
      "torch.equal(a[k],b[k]) or not a[k].is_contiguous()]; assert not bad, bad; print('ok')";
  std::string out;
  int rc = kiln_test::run(kiln_test::python() + " -c \"" + code + "\"", &out);
  CHECK_MESSAGE(rc == 0, out);
}

TEST_CASE("write_weights picks the format from the extension; bad names are refused early") {
  StateDict sd = read_pth(fixtures() / "views.pth");
  CHECK_THROWS_WITH_AS(write_weights(kiln_test::work_dir() / "x.onnx", sd), doctest::Contains(".safetensors"), kiln::Error);
  CHECK_THROWS_WITH_AS(write_weights(kiln_test::work_dir() / "x.npy", sd), doctest::Contains("one array"), kiln::Error);
  CHECK_THROWS_AS(read_weights(fixtures() / "ref" / "index.txt"), kiln::Error);
}

TEST_CASE("streamed write_pth / write_safetensors give the same bytes as the in-memory encoders") {
  StateDict sd = read_pth(fixtures() / "views.pth");
  auto w = kiln_test::work_dir();
  write_pth(w / "s.pth", sd);
  CHECK(kiln::read_file(w / "s.pth") == encode_pth(sd, "archive"));
  write_safetensors(w / "s.safetensors", sd, {{"a", "b"}});
  CHECK(kiln::read_file(w / "s.safetensors") == encode_safetensors(sd, {{"a", "b"}}));
}
