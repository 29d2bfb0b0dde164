// kiln image push against real registries started here: Debian's docker-registry without auth
// and behind basic auth, checked with an independent client (skopeo); ECR's credentials and
// repository from moto_server; and stand-in registries that misbehave (errors, wrong digests,
// redirects elsewhere, a Bearer-token flow) to see clean errors, retries and where credentials go.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>

#include "kiln/aws/client.h"
#include "kiln/aws/crypto.h"
#include "kiln/aws/ecr.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/image/archive.h"
#include "kiln/image/registry.h"
#include "kiln/io/gzip.h"
#include "kiln/io/tar.h"
#include "tests/image/registry_fixture.h"

using namespace kiln::image;
using kiln_test::quote;
using nlohmann::json;

namespace {

std::string kiln_push(const std::string& args, int* rc, const std::string& stdin_text = "") {
  std::string out;
  std::string cmd = (stdin_text.empty() ? "" : "printf '%s\\n' " + quote(stdin_text) + " | ") + kiln_test::kiln_bin() +
                    " image push " + args + " 2>&1";
  *rc = kiln_test::run_capture(cmd, out);
  return out;
}

json skopeo(const std::string& what, const std::string& ref, const std::string& creds = "") {
  std::string out;
  int rc = kiln_test::run_capture("skopeo inspect --tls-verify=false " + what + (creds.empty() ? "" : " --creds " + quote(creds)) +
                                      " docker://" + ref,
                                  out);
  REQUIRE_MESSAGE(rc == 0, "skopeo inspect failed: " << out);
  return json::parse(out);
}

Image small_image(const std::string& content) {
  Image img;
  std::string tar = kiln::io::encode_tar({{"f", false, content}});
  img.diff_ids.push_back(sha256_digest(tar));
  Blob l;
  l.data = kiln::io::gzip(tar);
  l.digest = sha256_digest(l.data);
  img.layers.push_back(l);
  img.config.data = json({{"architecture", "amd64"}, {"os", "linux"},
                          {"rootfs", {{"type", "layers"}, {"diff_ids", img.diff_ids}}}}).dump();
  img.config.digest = sha256_digest(img.config.data);
  return img;
}

}  // namespace

TEST_CASE("push to docker-registry: a Docker v2 manifest skopeo reads back, then every blob skipped") {
  kiln_test::Registry reg;
  Image img = read_docker_archive(kiln::read_file(kiln_test::built_image()), "kiln-image.tar");
  int rc = 0;
  std::string out = kiln_push(quote(kiln_test::built_image().string()) + " " + reg.host + "/kiln:test", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("3 blobs uploaded") != std::string::npos);
  CHECK(out.find(reg.host + "/kiln@" + img.manifest_digest()) != std::string::npos);

  json raw = skopeo("--raw", reg.host + "/kiln:test");
  CHECK(raw["mediaType"] == kManifestV2);
  CHECK(raw["schemaVersion"] == 2);
  CHECK(raw["config"]["digest"] == img.config.digest);
  CHECK(raw["config"]["mediaType"] == kConfigV1);
  REQUIRE(raw["layers"].size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(raw["layers"][i]["digest"] == img.layers[i].digest);
    CHECK(raw["layers"][i]["mediaType"] == kLayerTarGzip);
    CHECK(raw["layers"][i]["size"] == img.layers[i].data.size());
  }
  json config = skopeo("--config", reg.host + "/kiln:test");
  CHECK(config["rootfs"]["diff_ids"] == json(img.diff_ids));
  json info = skopeo("", reg.host + "/kiln:test");
  CHECK(info["Digest"] == img.manifest_digest());

  out = kiln_push(quote(kiln_test::built_image().string()) + " " + reg.host + "/kiln:again", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("0 blobs uploaded (0.0 MB), 3 already there") != std::string::npos);
  CHECK(skopeo("", reg.host + "/kiln:again")["Digest"] == img.manifest_digest());
}

