// Images, their build and their docker-load archive (see archive.h).
#include "kiln/image/archive.h"

#include <sys/stat.h>

#include <cstdlib>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "kiln/aws/crypto.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/image/mpi_layer.h"
#include "kiln/image/rootfs.h"
#include "kiln/io/gzip.h"
#include "kiln/io/tar.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace kiln::image {
namespace {

std::string rfc3339(int64_t epoch) {
  std::time_t t = static_cast<std::time_t>(epoch);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string hex_of(const std::string& digest) { return digest.substr(7); }

bool valid_digest(const std::string& d) {
  if (d.size() != 71 || d.compare(0, 7, "sha256:") != 0) return false;
  for (size_t i = 7; i < d.size(); ++i)
    if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f'))) return false;
  return true;
}

// Directories the dynamic loader searches without being told (Debian's x86-64 glibc).
const std::set<std::string> kSystemLibDirs = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib",
                                              "/usr/lib", "/lib64", "/usr/lib64"};

// sha256 of a gzip stream's uncompressed bytes, inflated piecewise: a layer of any size is
// checked without holding it unpacked in memory.
std::string gunzip_digest(std::string_view gz, const std::string& what) {
  aws::Sha256 h;
  io::gunzip_stream(gz, what, uint64_t(1) << 40, [&](const char* p, size_t n) { h.update(std::string_view(p, n)); });
  return "sha256:" + h.hex_digest();
}

}  // namespace

std::string sha256_digest(std::string_view data) { return "sha256:" + aws::sha256_hex(data); }

std::string Image::manifest() const {
  json m;
  m["schemaVersion"] = 2;
  m["mediaType"] = kManifestV2;
  m["config"] = {{"mediaType", kConfigV1}, {"size", config.data.size()}, {"digest", config.digest}};
  json layers_json = json::array();
  for (const Blob& l : layers)
    layers_json.push_back({{"mediaType", kLayerTarGzip}, {"size", l.data.size()}, {"digest", l.digest}});
  m["layers"] = layers_json;
  return m.dump(3) + "\n";  // the layout `docker manifest inspect` shows; any fixed layout would do
}

std::string Image::manifest_digest() const { return sha256_digest(manifest()); }

uint64_t Image::compressed_size() const {
  uint64_t n = config.data.size();
  for (const Blob& l : layers) n += l.data.size();
  return n;
}

Image build_image(const BuildOptions& opts, BuildReport* report) {
  KILN_ASSERT(!opts.binary.empty(), "build_image needs the binary");
  std::vector<std::string> libs = loader_dependencies(opts.binary);

  Rootfs runtime;
  std::set<std::string> extra_dirs;
  for (const std::string& lib : libs) {
    runtime.add_host_path(lib);
    std::string dir = fs::path(lib).parent_path().string();
    if (!kSystemLibDirs.count(dir)) extra_dirs.insert(dir);
  }
  // Verified HTTPS (S3, pretrained weights): Debian's bundle, and OpenSSL's default file, which
  // on Debian is a link to it.
  const char* bundle = "/etc/ssl/certs/ca-certificates.crt";
  struct stat st;
  if (stat(bundle, &st) != 0)
    throw Error(std::string("kiln image build: ") + bundle + " is missing: the image would trust no server",
                "apt-get install ca-certificates");
  runtime.add_host_path(bundle);
  if (lstat("/usr/lib/ssl/cert.pem", &st) == 0) runtime.add_host_path("/usr/lib/ssl/cert.pem");
  // SageMaker writes /etc/hosts entries for the other hosts (algo-2, ...): look there first.
  runtime.add_bytes("/etc/nsswitch.conf", "hosts: files dns\n");
  // With MPI, sshd runs orted through root's shell, and wants its privilege separation user.
  runtime.add_bytes("/etc/passwd", opts.mpi ? "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n"
                                            : "root:x:0:0:root:/root:/usr/sbin/nologin\n");
  runtime.add_bytes("/etc/group", opts.mpi ? "root:x:0:\nnogroup:x:65534:\n" : "root:x:0:\n");
  runtime.add_dir("/tmp", 01777);
  runtime.add_dir("/root", 0700);

  Rootfs program;
  program.add_file("/usr/local/bin/kiln", opts.binary, 0755);
  Rootfs mpi;
  std::vector<std::string> mpi_libs;
  if (opts.mpi) mpi = mpi_rootfs(opts.ssh_key_dir, &mpi_libs);

  Image img;
  if (!opts.tag.empty()) img.repo_tags.push_back(opts.tag);
  std::vector<std::string> created_by = {"kiln image build: runtime (dynamic loader, " +
                                             std::to_string(libs.size()) + " shared libraries, CA certificates)",
                                         "kiln image build: /usr/local/bin/kiln " + opts.version};
  std::vector<const Rootfs*> layers = {&runtime, &program};
  if (opts.mpi) {
    layers.insert(layers.begin() + 1, &mpi);
    created_by.insert(created_by.begin() + 1, "kiln image build --mpi: Open MPI, OpenSSH, /bin/sh, " +
                                                  std::to_string(mpi_libs.size()) + " shared libraries, the ssh key");
  }
  int idx = 0;
  for (const Rootfs* fsys : layers) {
    std::string tar = fsys->tar(opts.epoch);
    img.diff_ids.push_back(sha256_digest(tar));
    Blob b;
    b.data = io::gzip(tar, 9);
    b.digest = sha256_digest(b.data);
    img.layers.push_back(std::move(b));
    if (report) {
      report->layer_unpacked_bytes.push_back(fsys->content_bytes());
      report->layer_entries.push_back(fsys->size());
    }
    ++idx;
  }
  if (report) report->libraries = libs;

  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  if (!extra_dirs.empty()) {
    std::string p;
    for (const auto& d : extra_dirs) p += (p.empty() ? "" : ":") + d;
    env.push_back("LD_LIBRARY_PATH=" + p);
  }
  json cfg;
  cfg["architecture"] = "amd64";
  cfg["os"] = "linux";
  cfg["created"] = rfc3339(opts.epoch);
  cfg["config"] = {{"Entrypoint", {"/usr/local/bin/kiln"}},
                   {"Env", env},
                   {"ExposedPorts", {{"8080/tcp", json::object()}}},
                   {"WorkingDir", "/"},
                   {"Labels",
                    {{"org.opencontainers.image.title", "kiln"},
                     {"org.opencontainers.image.version", opts.version}}}};
  cfg["rootfs"] = {{"type", "layers"}, {"diff_ids", img.diff_ids}};
  json hist = json::array();
  for (const auto& c : created_by) hist.push_back({{"created", rfc3339(opts.epoch)}, {"created_by", c}});
  cfg["history"] = hist;
  img.config.data = cfg.dump();
  img.config.digest = sha256_digest(img.config.data);
  return img;
}

