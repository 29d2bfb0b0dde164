// The credential chain in the AWS CLI's order, with temporary files and a fake metadata server
// on 127.0.0.1; region resolution; secrets never in descriptions; presigned URL shape; XML.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "kiln/aws/client.h"
#include "kiln/aws/credentials.h"
#include "kiln/aws/iam.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/xml.h"
#include "test_util.h"

using namespace kiln::aws;
using kiln_test::ScopedEnv;
using kiln_test::TempDir;
using kiln_test::write_text;

TEST_CASE("environment credentials come first") {
  ScopedEnv env;
  TempDir d;
  write_text(d / "credentials", "[default]\naws_access_key_id = AKIAFILE00000000\naws_secret_access_key = filesecret\n");
  env.set("AWS_SHARED_CREDENTIALS_FILE", (d / "credentials").string());
  env.set("AWS_ACCESS_KEY_ID", "AKIAENV000000000");
  env.set("AWS_SECRET_ACCESS_KEY", "envsecret");
  env.set("AWS_SESSION_TOKEN", "envtoken");
  Credentials c = CredentialChain().get();
  CHECK(c.access_key_id == "AKIAENV000000000");
  CHECK(c.session_token == "envtoken");
  CHECK(c.source == "environment");
}

TEST_CASE("half-set environment credentials are an error, not silently skipped") {
  ScopedEnv env;
  env.set("AWS_ACCESS_KEY_ID", "AKIAENV000000000");
  CHECK_THROWS_WITH_AS(CredentialChain().get(), doctest::Contains("AWS_SECRET_ACCESS_KEY"), kiln::Error);
}

TEST_CASE("profiles: credentials file beats config file; AWS_PROFILE and --profile select") {
  ScopedEnv env;
  TempDir d;
  write_text(d / "credentials",
             "[default]\naws_access_key_id = AKIADEFAULT00000\naws_secret_access_key = s1\n"
             "# comment\n[dev]\naws_access_key_id=AKIADEV000000000\naws_secret_access_key=s2\naws_session_token = t2\n");
  write_text(d / "config",
             "[default]\nregion = eu-central-1\n[profile dev]\nregion = us-west-2\n"
             "aws_access_key_id = AKIACONFIGDEV000\naws_secret_access_key = s3\n"
             "[profile cfgonly]\nregion = ap-south-1\naws_access_key_id = AKIACFGONLY00000\naws_secret_access_key = s4\n");
  env.set("AWS_SHARED_CREDENTIALS_FILE", (d / "credentials").string());
  env.set("AWS_CONFIG_FILE", (d / "config").string());

  CHECK(CredentialChain().get().access_key_id == "AKIADEFAULT00000");
  CHECK(resolve_region("", {}) == "eu-central-1");

  env.set("AWS_PROFILE", "dev");
  Credentials dev = CredentialChain().get();
  CHECK(dev.access_key_id == "AKIADEV000000000");  // credentials file wins over config
  CHECK(dev.session_token == "t2");
  CHECK(resolve_region("", {}) == "us-west-2");

  ProfileOptions po;
  po.profile = "cfgonly";
  CHECK(CredentialChain(po).get().access_key_id == "AKIACFGONLY00000");
  CHECK(resolve_region("", po) == "ap-south-1");
  CHECK(resolve_region("sa-east-1", po) == "sa-east-1");
  env.set("AWS_DEFAULT_REGION", "ca-central-1");
  CHECK(resolve_region("", po) == "ca-central-1");
  env.set("AWS_REGION", "eu-north-1");
  CHECK(resolve_region("", po) == "eu-north-1");

  // An explicit --profile negates environment credentials (as the AWS CLI does).
  env.set("AWS_ACCESS_KEY_ID", "AKIAENV000000000");
  env.set("AWS_SECRET_ACCESS_KEY", "envsecret");
  CHECK(CredentialChain(po).get().access_key_id == "AKIACFGONLY00000");
  CHECK(CredentialChain().get().access_key_id == "AKIAENV000000000");
}