TEST_CASE("push behind basic auth: refused without credentials, then --password-stdin and docker config.json") {
  kiln_test::Registry reg({"builder:s3cret pass"});
  std::string archive = quote(kiln_test::built_image().string());
  kiln_test::TempDir home;
  kiln_test::ScopedEnv env;
  env.set("HOME", home.path().string());
  env.unset("DOCKER_CONFIG");
  int rc = 0;
  std::string out = kiln_push(archive + " " + reg.host + "/kiln:auth", &rc);
  CHECK(rc != 0);
  CHECK(out.find("401") != std::string::npos);
  CHECK(out.find("--password-stdin") != std::string::npos);

  out = kiln_push(archive + " " + reg.host + "/kiln:auth --username builder --password-stdin", &rc, "wrong");
  CHECK(rc != 0);
  CHECK(out.find("401") != std::string::npos);

  out = kiln_push(archive + " " + reg.host + "/kiln:auth --username builder --password-stdin", &rc, "s3cret pass");
  INFO(out);
  CHECK(rc == 0);
  CHECK(skopeo("", reg.host + "/kiln:auth", "builder:s3cret pass")["RepoTags"] == json::array({"auth"}));

  std::filesystem::create_directories(home / ".docker");
  kiln_test::write_text(home / ".docker/config.json",
                        json({{"auths", {{reg.host, {{"auth", kiln::aws::base64_encode("builder:s3cret pass")}}}}}}).dump());
  out = kiln_push(archive + " " + reg.host + "/kiln:cfg", &rc);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("3 already there") != std::string::npos);
  CHECK(skopeo("", reg.host + "/kiln:cfg", "builder:s3cret pass")["RepoTags"].size() == 2);
}

TEST_CASE("push to an ECR name: credentials from ECR (moto), --create-repository, basic auth at the registry") {
  auto& moto = kiln_test::MotoServer::get();
  // moto's GetAuthorizationToken answers AWS:<account>-auth-token; the local registry accepts it.
  kiln_test::Registry reg({"AWS:123456789012-auth-token"});
  kiln_test::ScopedEnv env;
  env.set("AWS_ACCESS_KEY_ID", moto.key);
  env.set("AWS_SECRET_ACCESS_KEY", moto.secret);
  env.set("AWS_ENDPOINT_URL", moto.url);
  env.unset("AWS_ENDPOINT_URL_ECR");
  std::string ref = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln-ecr-test:1";
  std::string args = quote(kiln_test::built_image().string()) + " " + ref + " --registry-url http://" + reg.host;
  int rc = 0;
  std::string out = kiln_push(args, &rc);
  CHECK(rc != 0);
  CHECK(out.find("ECR repository kiln-ecr-test does not exist") != std::string::npos);
  CHECK(out.find("--create-repository") != std::string::npos);

  out = kiln_push(args + " --create-repository", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("created ECR repository kiln-ecr-test") != std::string::npos);
  CHECK(out.find("123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln-ecr-test@sha256:") != std::string::npos);
  kiln::aws::EcrClient ecr(kiln::aws::make_client_config("us-east-1", moto.url, ""));
  CHECK(ecr.repository_exists("kiln-ecr-test"));
  CHECK(skopeo("--raw", reg.host + "/kiln-ecr-test:1", "AWS:123456789012-auth-token")["mediaType"] == kManifestV2);
}

TEST_CASE("plain HTTP is refused to a registry that is not on a loopback address") {
  Image img = small_image("x");
  RegistryOptions o;
  o.registry_url = "http://192.0.2.1:5000";
  CHECK_THROWS_WITH_AS(push_image(img, parse_image_reference("reg.example.com/kiln:1"), o),
                       doctest::Contains("plain HTTP is only allowed to loopback addresses"), kiln::Error);
}

// A stand-in registry whose behaviour each test sets.
struct FakeRegistry {
  kiln_test::LocalServer srv;
  std::mutex mu;
  std::map<std::string, std::string> blobs;  // digest -> bytes
  std::vector<std::string> log;              // "METHOD path auth"
  std::string manifest;
  std::function<bool(const httplib::Request&, httplib::Response&)> hook;  // true: answered

