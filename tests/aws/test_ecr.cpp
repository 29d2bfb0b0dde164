// ECR's control API against moto_server (signatures checked): the registry token, repositories,
// and what an image's manifest is (the media type SageMaker insists on); ECR image references.
#include <doctest/doctest.h>

#include "kiln/aws/crypto.h"
#include "kiln/aws/ecr.h"
#include "kiln/core/error.h"
#include "moto_fixture.h"

using namespace kiln::aws;
using kiln_test::MotoServer;

namespace {

ClientConfig ecr_config() {
  MotoServer& m = MotoServer::get();
  ClientConfig cfg;
  cfg.region = "us-east-1";
  cfg.endpoint_url = m.url;
  cfg.credentials = CredentialChain::fixed({m.key, m.secret, "", {}, "moto"});
  cfg.retry.base_delay_s = 0.01;
  return cfg;
}

std::string put_image(const std::string& repo, const std::string& tag, const std::string& media_type) {
  MotoServer& m = MotoServer::get();
  std::string out;
  int rc = kiln_test::run_capture("python3 " + kiln_test::helper_script() + " ecr-put-image " + m.url + " " +
                                      m.key + " " + m.secret + " " + repo + " " + tag + " " + media_type,
                                  out);
  REQUIRE_MESSAGE(rc == 0, "ecr-put-image failed: " << out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

TEST_CASE("ECR image references: account, region, repository, tag or digest; other hosts are not ECR") {
  auto r = parse_ecr_image_uri("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/kiln:0.1.0");
  REQUIRE(r);
  CHECK(r->account == "123456789012");
  CHECK(r->region == "eu-west-1");
  CHECK(r->repository == "team/kiln");
  CHECK(r->tag == "0.1.0");
  CHECK(r->digest.empty());
  CHECK(r->registry_host() == "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
  auto d = parse_ecr_image_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln@sha256:" + std::string(64, 'a'));
  REQUIRE(d);
  CHECK(d->tag.empty());
  CHECK(d->digest == "sha256:" + std::string(64, 'a'));
  CHECK(parse_ecr_image_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln")->tag == "latest");
  CHECK_FALSE(parse_ecr_image_uri("registry.example.com/kiln:1"));
  CHECK_FALSE(parse_ecr_image_uri("127.0.0.1:5000/kiln:1"));
  CHECK_THROWS_AS(parse_ecr_image_uri("12345.dkr.ecr.us-east-1.amazonaws.com/kiln:1"), kiln::Error);
  CHECK_THROWS_AS(parse_ecr_image_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/"), kiln::Error);
  CHECK_THROWS_AS(parse_ecr_image_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln@md5:00"), kiln::Error);
}

TEST_CASE("ECR: authorization token, repository creation (idempotent), image media type") {
  EcrClient ecr(ecr_config());
  EcrAuthorization a = ecr.get_authorization_token();
  CHECK(a.username == "AWS");
  CHECK_FALSE(a.password.empty());
  CHECK(a.proxy_endpoint.rfind("https://", 0) == 0);
  CHECK(a.expires_at > 0);  // moto answers a fixed date in 2015

  CHECK_FALSE(ecr.repository_exists("kiln-ecr-test"));
  CHECK(ecr.create_repository("kiln-ecr-test"));
  CHECK_FALSE(ecr.create_repository("kiln-ecr-test"));  // already there: not an error
  CHECK(ecr.repository_exists("kiln-ecr-test"));

  CHECK_FALSE(ecr.describe_image("kiln-ecr-test", "0.1.0"));  // no such tag
  CHECK_FALSE(ecr.describe_image("no-such-repository", "0.1.0"));
  const std::string v2 = "application/vnd.docker.distribution.manifest.v2+json";
  const std::string oci = "application/vnd.oci.image.manifest.v1+json";
  std::string digest = put_image("kiln-ecr-test", "0.1.0", v2);
  put_image("kiln-ecr-test", "oci", oci);
  auto img = ecr.describe_image("kiln-ecr-test", "0.1.0");
  REQUIRE(img);
  CHECK(img->digest == digest);
  CHECK(img->manifest_media_type == v2);
  auto by_digest = ecr.describe_image("kiln-ecr-test", digest);
  REQUIRE(by_digest);
  CHECK(by_digest->manifest_media_type == v2);
  auto o = ecr.describe_image("kiln-ecr-test", "oci");
  REQUIRE(o);
  CHECK(o->manifest_media_type == oci);  // what `kiln sagemaker check` must flag
}