TEST_CASE("a profile with a key id but no secret names the file and the missing key") {
  ScopedEnv env;
  TempDir d;
  write_text(d / "credentials", "[default]\naws_access_key_id = AKIAONLYID000000\n");
  env.set("AWS_SHARED_CREDENTIALS_FILE", (d / "credentials").string());
  CHECK_THROWS_WITH_AS(CredentialChain().get(), doctest::Contains("aws_secret_access_key"), kiln::Error);
}

TEST_CASE("no credentials anywhere: the error lists where it looked") {
  ScopedEnv env;
  CHECK_THROWS_WITH_AS(CredentialChain().get(), doctest::Contains("instance metadata"), kiln::Error);
}

TEST_CASE("container credentials: FULL_URI with an authorization token file") {
  ScopedEnv env;
  TempDir d;
  kiln_test::LocalServer s;
  s.svr.Get("/v2/credentials/abc", [&](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") != "Bearer tok") {
      res.status = 401;
      return;
    }
    res.set_content(R"({"AccessKeyId":"ASIACONTAINER000","SecretAccessKey":"cs","Token":"ct","Expiration":"2099-01-01T00:00:00Z"})",
                    "application/json");
  });
  s.start();
  write_text(d / "token", "Bearer tok\n");
  env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", s.url() + "/v2/credentials/abc");
  env.set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", (d / "token").string());
  Credentials c = CredentialChain().get();
  CHECK(c.access_key_id == "ASIACONTAINER000");
  CHECK(c.session_token == "ct");
  REQUIRE(c.expiration.has_value());
}

// A fake EC2 instance metadata service, IMDSv2 only: every GET must carry the PUT's token.
struct FakeImds {
  kiln_test::LocalServer s;
  std::atomic<int> token_puts{0}, credential_gets{0}, unauthorized{0};
  std::string expiration;
  explicit FakeImds(std::string exp) : expiration(std::move(exp)) {
    s.svr.Put("/latest/api/token", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds").empty()) {
        res.status = 400;
        return;
      }
      ++token_puts;
      res.set_content("TOKEN123", "text/plain");
    });
    auto authed = [this](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("X-aws-ec2-metadata-token") != "TOKEN123") {
        ++unauthorized;
        res.status = 401;
        return false;
      }
      return true;
    };
    s.svr.Get("/latest/meta-data/iam/security-credentials/", [=](const httplib::Request& req, httplib::Response& res) {
      if (authed(req, res)) res.set_content("NotebookRole", "text/plain");
    });
    s.svr.Get("/latest/meta-data/iam/security-credentials/NotebookRole",
              [this, authed](const httplib::Request& req, httplib::Response& res) {
                if (!authed(req, res)) return;
                int n = ++credential_gets;
                nlohmann::json j = {{"Code", "Success"},
                                    {"AccessKeyId", "ASIAIMDS" + std::to_string(n) + "0000000"},
                                    {"SecretAccessKey", "imds-secret"},
                                    {"Token", "imds-token-" + std::to_string(n)},
                                    {"Expiration", expiration}};
                res.set_content(j.dump(), "application/json");
              });
    s.start();
  }
};

TEST_CASE("instance metadata: IMDSv2 token, role, credentials; cached until close to expiry") {
  ScopedEnv env;
  FakeImds imds("2099-01-01T00:00:00Z");
  env.unset("AWS_EC2_METADATA_DISABLED");
  env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.s.url());
  CredentialChain chain;
  Credentials c = chain.get();
  CHECK(c.access_key_id == "ASIAIMDS10000000");
  CHECK(c.session_token == "imds-token-1");
  CHECK(c.source.find("NotebookRole") != std::string::npos);
  chain.get();
  CHECK(imds.credential_gets == 1);  // far from expiry: cached
  CHECK(imds.unauthorized == 0);
  chain.invalidate();
  CHECK(chain.get().session_token == "imds-token-2");
}