std::string encode_docker_archive(const Image& img, int64_t epoch) {
  std::vector<io::TarEntry> entries;
  auto dir = [&](const std::string& n) {
    io::TarEntry e;
    e.name = n;
    e.is_dir = true;
    e.mtime = epoch;
    entries.push_back(e);
  };
  auto file = [&](const std::string& n, const std::string& data) {
    io::TarEntry e;
    e.name = n;
    e.data = data;
    e.mtime = epoch;
    entries.push_back(std::move(e));
  };
  dir("blobs");
  dir("blobs/sha256");
  std::map<std::string, const std::string*> blobs;  // sorted by digest; a layer repeated is stored once
  blobs[img.config.digest] = &img.config.data;
  for (const Blob& l : img.layers) blobs[l.digest] = &l.data;
  for (const auto& [d, data] : blobs) file("blobs/sha256/" + hex_of(d), *data);
  json layers = json::array();
  for (const Blob& l : img.layers) layers.push_back("blobs/sha256/" + hex_of(l.digest));
  json m = json::array({{{"Config", "blobs/sha256/" + hex_of(img.config.digest)},
                         {"RepoTags", img.repo_tags},
                         {"Layers", layers}}});
  file("manifest.json", m.dump() + "\n");
  return io::encode_tar(entries);
}

Image read_docker_archive(std::string_view bytes, const std::string& what) {
  std::vector<io::TarEntry> entries = io::parse_tar(bytes, what);
  std::map<std::string, const io::TarEntry*> by_name;
  for (const auto& e : entries)
    if (!e.is_dir) by_name[e.name] = &e;
  auto member = [&](const std::string& name, const std::string& why) -> const std::string& {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail(what, "a member " + name + " (" + why + ")", "none",
                                  "is this a `kiln image build` or `docker save` archive?");
    return it->second->data;
  };
  json m;
  try {
    m = json::parse(member("manifest.json", "the docker-load manifest"));
  } catch (const json::exception& e) {
    fail(what + ": manifest.json", "JSON", e.what());
  }
  if (!m.is_array() || m.size() != 1)
    fail(what + ": manifest.json", "a list of exactly one image", m.is_array() ? std::to_string(m.size()) + " images" : "another JSON value");
  const json& im = m[0];
  if (!im.contains("Config") || !im["Config"].is_string() || !im.contains("Layers") || !im["Layers"].is_array())
    fail(what + ": manifest.json", "\"Config\" (a string) and \"Layers\" (a list)", im.dump().substr(0, 200));
  Image img;
  img.config.data = member(im["Config"].get<std::string>(), "the image config named in manifest.json");
  img.config.digest = sha256_digest(img.config.data);
  if (im.contains("RepoTags") && im["RepoTags"].is_array())
    for (const auto& t : im["RepoTags"])
      if (t.is_string()) img.repo_tags.push_back(t.get<std::string>());
  json cfg;
  try {
    cfg = json::parse(img.config.data);
  } catch (const json::exception& e) {
    fail(what + ": image config", "JSON", e.what());
  }
  std::vector<std::string> want;
  if (cfg.contains("rootfs") && cfg["rootfs"].contains("diff_ids") && cfg["rootfs"]["diff_ids"].is_array())
    for (const auto& d : cfg["rootfs"]["diff_ids"])
      if (d.is_string()) want.push_back(d.get<std::string>());
  if (want.size() != im["Layers"].size())
    fail(what + ": image config rootfs.diff_ids", std::to_string(im["Layers"].size()) + " digests (one per layer)",
         std::to_string(want.size()));
  for (size_t i = 0; i < im["Layers"].size(); ++i) {
    if (!im["Layers"][i].is_string()) fail(what + ": manifest.json Layers", "file names", im["Layers"][i].dump());
    const std::string& data = member(im["Layers"][i].get<std::string>(), "layer " + std::to_string(i + 1));
    Blob b;
    std::string diff;
    if (io::looks_like_gzip(data)) {
      diff = gunzip_digest(data, what + ": layer " + std::to_string(i + 1));
      b.data = data;
    } else {
      diff = sha256_digest(data);
      b.data = io::gzip(data, 6);
    }
    if (!valid_digest(want[i]) || diff != want[i])
      fail(what + ": layer " + std::to_string(i + 1) + " (" + im["Layers"][i].get<std::string>() + ")",
           "content with the config's diff_id " + want[i], diff, "the archive is damaged");
    b.digest = sha256_digest(b.data);
    img.diff_ids.push_back(diff);
    img.layers.push_back(std::move(b));
  }
  return img;
}

}  // namespace kiln::image
