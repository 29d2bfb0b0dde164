// Fixture generation and the tolerance rule shared by tests/models (see fixtures.h).
#include "tests/models/fixtures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "kiln/core/error.h"
#include "kiln/io/npy.h"
#include "kiln/io/safetensors.h"

namespace kiln::test {

namespace fs = std::filesystem;

const io::NamedArray& Fixture::ref(const std::string& name) const {
  auto it = refs.find(name);
  if (it == refs.end())
    fail(arch + " fixtures (" + (dir / "fixtures.safetensors").string() + ")",
         "a reference named " + name, "no such key",
         "is the parameter named as torchvision names it?");
  return it->second;
}

double Fixture::err32(const std::string& name) const {
  const io::NamedArray& a = ref("err32." + name);
  KILN_ASSERT(a.dtype == io::DType::f64 && a.numel() == 1, "err32 entries are one float64");
  double v;
  std::memcpy(&v, a.bytes.data(), sizeof v);
  return v;
}

double Fixture::meta_double(const std::string& key) const {
  auto it = meta.find(key);
  if (it == meta.end()) fail(arch + " fixture metadata", "key " + key, "none");
  return std::stod(it->second);
}

std::vector<float> Fixture::input() const {
  const io::NamedArray& a = ref("input");
  return std::vector<float>(a.f32(), a.f32() + a.numel());
}

std::vector<int64_t> Fixture::labels() const {
  const io::NamedArray& a = ref("labels");
  KILN_ASSERT(a.dtype == io::DType::i64, "labels are int64");
  std::vector<int64_t> out(static_cast<size_t>(a.numel()));
  std::memcpy(out.data(), a.bytes.data(), a.bytes.size());
  return out;
}

int64_t Fixture::batch() const { return ref("input").shape.at(0); }

const Fixture& parity_fixture(const std::string& arch) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[arch];
  if (slot) return *slot;
  auto fx = std::make_unique<Fixture>();
  fx->arch = arch;
  fx->dir = make_temp_dir("parity-" + arch);
  fs::path script = source_root() / "tests" / "models" / "gen_parity.py";
  std::string cmd = quote(python()) + " " + quote(script.string()) + " --arch " + arch +
                    " --out " + quote(fx->dir.string());
  std::string out;
  int rc = run(cmd, &out);
  if (rc != 0)
    throw Error("generating the PyTorch parity fixtures failed: `" + cmd + "` exited with " +
                    std::to_string(rc) + ":\n" + out,
                "these tests need Debian's python3-torch and python3-torchvision (apt install "
                "python3-torch python3-torchvision), or KILN_PYTHON pointing at a Python that "
                "has torch and torchvision; they are never skipped");
  io::Metadata meta;
  io::StateDict sd = io::read_safetensors(fx->dir / "fixtures.safetensors", &meta);
  for (auto& a : sd) {
    std::string name = a.name;
    fx->refs.emplace(name, std::move(a));
  }
  fx->meta = std::map<std::string, std::string>(meta.begin(), meta.end());
  slot = std::move(fx);
  return *slot;
}

CompareStats& compare_stats() {
  static CompareStats s;
  return s;
}

std::string compare(const std::string& label, const std::vector<float>& kiln,
                    const std::vector<int64_t>& kiln_shape, const io::NamedArray& ref,
                    double err32, const Tolerance& tol) {
  if (kiln_shape != ref.shape)
    return label + ": shape " + io::shape_str(kiln_shape) + ", PyTorch has " +
           io::shape_str(ref.shape);
  if (static_cast<int64_t>(kiln.size()) != ref.numel())
    return label + ": " + std::to_string(kiln.size()) + " values for shape " +
           io::shape_str(ref.shape);
  const float* r = ref.f32();
  double max_ref = 0, max_err = 0;
  int64_t where = 0;
  for (size_t i = 0; i < kiln.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(r[i])));
    double e = std::fabs(static_cast<double>(kiln[i]) - r[i]);
    if (!(e <= max_err)) {  // also catches NaN
      max_err = std::isnan(e) ? INFINITY : e;
      where = static_cast<int64_t>(i);
    }
  }
  double t = tol.factor * err32 + tol.floor_rel * max_ref;
  auto& st = compare_stats();
  double ratio = t > 0 ? max_err / t : (max_err > 0 ? INFINITY : 0);
  if (ratio > st.worst_ratio) {
    st.worst_ratio = ratio;
    st.worst_label = label;
  }
  if (err32 > 0 && max_err / err32 > st.worst_err_over_err32) {
    st.worst_err_over_err32 = max_err / err32;
    st.worst_err32_label = label;
  }
  if (max_err <= t) return {};
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ": max abs err %.3g at index %lld (kiln %.9g, PyTorch fp64 %.9g), tolerance %.3g "
                "(%.0f x PyTorch's own fp32 err %.3g + %.0e x max|ref| %.3g)",
                max_err, static_cast<long long>(where), static_cast<double>(kiln[where]),
                static_cast<double>(r[where]), t, tol.factor, err32, tol.floor_rel, max_ref);
  return label + buf;
}

}  // namespace kiln::test