  FakeRegistry() {
    auto rec = [this](const httplib::Request& q) {
      std::lock_guard<std::mutex> l(mu);
      log.push_back(q.method + " " + q.path + " " + q.get_header_value("Authorization"));
    };
    srv.svr.Get("/v2/", [=, this](const httplib::Request& q, httplib::Response& r) {
      rec(q);
      if (hook && hook(q, r)) return;
      r.status = 200;
    });
    // cpp-httplib answers HEAD with the GET handler (and no body).
    srv.svr.Get(R"(/v2/(.+)/blobs/(sha256:[0-9a-f]+))", [=, this](const httplib::Request& q, httplib::Response& r) {
      rec(q);
      if (hook && hook(q, r)) return;
      std::lock_guard<std::mutex> l(mu);
      r.status = blobs.count(q.matches[2]) ? 200 : 404;
    });
    srv.svr.Post(R"(/v2/(.+)/blobs/uploads/)", [=, this](const httplib::Request& q, httplib::Response& r) {
      rec(q);
      if (hook && hook(q, r)) return;
      r.status = 202;
      r.set_header("Location", "/upload/1?_state=x");
    });
    srv.svr.Put("/upload/1", [=, this](const httplib::Request& q, httplib::Response& r) {
      rec(q);
      if (hook && hook(q, r)) return;
      std::string d = q.get_param_value("digest");
      if (sha256_digest(q.body) != d) {
        r.status = 400;
        r.set_content(R"({"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch"}]})", "application/json");
        return;
      }
      std::lock_guard<std::mutex> l(mu);
      blobs[d] = q.body;
      r.status = 201;
      r.set_header("Docker-Content-Digest", d);
    });
    srv.svr.Put(R"(/v2/(.+)/manifests/(.+))", [=, this](const httplib::Request& q, httplib::Response& r) {
      rec(q);
      if (hook && hook(q, r)) return;
      std::lock_guard<std::mutex> l(mu);
      manifest = q.body;
      r.status = 201;
      r.set_header("Docker-Content-Digest", sha256_digest(q.body));
    });
    srv.start();
  }
  ImageReference ref() { return parse_image_reference("127.0.0.1:" + std::to_string(srv.port) + "/kiln:1"); }
  size_t count(const std::string& prefix) {
    std::lock_guard<std::mutex> l(mu);
    size_t n = 0;
    for (const auto& e : log) n += e.rfind(prefix, 0) == 0;
    return n;
  }
};

RegistryOptions quick() {
  RegistryOptions o;
  o.base_delay_s = 0.01;
  o.max_attempts = 3;
  o.docker_config = "/nonexistent/kiln-test/config.json";
  return o;
}

TEST_CASE("hostile registry: transient 503s are retried; persistent ones give up and nothing is reported pushed") {
  FakeRegistry fake;
  std::atomic<int> fails{2};
  fake.hook = [&](const httplib::Request& q, httplib::Response& r) {
    if (q.method == "POST" && fails-- > 0) {
      r.status = 503;
      return true;
    }
    return false;
  };
  Image img = small_image("retry me");
  std::vector<std::string> lines;
  RegistryOptions o = quick();
  o.log = [&](const std::string& s) { lines.push_back(s); };
  PushReport rep = push_image(img, fake.ref(), o);
  CHECK(rep.blobs_uploaded == 2);
  CHECK(rep.digest == img.manifest_digest());
  CHECK(fake.manifest == img.manifest());
  bool retried = false;
  for (const auto& l : lines) retried = retried || l.find("retrying upload of blob") != std::string::npos;
  CHECK(retried);

  FakeRegistry down;
  down.hook = [](const httplib::Request& q, httplib::Response& r) {
    if (q.method != "POST") return false;
    r.status = 500;
    return true;
  };
  CHECK_THROWS_WITH_AS(push_image(img, down.ref(), quick()), doctest::Contains("gave up after 3 attempts"), kiln::Error);
  CHECK(down.manifest.empty());
  CHECK(down.count("PUT /v2/") == 0);
}