TEST_CASE("instance metadata: credentials within the refresh margin of expiry are fetched again") {
  ScopedEnv env;
  // expires in 2 minutes: inside the 5-minute margin, so every get() refreshes
  auto soon = Clock::now() + std::chrono::minutes(2);
  std::time_t t = Clock::to_time_t(soon);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  FakeImds imds(buf);
  env.unset("AWS_EC2_METADATA_DISABLED");
  env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.s.url());
  CredentialChain chain;
  CHECK(chain.get().session_token == "imds-token-1");
  CHECK(chain.get().session_token == "imds-token-2");
  CHECK(imds.token_puts == 2);
  ProfileOptions po;
  po.refresh_margin = std::chrono::seconds(30);
  CredentialChain relaxed(po);
  relaxed.get();
  relaxed.get();
  CHECK(imds.credential_gets == 3);  // 2 minutes left > 30 s margin: cached
}

TEST_CASE("the chain order: profile beats container beats instance metadata") {
  ScopedEnv env;
  FakeImds imds("2099-01-01T00:00:00Z");
  env.unset("AWS_EC2_METADATA_DISABLED");
  env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.s.url());
  kiln_test::LocalServer container;
  container.svr.Get("/c", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"AccessKeyId":"ASIACONTAINER000","SecretAccessKey":"cs","Token":"ct"})", "application/json");
  });
  container.start();
  env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", container.url() + "/c");
  CHECK(CredentialChain().get().access_key_id == "ASIACONTAINER000");
  TempDir d;
  write_text(d / "credentials", "[default]\naws_access_key_id = AKIAFILE00000000\naws_secret_access_key = filesecret\n");
  env.set("AWS_SHARED_CREDENTIALS_FILE", (d / "credentials").string());
  CHECK(CredentialChain().get().access_key_id == "AKIAFILE00000000");
  CHECK(imds.token_puts == 0);
}

