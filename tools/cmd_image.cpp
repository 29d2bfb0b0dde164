// `kiln image`: kiln's container image without Docker.
//   build   assemble the image from this kiln and this machine's libraries -> docker-load archive
//   push    upload an archive to a registry (registry API v2; ECR, Bearer tokens, basic auth)
//   inspect print an archive's manifest, config digest and layers
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/aws/client.h"
#include "kiln/aws/ecr.h"
#include "kiln/image/archive.h"
#include "kiln/image/registry.h"
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
  a.flag("--mpi", "add Open MPI, sshd and an ssh key: what a training job on several instances needs");
  a.option("--ssh-key-dir", "DIR", "--mpi: the key pair every host trusts (id_ed25519, id_ed25519.pub); "
                                   "default: a fresh one (the build is then not reproducible)");
  if (!a.parse(argv)) return 0;
  auto t0 = std::chrono::steady_clock::now();
  kiln::image::BuildOptions o;
  o.binary = a.has("--binary") ? std::filesystem::path(a.get("--binary")) : kiln::cli::self_exe();
  o.tag = a.get("--tag");
  o.version = KILN_VERSION;
  o.epoch = source_date_epoch();
  o.mpi = a.flag_set("--mpi");
  std::string fresh_key_dir;
  if (o.mpi && a.has("--ssh-key-dir")) {
    o.ssh_key_dir = a.get("--ssh-key-dir");
  } else if (o.mpi) {
    char tmpl[] = "/tmp/kiln-image-key-XXXXXX";
    if (!mkdtemp(tmpl)) throw kiln::Error("mkdtemp failed");
    fresh_key_dir = tmpl;
    o.ssh_key_dir = fresh_key_dir;
    const std::string cmd = "ssh-keygen -q -t ed25519 -N '' -C kiln-image -f " + fresh_key_dir + "/id_ed25519 </dev/null";
    if (std::system(cmd.c_str()) != 0)
      throw kiln::Error("ssh-keygen could not make the image's key", "apt-get install openssh-client, or pass --ssh-key-dir");
  }
  struct RemoveKey {
    std::string dir;
    ~RemoveKey() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } remove_key{fresh_key_dir};
  kiln::image::BuildReport rep;
  kiln::image::Image img = kiln::image::build_image(o, &rep);
  std::string archive = kiln::image::encode_docker_archive(img, o.epoch);
  kiln::write_file_atomic(a.get("--output"), archive);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<const char*> names =
      o.mpi ? std::vector<const char*>{"runtime", "mpi", "kiln"} : std::vector<const char*>{"runtime", "kiln"};
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

int image_push(const std::vector<std::string>& argv) {
  Args a("kiln image push",
         "Push a docker-load archive to a registry with the registry HTTP API v2, as a Docker v2 schema-2\n"
         "manifest (what SageMaker accepts). Blobs the registry has are skipped. For\n"
         "ACCOUNT.dkr.ecr.REGION.amazonaws.com the credentials come from ECR (GetAuthorizationToken, signed\n"
         "with your AWS credentials); elsewhere from --username/--password-stdin or ~/.docker/config.json.\n"
         "Prints the pushed image as REPO@sha256:..., which `kiln sagemaker run --image` takes.");
  a.positional("ARCHIVE", "a `kiln image build` (or `docker save`) archive");
  a.positional("REFERENCE", "REGISTRY/REPOSITORY:TAG, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln:0.1.0");
  a.flag("--create-repository", "ECR: create the repository when it does not exist");
  a.option("--username", "USER", "registry user (the password is read from standard input: --password-stdin)");
  a.flag("--password-stdin", "read the registry password from the first line of standard input");
  a.option("--docker-config", "FILE", "docker config with \"auths\" (default $DOCKER_CONFIG/config.json, ~/.docker/config.json)");
  a.option("--registry-url", "URL", "send the registry traffic here instead of https://REGISTRY (a proxy or mirror)");
  a.option("--attempts", "N", "tries per request on dropped connections, 5xx and 429", "5");
  a.option("--region", "REGION", "AWS region for ECR (default: the registry host's)");
  a.option("--endpoint-url", "URL", "ECR API endpoint (default: AWS's; AWS_ENDPOINT_URL_ECR)");
  a.option("--profile", "NAME", "AWS profile for ECR");
  if (!a.parse(argv)) return 0;
  const std::string path = a.positionals()[0];
  kiln::image::ImageReference ref = kiln::image::parse_image_reference(a.positionals()[1]);
  kiln::image::Image img = kiln::image::read_docker_archive(kiln::read_file(path), path);

  kiln::image::RegistryOptions o;
  o.registry_url = a.get_or("--registry-url", "");
  o.docker_config = a.get_or("--docker-config", "");
  o.max_attempts = static_cast<int>(a.get_int("--attempts"));
  if (o.max_attempts < 1 || o.max_attempts > 20) kiln::fail("--attempts", "1 to 20", std::to_string(o.max_attempts));
  o.log = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  if (a.has("--username")) o.username = a.get("--username");
  if (a.flag_set("--password-stdin")) {
    if (!a.has("--username")) kiln::fail("--password-stdin", "--username as well", "no user");
    char buf[4096];
    if (!std::fgets(buf, sizeof buf, stdin)) kiln::fail("--password-stdin", "a password on standard input", "nothing");
    o.password = buf;
    while (!o.password.empty() && (o.password.back() == '\n' || o.password.back() == '\r')) o.password.pop_back();
  } else if (a.has("--username")) {
    kiln::fail("--username", "--password-stdin as well (passwords never go on the command line)", "no password");
  }

  auto ecr = kiln::aws::parse_ecr_image_uri(a.positionals()[1]);
  if (ecr && o.username.empty()) {
    kiln::aws::ClientConfig cfg = kiln::aws::make_client_config(a.get_or("--region", ecr->region),
                                                                a.get_or("--endpoint-url", ""), a.get_or("--profile", ""));
    kiln::aws::EcrClient client(cfg);
    if (!client.repository_exists(ecr->repository)) {
      if (!a.flag_set("--create-repository"))
        throw kiln::Error("ECR repository " + ecr->repository + " does not exist in account " + ecr->account +
                              ", region " + ecr->region,
                          "add --create-repository (or: aws ecr create-repository --repository-name " + ecr->repository + ")");
      client.create_repository(ecr->repository);
      std::printf("created ECR repository %s\n", ecr->repository.c_str());
    }
    kiln::aws::EcrAuthorization auth = client.get_authorization_token();
    o.username = auth.username;
    o.password = auth.password;
  }

  std::printf("pushing %s (%zu layers, %.1f MB) to %s\n", path.c_str(), img.layers.size(),
              static_cast<double>(img.compressed_size()) / 1e6, ref.str().c_str());
  std::fflush(stdout);
  auto t0 = std::chrono::steady_clock::now();
  kiln::image::PushReport rep = kiln::image::push_image(img, ref, o);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("pushed %s: %d blobs uploaded (%.1f MB), %d already there, in %.1f s\n", ref.str().c_str(),
              rep.blobs_uploaded, static_cast<double>(rep.bytes_uploaded) / 1e6, rep.blobs_skipped, s);
  std::printf("%s\n", rep.reference.c_str());
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
  if (argv[0] == "push") return image_push(rest);
  throw kiln::Error("unknown image command '" + argv[0] + "'", "one of: build push inspect");
}

}  // namespace

KILN_COMMAND("image", "build kiln's container image without Docker and push it to a registry (build, push, inspect)",
             run_image);
