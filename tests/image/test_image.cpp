// kiln image build and the docker-load archive: reproducible digests, what the image holds (the
// loader, every library it resolves, the CA bundle), an independent reader (skopeo), damaged and
// `docker save`-style archives, image references.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/image/archive.h"
#include "kiln/image/registry.h"
#include "kiln/image/rootfs.h"
#include "kiln/io/gzip.h"
#include "kiln/io/tar.h"
#include "tests/image/registry_fixture.h"

using namespace kiln::image;
using kiln_test::quote;
namespace fs = std::filesystem;

TEST_CASE("kiln image build: the same build gives byte-identical archives, whatever the clock") {
  kiln_test::TempDir d;
  std::string out;
  REQUIRE(kiln_test::run_capture(kiln_test::kiln_bin() + " image build --binary " + quote(kiln_test::kiln_bin()) +
                                     " --output " + quote((d / "a.tar").string()) + " 2>&1",
                                 out) == 0);
  CHECK(out.find("manifest sha256:") != std::string::npos);
  sleep(1);  // a second later: a timestamp leaking in would change the bytes
  REQUIRE(kiln_test::run_capture(kiln_test::kiln_bin() + " image build --binary " + quote(kiln_test::kiln_bin()) +
                                     " --output " + quote((d / "b.tar").string()) + " 2>&1",
                                 out) == 0);
  CHECK(kiln::read_file(d / "a.tar") == kiln::read_file(d / "b.tar"));
  // SOURCE_DATE_EPOCH moves every timestamp, so the digests change with it.
  REQUIRE(kiln_test::run_capture("SOURCE_DATE_EPOCH=1700000000 " + kiln_test::kiln_bin() + " image build --binary " +
                                     quote(kiln_test::kiln_bin()) + " --output " + quote((d / "c.tar").string()) + " 2>&1",
                                 out) == 0);
  Image a = read_docker_archive(kiln::read_file(d / "a.tar"), "a.tar");
  Image c = read_docker_archive(kiln::read_file(d / "c.tar"), "c.tar");
  CHECK(a.layers[0].digest != c.layers[0].digest);
  CHECK(nlohmann::json::parse(c.config.data)["created"] == "2023-11-14T22:13:20Z");
}

TEST_CASE("the image holds the program, the loader and every library it resolves, and nothing else") {
  Image img = read_docker_archive(kiln::read_file(kiln_test::built_image()), "kiln-image.tar");
  REQUIRE(img.layers.size() == 2);
  std::map<std::string, kiln::io::TarEntry> files;
  for (const Blob& l : img.layers)
    for (auto& e : kiln::io::parse_tar(kiln::io::gunzip(l.data, "layer", size_t(1) << 30), "layer", true))
      files["/" + e.name] = e;
  // What the host's loader resolves, followed through symlinks, is in the image.
  std::vector<std::string> libs = loader_dependencies(kiln_test::kiln_bin());
  REQUIRE(libs.size() >= 5);
  for (const std::string& lib : libs) {
    CAPTURE(lib);
    std::string p = lib;
    for (int hops = 0; hops < 10; ++hops) {
      // resolve each component as the image's symlinks say
      std::string resolved, rest = p.substr(1);
      bool changed = false;
      while (!rest.empty()) {
        size_t s = rest.find('/');
        std::string comp = rest.substr(0, s);
        rest = s == std::string::npos ? "" : rest.substr(s + 1);
        std::string cur = resolved + "/" + comp;
        auto it = files.find(cur);
        REQUIRE_MESSAGE(it != files.end(), "missing in the image: " << cur);
        if (it->second.is_symlink) {
          std::string t = it->second.link_target;
          p = (t[0] == '/' ? t : resolved + "/" + t) + (rest.empty() ? "" : "/" + rest);
          changed = true;
          break;
        }
        resolved = cur;
      }
      if (!changed) {
        CHECK_FALSE(files[resolved].is_dir);
        CHECK(files[resolved].data == kiln::read_file(fs::canonical(lib)));
        break;
      }
    }
  }
  CHECK(files.count("/usr/local/bin/kiln"));
  CHECK((files["/usr/local/bin/kiln"].mode & 0111) != 0);
  CHECK(files["/usr/local/bin/kiln"].data == kiln::read_file(kiln_test::kiln_bin()));
  CHECK(files.count("/etc/ssl/certs/ca-certificates.crt"));
  CHECK(files["/tmp"].mode == 01777);
  // No shell, no compiler, no Python.
  for (const char* absent : {"/bin/sh", "/usr/bin/sh", "/usr/bin/python3", "/usr/bin/g++", "/usr/bin/bash"})
    CHECK(files.count(absent) == 0);
  nlohmann::json cfg = nlohmann::json::parse(img.config.data);
  CHECK(cfg["architecture"] == "amd64");
  CHECK(cfg["os"] == "linux");
  CHECK(cfg["config"]["Entrypoint"] == nlohmann::json::array({"/usr/local/bin/kiln"}));
  CHECK(cfg["config"]["ExposedPorts"].contains("8080/tcp"));
  CHECK(cfg["rootfs"]["diff_ids"].size() == 2);
}

