// Container images in memory, as a registry stores them: gzip'ed layer blobs, a config blob and
// the Docker v2 schema-2 manifest that names them (SageMaker takes this manifest type, not OCI's).
// build_image() assembles kiln's image from this machine's files without a Docker engine or a
// base image, reproducibly: the same inputs give byte-identical layers, config and manifest.
// On disk an image is a `docker load` archive (manifest.json beside the blobs), which `docker
// save` also writes; read_docker_archive() reads either, so `kiln image push` can push both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

inline constexpr const char* kManifestV2 = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kConfigV1 = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kLayerTarGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

struct Blob {
  std::string digest;  // "sha256:<64 hex>"
  std::string data;
};

struct Image {
  Blob config;                        // the image config JSON
  std::vector<Blob> layers;           // gzip'ed tar layers, bottom first
  std::vector<std::string> diff_ids;  // sha256 of each uncompressed layer (config rootfs.diff_ids)
  std::vector<std::string> repo_tags; // "kiln:0.4.0"
  std::string manifest() const;       // Docker v2 schema 2, compact JSON
  std::string manifest_digest() const;
  uint64_t compressed_size() const;   // config + layers
};

std::string sha256_digest(std::string_view data);  // "sha256:<hex>"

struct BuildOptions {
  std::filesystem::path binary;  // the kiln executable that goes in (normally this one)
  std::string tag;               // "kiln:VERSION"
  std::string version;           // the image's org.opencontainers.image.version label
  int64_t epoch = 0;             // every timestamp (SOURCE_DATE_EPOCH); 0 is 1970-01-01
  // A layer for jobs on several instances (image/mpi_layer.h): Open MPI, sshd, ssh, /bin/sh and
  // the key pair in ssh_key_dir; root's shell becomes /bin/sh (sshd runs orted through it).
  bool mpi = false;
  std::filesystem::path ssh_key_dir;
};

struct BuildReport {
  std::vector<std::string> libraries;  // what the loader resolved, in load order
  std::vector<uint64_t> layer_unpacked_bytes;
  std::vector<size_t> layer_entries;
};

// Two layers: the runtime (loader, shared libraries, CA certificates, /etc/nsswitch.conf, /tmp)
// and the program (/usr/local/bin/kiln), so rebuilding kiln changes only the small top layer;
// with `mpi`, the MPI layer goes between them.
// Entrypoint ["/usr/local/bin/kiln"] in exec form: `docker run IMAGE train` runs `kiln train`.
Image build_image(const BuildOptions& opts, BuildReport* report = nullptr);

// The docker-load archive: blobs/sha256/<hex> for the config and each layer, and manifest.json.
std::string encode_docker_archive(const Image& img, int64_t epoch = 0);
// Reads a docker-load archive (this one's or `docker save`'s: uncompressed layers are gzip'ed
// here). Checks that the config's diff_ids are the layers' digests. Exactly one image.
Image read_docker_archive(std::string_view bytes, const std::string& what);

}  // namespace kiln::image
