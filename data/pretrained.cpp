// torchvision's ImageNet weights, cached as torch hub caches them (see pretrained.h).
#include "kiln/data/pretrained.h"

#include <cstdio>
#include <cstdlib>

#include "kiln/aws/crypto.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/download.h"

namespace fs = std::filesystem;

namespace kiln::data {
namespace {

std::string sha256_file_hex(const fs::path& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) throw Error("cannot read " + p.string());
  aws::Sha256 h;
  std::string buf(1 << 20, '\0');
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(std::string_view(buf.data(), n));
  std::fclose(f);
  return h.hex_digest();
}

}  // namespace

const std::vector<PretrainedFile>& all_imagenet_weights() {
  // torchvision 0.14 models/resnet.py, ResNet*_Weights.IMAGENET1K_V1 (what pretrained=True loads).
  static const std::vector<PretrainedFile> table = {
      {"resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth"},
      {"resnet34", "https://download.pytorch.org/models/resnet34-b627a593.pth"},
      {"resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth"},
      {"resnet101", "https://download.pytorch.org/models/resnet101-63fe2227.pth"},
      {"resnet152", "https://download.pytorch.org/models/resnet152-394f9c45.pth"},
  };
  return table;
}

std::string PretrainedFile::file_name() const { return url.substr(url.rfind('/') + 1); }
std::string PretrainedFile::sha256_prefix() const { return hash_prefix_of(file_name()); }

PretrainedFile imagenet_weights(const std::string& arch) {
  std::string known;
  for (const auto& w : all_imagenet_weights()) {
    if (w.arch == arch) return w;
    known += (known.empty() ? "" : ", ") + w.arch;
  }
  fail("ImageNet weights for '" + arch + "'", "one of " + known, "an architecture torchvision publishes none for");
}

std::string hash_prefix_of(const std::string& name) {
  // torch.hub's HASH_REGEX: -([a-f0-9]*)\. ; the first match
  for (size_t dash = name.find('-'); dash != std::string::npos; dash = name.find('-', dash + 1)) {
    size_t i = dash + 1;
    while (i < name.size() && ((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) ++i;
    if (i < name.size() && name[i] == '.') return name.substr(dash + 1, i - dash - 1);
  }
  return {};
}

fs::path torch_hub_checkpoints() {
  fs::path home;
  if (const char* t = std::getenv("TORCH_HOME"); t && *t) home = t;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) home = fs::path(x) / "torch";
  else if (const char* h = std::getenv("HOME"); h && *h) home = fs::path(h) / ".cache" / "torch";
  else home = fs::path("/root/.cache/torch");
  return home / "hub" / "checkpoints";
}

fs::path fetch_pretrained(const std::string& arch, const PretrainedOptions& o) {
  PretrainedFile w = imagenet_weights(arch);
  if (!o.url.empty()) w.url = o.url;
  const std::string name = w.file_name();
  const std::string prefix = hash_prefix_of(name);
  if (prefix.size() < 8)
    fail("weights URL " + w.url, "a file name carrying its SHA-256 prefix (NAME-<8+ hex>.pth, as torchvision's)",
         "'" + name + "'");
  const fs::path cache = o.cache_dir.empty() ? torch_hub_checkpoints() : o.cache_dir;
  const fs::path cached = cache / name;
  auto good = [&](const fs::path& p) { return sha256_file_hex(p).rfind(prefix, 0) == 0; };

  for (const fs::path& dir : o.search) {
    fs::path p = dir / name;
    if (!fs::is_regular_file(p)) continue;
    if (!good(p)) fail(p.string(), "a file whose SHA-256 starts with " + prefix, "another one", "the copy is damaged");
    return p;
  }
  if (fs::is_regular_file(cached)) {
    if (good(cached)) return cached;
    if (!o.quiet) std::fprintf(stderr, "%s does not match its SHA-256 prefix %s: downloading it again\n",
                               cached.c_str(), prefix.c_str());
  }
  const std::string hint = "without network access, download " + w.url + " on another machine and put it at " +
                           cached.string() + " (TORCH_HOME moves the cache; PyTorch uses the same place)";
  FetchOptions fo;
  fo.ca_bundle = o.ca_bundle;
  if (fo.ca_bundle.empty())
    if (const char* ca = std::getenv("KILN_CA_BUNDLE"); ca && *ca) fo.ca_bundle = ca;
  fo.timeout_s = o.timeout_s;
  fo.quiet = o.quiet;
  fo.max_bytes = size_t(1) << 30;  // resnet152 is 230 MiB
  fo.offline_hint = hint;
  aws::Sha256 h;
  fo.on_data = [&](const char* p, size_t n) { h.update(std::string_view(p, n)); };
  if (!o.quiet) std::fprintf(stderr, "downloading %s\n", w.url.c_str());
  std::string body = https_get(w.url, fo);
  std::string got = h.hex_digest();
  if (got.rfind(prefix, 0) != 0)
    fail(w.url + " (" + std::to_string(body.size()) + " bytes)", "SHA-256 starting with " + prefix, got.substr(0, 16) + "...",
         "the download is damaged or not torchvision's file; nothing was written");
  fs::create_directories(cache);
  write_file_atomic(cached, body);
  if (!o.quiet) std::fprintf(stderr, "saved %s (SHA-256 %s..., ok)\n", cached.c_str(), got.substr(0, 16).c_str());
  return cached;
}

}  // namespace kiln::data