TEST_CASE("hostile registry: a wrong Docker-Content-Digest for a blob or the manifest is an error") {
  Image img = small_image("digest");
  FakeRegistry blob_liar;
  blob_liar.hook = [](const httplib::Request& q, httplib::Response& r) {
    if (q.method != "PUT" || q.path != "/upload/1") return false;
    r.status = 201;
    r.set_header("Docker-Content-Digest", "sha256:" + std::string(64, '0'));
    return true;
  };
  CHECK_THROWS_WITH_AS(push_image(img, blob_liar.ref(), quick()), doctest::Contains("the digest the registry computed"),
                       kiln::Error);
  CHECK(blob_liar.count("PUT /v2/") == 0);  // no manifest after a bad blob

  FakeRegistry manifest_liar;
  manifest_liar.hook = [](const httplib::Request& q, httplib::Response& r) {
    if (q.method != "PUT" || q.path.find("/manifests/") == std::string::npos) return false;
    r.status = 201;
    r.set_header("Docker-Content-Digest", "sha256:" + std::string(64, '1'));
    return true;
  };
  CHECK_THROWS_WITH_AS(push_image(img, manifest_liar.ref(), quick()), doctest::Contains("the registry's Docker-Content-Digest: expected"),
                       kiln::Error);

  FakeRegistry head_liar;  // claims to have every blob, under another digest
  head_liar.hook = [](const httplib::Request& q, httplib::Response& r) {
    if (q.method != "HEAD") return false;
    r.status = 200;
    r.set_header("Docker-Content-Digest", "sha256:" + std::string(64, '2'));
    return true;
  };
  CHECK_THROWS_WITH_AS(push_image(img, head_liar.ref(), quick()), doctest::Contains("Docker-Content-Digest"), kiln::Error);
}

TEST_CASE("hostile registry: credentials never follow a redirect to another host; https->http is refused") {
  Image img = small_image("redirect");
  FakeRegistry elsewhere;  // the other host: where the upload is redirected
  FakeRegistry reg;
  reg.hook = [&](const httplib::Request& q, httplib::Response& r) {
    if (q.method == "GET" && q.path == "/v2/" && q.get_header_value("Authorization").empty()) {
      r.status = 401;
      r.set_header("WWW-Authenticate", "Basic realm=\"test\"");
      return true;
    }
    if (q.method == "POST") {
      r.status = 202;
      r.set_header("Location", elsewhere.srv.url() + "/upload/1?_state=y");
      return true;
    }
    return false;
  };
  RegistryOptions o = quick();
  o.username = "u";
  o.password = "p";
  PushReport rep = push_image(img, reg.ref(), o);
  CHECK(rep.blobs_uploaded == 2);
  std::string basic = "Basic " + kiln::aws::base64_encode("u:p");
  CHECK(reg.count("PUT /v2/kiln/manifests/1 " + basic) == 1);
  CHECK(elsewhere.count("PUT /upload/1") == 2);
  CHECK(elsewhere.count("PUT /upload/1 Basic") == 0);  // no credentials for the other host

  FakeRegistry downgrade;
  downgrade.hook = [](const httplib::Request& q, httplib::Response& r) {
    if (q.method != "POST") return false;
    r.status = 202;
    r.set_header("Location", "http://203.0.113.9/upload/1");
    return true;
  };
  CHECK_THROWS_WITH_AS(push_image(img, downgrade.ref(), quick()), doctest::Contains("an https:// URL"), kiln::Error);
}

TEST_CASE("Bearer-token challenge: the token service gets the credentials and the scope; the registry the token") {
  Image img = small_image("token");
  FakeRegistry reg;
  kiln_test::LocalServer auth;
  std::string seen_scope, seen_service, seen_auth;
  auth.svr.Get("/token", [&](const httplib::Request& q, httplib::Response& r) {
    seen_scope = q.get_param_value("scope");
    seen_service = q.get_param_value("service");
    seen_auth = q.get_header_value("Authorization");
    r.set_content(R"({"token":"tok-123","expires_in":300})", "application/json");
  });
  auth.start();
  reg.hook = [&](const httplib::Request& q, httplib::Response& r) {
    if (q.get_header_value("Authorization") == "Bearer tok-123") return false;
    r.status = 401;
    r.set_header("WWW-Authenticate",
                 "Bearer realm=\"" + auth.url() + "/token\",service=\"kiln-test-registry\",scope=\"registry:catalog:*\"");
    return true;
  };
  RegistryOptions o = quick();
  o.username = "u";
  o.password = "p";
  PushReport rep = push_image(img, reg.ref(), o);
  CHECK(rep.digest == img.manifest_digest());
  CHECK(seen_scope == "repository:kiln:pull,push");
  CHECK(seen_service == "kiln-test-registry");
  CHECK(seen_auth == "Basic " + kiln::aws::base64_encode("u:p"));
  CHECK(reg.count("PUT /v2/kiln/manifests/1 Bearer tok-123") == 1);
}