TEST_CASE("descriptions and masks never contain the secret or the token") {
  Credentials c{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SESSIONTOKENVALUE", {}, "environment"};
  std::string d = c.describe();
  CHECK(d.find("wJalr") == std::string::npos);
  CHECK(d.find("SESSIONTOKEN") == std::string::npos);
  CHECK(d.find("AKIA************MPLE") != std::string::npos);
  CHECK(mask_secret("abc") == "****");

  HttpRequest req;
  req.method = "POST";
  req.url = Url::parse("https://api.sagemaker.us-east-1.amazonaws.com");
  req.headers = {{"Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20150830/us-east-1/sagemaker/aws4_request, SignedHeaders=host, Signature=abcdef0123"},
                 {"X-Amz-Security-Token", "SESSIONTOKENVALUE"}};
  std::string text = describe_request(req);
  CHECK(text.find("abcdef0123") == std::string::npos);
  CHECK(text.find("SESSIONTOKENVALUE") == std::string::npos);
  CHECK(text.find("AKIAIOSFODNN7EXAMPLE") == std::string::npos);
  CHECK(text.find("Signature=****") != std::string::npos);
}

TEST_CASE("endpoint and region come from the command line, then the environment") {
  ScopedEnv env;
  env.set("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
  env.set("AWS_REGION", "eu-west-3");
  ClientConfig c = make_client_config("", "", "");
  CHECK(c.endpoint_url == "http://127.0.0.1:1");
  CHECK(c.region == "eu-west-3");
  ClientConfig c2 = make_client_config("us-east-2", "http://127.0.0.1:2", "");
  CHECK(c2.endpoint_url == "http://127.0.0.1:2");
  CHECK(c2.region == "us-east-2");
  env.set("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3");
  CHECK(endpoint_override(c2, "s3") == "http://127.0.0.1:3");
  CHECK(endpoint_override(c2, "iam") == "http://127.0.0.1:2");
}

TEST_CASE("S3 addressing: virtual-hosted for AWS, path-style for dotted buckets, presigned URLs") {
  ScopedEnv env;
  ClientConfig cfg;
  cfg.region = "eu-west-1";
  cfg.credentials = CredentialChain::fixed({"AKIDEXAMPLE", "secret", "", {}, "test"});
  S3Client s3(cfg);
  std::string url = s3.presign_get("my-bucket", "dir/a b.txt", 600);
  CHECK(url.rfind("https://my-bucket.s3.eu-west-1.amazonaws.com/dir/a%20b.txt?", 0) == 0);
  CHECK(url.find("X-Amz-Expires=600") != std::string::npos);
  CHECK(url.find("X-Amz-Signature=") != std::string::npos);
  CHECK(url.find("X-Amz-Credential=AKIDEXAMPLE%2F") != std::string::npos);
  std::string dotted = s3.presign_get("my.bucket", "k", 60);
  CHECK(dotted.rfind("https://s3.eu-west-1.amazonaws.com/my.bucket/k?", 0) == 0);
  S3Options po;
  po.addressing = AddressingStyle::path;
  CHECK(S3Client(cfg, po).presign_get("my-bucket", "k", 60).rfind("https://s3.eu-west-1.amazonaws.com/my-bucket/k?", 0) == 0);
  cfg.endpoint_url = "http://127.0.0.1:9000";
  CHECK(S3Client(cfg).presign_get("my-bucket", "k", 60).rfind("http://127.0.0.1:9000/my-bucket/k?", 0) == 0);
  S3Options vo;
  vo.addressing = AddressingStyle::virtual_hosted;
  cfg.endpoint_url = "http://localhost:9000";
  CHECK(S3Client(cfg, vo).presign_get("my-bucket", "k", 60).rfind("http://my-bucket.localhost:9000/k?", 0) == 0);
  CHECK(S3Uri::parse("s3://b/some/key").key == "some/key");
  CHECK_THROWS_AS(S3Uri::parse("s3:///x"), kiln::Error);
}

TEST_CASE("XML: entities, CDATA, namespaces, nesting") {
  XmlNode x = parse_xml(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Contents><Key>a&amp;b &lt;c&gt; &#233;</Key><Size>12</Size></Contents><Contents><Key><![CDATA[x<y]]></Key></Contents>"
      "<IsTruncated>false</IsTruncated><!-- c --><x:Other xmlns:x=\"u\" a='>'/></ListBucketResult>",
      "test");
  CHECK(x.name == "ListBucketResult");
  auto items = x.all("Contents");
  REQUIRE(items.size() == 2);
  CHECK(items[0]->child_text("Key") == "a&b <c> \xC3\xA9");
  CHECK(items[1]->child_text("Key") == "x<y");
  CHECK(x.child("Other") != nullptr);
  CHECK_THROWS_AS(parse_xml("<a><b></a>", "bad"), kiln::Error);
  CHECK_THROWS_AS(parse_xml("<a>&bogus;</a>", "bad"), kiln::Error);
}

TEST_CASE("IAM policy reading: trust policies and grants") {
  CHECK(trusts_sagemaker(R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]})"));
  CHECK(trusts_sagemaker(R"({"Statement":{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com","sagemaker.amazonaws.com"]},"Action":["sts:AssumeRole"]}})"));
  CHECK_FALSE(trusts_sagemaker(R"({"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]})"));
  PolicyGrants g = policy_grants(R"({"Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"*"}]})");
  CHECK(g.s3);
  CHECK_FALSE(g.sagemaker);
  CHECK(policy_grants(R"({"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]})").sagemaker);
  CHECK(role_name_from_arn("arn:aws:iam::123456789012:role/service-role/MyRole") == "MyRole");
  CHECK(account_from_arn("arn:aws:iam::123456789012:role/MyRole") == "123456789012");
}