TEST_CASE("skopeo reads the archive: platform, layers (diff_ids) and labels") {
  Image img = read_docker_archive(kiln::read_file(kiln_test::built_image()), "kiln-image.tar");
  std::string out;
  REQUIRE(kiln_test::run_capture("skopeo inspect docker-archive:" + kiln_test::built_image().string(), out) == 0);
  nlohmann::json j = nlohmann::json::parse(out);
  CHECK(j["Architecture"] == "amd64");
  CHECK(j["Os"] == "linux");
  CHECK(j["Layers"] == nlohmann::json(img.diff_ids));
  CHECK(j["Labels"]["org.opencontainers.image.title"] == "kiln");
}

TEST_CASE("read_docker_archive: docker-save layout (uncompressed layers) is accepted; damage is named") {
  std::string layer = kiln::io::encode_tar({{"hello", false, "world"}});
  std::string diff = sha256_digest(layer);
  nlohmann::json cfg = {{"architecture", "amd64"}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", {diff}}}}};
  auto archive = [&](const std::string& layer_bytes, const std::string& config) {
    return kiln::io::encode_tar({{"abc/layer.tar", false, layer_bytes},
                                 {"cfg.json", false, config},
                                 {"manifest.json", false,
                                  R"([{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["abc/layer.tar"]}])"}});
  };
  Image img = read_docker_archive(archive(layer, cfg.dump()), "saved.tar");
  REQUIRE(img.layers.size() == 1);
  CHECK(kiln::io::looks_like_gzip(img.layers[0].data));
  CHECK(img.diff_ids[0] == diff);
  CHECK(img.repo_tags == std::vector<std::string>{"x:1"});
  CHECK(nlohmann::json::parse(img.manifest())["mediaType"] == kManifestV2);

  std::string changed = layer;
  changed[600] ^= 1;  // one bit of the layer
  CHECK_THROWS_WITH_AS(read_docker_archive(archive(changed, cfg.dump()), "bad.tar"),
                       doctest::Contains("bad.tar: layer 1 (abc/layer.tar): expected content with the config's diff_id"),
                       kiln::Error);
  std::string gz = kiln::io::gzip(layer);
  CHECK_THROWS_WITH_AS(read_docker_archive(archive(gz.substr(0, gz.size() - 9), cfg.dump()), "cut.tar"),
                       doctest::Contains("cut.tar: layer 1"), kiln::Error);
  CHECK_THROWS_WITH_AS(read_docker_archive(kiln::io::encode_tar({{"x", false, "y"}}), "other.tar"),
                       doctest::Contains("manifest.json"), kiln::Error);
}

TEST_CASE("image references: registry, repository, tag, digest; Docker Hub names; bad ones named") {
  ImageReference r = parse_image_reference("127.0.0.1:5000/team/kiln:0.1");
  CHECK(r.registry == "127.0.0.1:5000");
  CHECK(r.repository == "team/kiln");
  CHECK(r.tag == "0.1");
  r = parse_image_reference("123456789012.dkr.ecr.eu-west-1.amazonaws.com/kiln");
  CHECK(r.registry == "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
  CHECK(r.tag == "latest");
  r = parse_image_reference("kiln");
  CHECK(r.registry == "registry-1.docker.io");
  CHECK(r.repository == "library/kiln");
  r = parse_image_reference("localhost/kiln@sha256:" + std::string(64, 'a'));
  CHECK(r.registry == "localhost");
  CHECK(r.digest == "sha256:" + std::string(64, 'a'));
  CHECK(r.tag.empty());
  CHECK_THROWS_WITH_AS(parse_image_reference("127.0.0.1:5000/Kiln:1"), doctest::Contains("repository 'Kiln'"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_image_reference("127.0.0.1:5000/kiln:a/b"), doctest::Contains("REGISTRY/REPOSITORY"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_image_reference("h.io/kiln@sha256:12"), doctest::Contains("digest"), kiln::Error);
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("127.9.9.9"));
  CHECK(is_loopback_host("[::1]"));
  CHECK(is_loopback_host("LOCALHOST"));
  CHECK_FALSE(is_loopback_host("128.0.0.1"));
  CHECK_FALSE(is_loopback_host("localhost.evil.com"));
}

TEST_CASE("loader_dependencies: a static or foreign file is refused with its name") {
  kiln_test::TempDir d;
  kiln::write_file_atomic(d / "notelf", std::string("#!/bin/sh\n"));
  CHECK_THROWS_WITH_AS(loader_dependencies(d / "notelf"), doctest::Contains("notelf: expected an ELF executable"),
                       kiln::Error);
}
