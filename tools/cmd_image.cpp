// `kiln image`: kiln's container image without Docker.
//   build   assemble the image from this kiln and this machine's libraries -> docker-load archive
//   push    upload an archive to a registry (registry API v2; ECR, Bearer tokens, basic auth)
//   inspect print an archive's manifest, config digest and layers
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "image/archive.h"
#include "tools/args.h"
#include "tools/command.h"
#include "tools/process.h"

namespace {

using kiln::cli::Args;

std::string mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

int64_t source_date_epoch() {
  const char* s = std::getenv("SOURCE_DATE_EPOCH");
  if (!s || !*s) return 0;
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (*end != '\0' || v < 0 || v > (1LL << 33))
    kiln::fail("SOURCE_DATE_EPOCH", "seconds since 1970 (a non-negative integer)", std::string("'") + s + "'");
  return v;
}

int image_build(const std::vector<std::string>& argv) {
  Args a("kiln image build",
         "Assemble kiln's linux/amd64 container image from this kiln binary and the shared libraries the\n"
         "dynamic loader resolves for it, with no Docker engine and no base image. The output is a\n"
         "`docker load` archive; the same build gives the same digests (timestamps: SOURCE_DATE_EPOCH, else 0).");
  a.option("--output", "FILE", "archive to write (atomically)", "kiln-image.tar");
  a.option("--tag", "NAME:TAG", "the archive's RepoTags entry", std::string("kiln:") + KILN_VERSION);
  a.option("--binary", "PATH", "the kiln executable to put in (default: this one)");
  if (!a.parse(argv)) return 0;
  auto t0 = std::chrono::steady_clock::now();
  kiln::image::BuildOptions o;
  o.binary = a.has("--binary") ? std::filesystem::path(a.get("--binary")) : kiln::cli::self_exe();
  o.tag = a.get("--tag");
  o.version = KILN_VERSION;
  o.epoch = source_date_epoch();
  kiln::image::BuildReport rep;
  kiln::image::Image img = kiln::image::build_image(o, &rep);
  std::string archive = kiln::image::encode_docker_archive(img, o.epoch);
  kiln::write_file_atomic(a.get("--output"), archive);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const char* names[] = {"runtime", "kiln"};
  std::printf("image %s: %zu shared libraries (the loader included)\n", o.tag.c_str(), rep.libraries.size());
  for (size_t i = 0; i < img.layers.size(); ++i)
    std::printf("  layer %zu (%s): %s, %zu entries, %s unpacked, %s compressed\n", i + 1, names[i],
                img.layers[i].digest.c_str(), rep.layer_entries[i], mb(rep.layer_unpacked_bytes[i]).c_str(),
                mb(img.layers[i].data.size()).c_str());
  std::printf("  config %s\n  manifest %s (%s)\n", img.config.digest.c_str(), img.manifest_digest().c_str(),
              kiln::image::kManifestV2);
  std::printf("wrote %s (%s) in %.1f s\n", a.get("--output").c_str(), mb(archive.size()).c_str(), s);
  return 0;
}

int image_inspect(const std::vector<std::string>& argv) {
  Args a("kiln image inspect", "Print the Docker v2 manifest of a docker-load archive, and its digest.");
  a.positional("ARCHIVE", "a `kiln image build` or `docker save` archive");
  if (!a.parse(argv)) return 0;
  std::string path = a.positionals()[0];
  kiln::image::Image img = kiln::image::read_docker_archive(kiln::read_file(path), path);
  std::printf("%s", img.manifest().c_str());
  std::printf("digest %s\n", img.manifest_digest().c_str());
  for (const auto& t : img.repo_tags) std::printf("tag %s\n", t.c_str());
  return 0;
}

int run_image(const std::vector<std::string>& argv) {
  static const char* usage =
      "usage: kiln image <build|push|inspect> [options]\n"
      "  build    assemble kiln's image (no Docker needed) into a docker-load archive\n"
      "  push     push an archive to a registry: REGISTRY/REPO:TAG (ECR, Docker Hub, any v2 registry)\n"
      "  inspect  print an archive's manifest and digest\n"
      "`kiln image <sub> --help` lists a command's options.\n";
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(usage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "build") return image_build(rest);
  if (argv[0] == "inspect") return image_inspect(rest);
  throw kiln::Error("unknown image command '" + argv[0] + "'", "one of: build push inspect");
}

}  // namespace

KILN_COMMAND("image", "build kiln's container image without Docker and push it to a registry (build, push, inspect)",
             run_image);