TEST_CASE("credentials documents that do not parse are described, never quoted") {
  // A truncated body holds the key id and the start of the secret: neither may reach an error
  // (which ends up in /opt/ml/output/failure and logs).
  const std::string key = "ASIALEAKED000001", secret = "leaked/secret+value";
  for (const std::string& body :
       {R"({"AccessKeyId":")" + key + R"(","SecretAccessKey":")" + secret,          // truncated
        R"({"Code":"Failure ")" + key + R"(","AccessKeyId":")" + key + "\"}",        // odd Code
        R"({"AccessKeyId":")" + key + R"(","SecretAccessKey":")" + secret + R"(","Expiration":")" + secret + "\"}",
        "[\"" + key + "\"]"}) {
    CAPTURE(body);
    try {
      parse_credentials_json(body, "container credentials");
      FAIL("accepted");
    } catch (const kiln::Error& e) {
      std::string m = e.full_message();
      CHECK(m.find("container credentials") != std::string::npos);
      CHECK(m.find(key) == std::string::npos);
      CHECK(m.find("leaked") == std::string::npos);
    }
  }
  // an Expiration outside system_clock's range was a signed overflow (found by fuzz_aws_config)
  CHECK_THROWS_WITH_AS(parse_credentials_json(R"({"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"1049-01-01T00:00:00Z"})", "imds"),
                       doctest::Contains("a time between the years 1970 and 2200, found year 1049"), kiln::Error);
  CHECK_THROWS_WITH_AS(parse_credentials_json(R"({"Code":"AssumeRoleUnauthorizedAccess"})", "imds"),
                       doctest::Contains("found Code \"AssumeRoleUnauthorizedAccess\""), kiln::Error);
}

TEST_CASE("container credentials: an invalid body from the endpoint leaves the secret out of the error") {
  ScopedEnv env;
  kiln_test::LocalServer s;
  s.svr.Get("/creds", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"AccessKeyId":"ASIALEAKED000002","SecretAccessKey":"leakedsecret)", "application/json");
  });
  s.start();
  env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", s.url() + "/creds");
  try {
    CredentialChain().get();
    FAIL("accepted");
  } catch (const kiln::Error& e) {
    std::string m = e.full_message();
    CHECK(m.find("bytes that do not parse as JSON") != std::string::npos);
    CHECK(m.find("ASIALEAKED") == std::string::npos);
    CHECK(m.find("leakedsecret") == std::string::npos);
  }
}

TEST_CASE("AWS_CONTAINER_CREDENTIALS_FULL_URI: https anywhere, http only to loopback and the ECS/EKS agents") {
  for (std::string ok : {"https://creds.example.com/x", "http://127.0.0.1:8080/c", "http://127.9.9.9/c", "http://localhost/c",
                         "http://169.254.170.2/v2/c", "http://169.254.170.23/v1/c", "http://[fd00:ec2::23]/c", "http://[::1]:9/c"}) {
    CAPTURE(ok);
    CHECK(container_credentials_uri_allowed(Url::parse(ok)));
  }
  for (std::string bad : {"http://10.0.0.5/c", "http://169.254.170.3/c", "http://128.0.0.1/c", "http://127.0.0.1.evil.com/c",
                          "http://localhost.evil.com/c", "http://evil.example/c", "http://[fd00:ec2::24]/c"}) {
    CAPTURE(bad);
    CHECK_FALSE(container_credentials_uri_allowed(Url::parse(bad)));
  }
  // Refused before any request: the token never leaves (no DNS lookup of the name either).
  ScopedEnv env;
  env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://creds.invalid/v2/credentials");
  env.set("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer secret-token");
  try {
    credentials_from_container({});
    FAIL("accepted");
  } catch (const kiln::Error& e) {
    std::string m = e.full_message();
    CHECK(m.find("AWS_CONTAINER_CREDENTIALS_FULL_URI (http://creds.invalid)") != std::string::npos);
    CHECK(m.find("travel in clear") != std::string::npos);
    CHECK(m.find("secret-token") == std::string::npos);
  }
}
