// AWS's SigV4 test suite (tests/data/sigv4/v4, from awslabs/aws-c-auth), one doctest case per
// vector: header signing and query signing each must reproduce the canonical request, the
// string to sign and the signature byte for byte. Plus S3 rules and presigned URLs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "kiln/aws/crypto.h"
#include "kiln/aws/sigv4.h"
#include "kiln/core/atomic_file.h"

namespace fs = std::filesystem;
using namespace kiln::aws;

static fs::path suite_dir() {
  const char* root = std::getenv("KILN_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "KILN_SOURCE_ROOT is not set (run through meson test)");
  return fs::path(root) / "tests" / "data" / "sigv4" / "v4";
}

// request.txt: "METHOD TARGET HTTP/1.1", headers (indented lines continue the previous one),
// a blank line, the body.
static SignableRequest parse_request(const std::string& text, std::string& body) {
  SignableRequest req;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  auto sp = line.find(' ');
  auto http = line.rfind(" HTTP/");
  req.method = line.substr(0, sp);
  std::string target = line.substr(sp + 1, http - sp - 1);
  std::string path = target.substr(0, target.find('?'));
  req.path = uri_decode(path);
  if (auto q = target.find('?'); q != std::string::npos) {
    std::string qs = target.substr(q + 1);
    size_t i = 0;
    while (i <= qs.size() && !qs.empty()) {
      size_t j = qs.find('&', i);
      if (j == std::string::npos) j = qs.size();
      std::string kv = qs.substr(i, j - i);
      auto eq = kv.find('=');
      req.query.emplace_back(uri_decode(kv.substr(0, eq)),
                             eq == std::string::npos ? "" : uri_decode(kv.substr(eq + 1)));
      i = j + 1;
    }
  }
  bool in_body = false;
  body.clear();
  while (std::getline(in, line)) {
    if (in_body) {
      body += (body.empty() ? "" : "\n") + line;
      continue;
    }
    if (line.empty()) {
      in_body = true;
      continue;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !req.headers.empty()) {
      req.headers.back().value += "\n" + line;
      continue;
    }
    auto colon = line.find(':');
    req.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
  }
  return req;
}

static void check_vector(const std::string& name) {
  fs::path dir = suite_dir() / name;
  REQUIRE_MESSAGE(fs::is_directory(dir), "missing test vector " << dir.string());
  auto ctx = nlohmann::json::parse(kiln::read_file(dir / "context.json"));
  Credentials creds;
  creds.access_key_id = ctx["credentials"]["access_key_id"];
  creds.secret_access_key = ctx["credentials"]["secret_access_key"];
  if (ctx["credentials"].contains("token")) creds.session_token = ctx["credentials"]["token"];
  SigningConfig cfg;
  cfg.region = ctx["region"];
  cfg.service = ctx["service"];
  std::tm tm{};
  std::istringstream ts(ctx["timestamp"].get<std::string>());
  ts >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  cfg.time = timegm(&tm);
  cfg.normalize_path = ctx["normalize"];
  cfg.omit_session_token = ctx.value("omit_session_token", false);
  cfg.expires_s = ctx["expiration_in_seconds"];
  bool sign_body = ctx["sign_body"];

  std::string body;
  SignableRequest base = parse_request(kiln::read_file(dir / "request.txt"), body);
  base.payload_hash = sha256_hex(body);

  SUBCASE("header signing") {
    SignableRequest req = base;
    SigningConfig hc = cfg;
    hc.add_content_sha256 = sign_body;
    SigningResult r = sign_headers(req, creds, hc);
    CHECK(r.canonical_request == kiln::read_file(dir / "header-canonical-request.txt"));
    CHECK(r.string_to_sign == kiln::read_file(dir / "header-string-to-sign.txt"));
    CHECK(r.signature == kiln::read_file(dir / "header-signature.txt"));
    std::string signed_req = kiln::read_file(dir / "header-signed-request.txt");
    std::string auth = req.header("Authorization");
    CHECK_MESSAGE(signed_req.find("Authorization:" + auth + "\n") != std::string::npos,
                  "Authorization header '" << auth << "' not in header-signed-request.txt");
    if (!creds.session_token.empty())
      CHECK(req.header("X-Amz-Security-Token") == creds.session_token);
  }
  SUBCASE("query signing") {
    SignableRequest req = base;
    SigningResult r = presign_query(req, creds, cfg);
    CHECK(r.canonical_request == kiln::read_file(dir / "query-canonical-request.txt"));
    CHECK(r.string_to_sign == kiln::read_file(dir / "query-string-to-sign.txt"));
    CHECK(r.signature == kiln::read_file(dir / "query-signature.txt"));
    std::string signed_req = kiln::read_file(dir / "query-signed-request.txt");
    CHECK(signed_req.find("X-Amz-Signature=" + r.signature) != std::string::npos);
    CHECK(req.query.back().first == "X-Amz-Signature");
  }
}

static const char* const kVectors[] = {
    "get-header-key-duplicate", "get-header-value-multiline", "get-header-value-order",
    "get-header-value-trim", "get-relative-normalized", "get-relative-relative-normalized",
    "get-relative-relative-unnormalized", "get-relative-unnormalized",
    "get-slash-dot-slash-normalized", "get-slash-dot-slash-unnormalized", "get-slash-normalized",
    "get-slash-pointless-dot-normalized", "get-slash-pointless-dot-unnormalized",
    "get-slash-unnormalized", "get-slashes-normalized", "get-slashes-unnormalized",
    "get-space-normalized", "get-space-unnormalized", "get-unreserved", "get-utf8", "get-vanilla",
    "get-vanilla-empty-query-key", "get-vanilla-query", "get-vanilla-query-order-encoded",
    "get-vanilla-query-order-key-case", "get-vanilla-query-unreserved", "get-vanilla-utf8-query",
    "get-vanilla-with-session-token", "post-header-key-case", "post-header-key-sort",
    "post-header-value-case", "post-sts-header-after", "post-sts-header-before", "post-vanilla",
    "post-vanilla-empty-query-value", "post-vanilla-query", "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters"};

TEST_CASE("sigv4 suite: every vector folder has a test case here") {
  std::set<std::string> listed(std::begin(kVectors), std::end(kVectors)), found;
  for (const auto& e : fs::directory_iterator(suite_dir()))
    if (e.is_directory()) found.insert(e.path().filename().string());
  CHECK(found == listed);
  CHECK(listed.size() == 38);
}

#define SIGV4_VECTOR(NAME) \
  TEST_CASE("sigv4 suite: " NAME) { check_vector(NAME); }
SIGV4_VECTOR("get-header-key-duplicate")
SIGV4_VECTOR("get-header-value-multiline")
SIGV4_VECTOR("get-header-value-order")
SIGV4_VECTOR("get-header-value-trim")
SIGV4_VECTOR("get-relative-normalized")
SIGV4_VECTOR("get-relative-relative-normalized")
SIGV4_VECTOR("get-relative-relative-unnormalized")
SIGV4_VECTOR("get-relative-unnormalized")
SIGV4_VECTOR("get-slash-dot-slash-normalized")
SIGV4_VECTOR("get-slash-dot-slash-unnormalized")
SIGV4_VECTOR("get-slash-normalized")
SIGV4_VECTOR("get-slash-pointless-dot-normalized")
SIGV4_VECTOR("get-slash-pointless-dot-unnormalized")
SIGV4_VECTOR("get-slash-unnormalized")
SIGV4_VECTOR("get-slashes-normalized")
SIGV4_VECTOR("get-slashes-unnormalized")
SIGV4_VECTOR("get-space-normalized")
SIGV4_VECTOR("get-space-unnormalized")
SIGV4_VECTOR("get-unreserved")
SIGV4_VECTOR("get-utf8")
SIGV4_VECTOR("get-vanilla")
SIGV4_VECTOR("get-vanilla-empty-query-key")
SIGV4_VECTOR("get-vanilla-query")
SIGV4_VECTOR("get-vanilla-query-order-encoded")
SIGV4_VECTOR("get-vanilla-query-order-key-case")
SIGV4_VECTOR("get-vanilla-query-unreserved")
SIGV4_VECTOR("get-vanilla-utf8-query")
SIGV4_VECTOR("get-vanilla-with-session-token")
SIGV4_VECTOR("post-header-key-case")
SIGV4_VECTOR("post-header-key-sort")
SIGV4_VECTOR("post-header-value-case")
SIGV4_VECTOR("post-sts-header-after")
SIGV4_VECTOR("post-sts-header-before")
SIGV4_VECTOR("post-vanilla")
SIGV4_VECTOR("post-vanilla-empty-query-value")
SIGV4_VECTOR("post-vanilla-query")
SIGV4_VECTOR("post-x-www-form-urlencoded")
SIGV4_VECTOR("post-x-www-form-urlencoded-parameters")

TEST_CASE("S3 rules: keys are encoded once and never normalized") {
  CHECK(canonical_path("/bucket/a//b/../c d+e%", false) == "/bucket/a//b/../c%20d%2Be%25");
  CHECK(canonical_path("/a/./b/../c//", true) == "/a/c/");
  CHECK(uri_encode("ሴ/x", true) == "%E1%88%B4/x");
  CHECK(uri_encode("a/b", false) == "a%2Fb");
}

TEST_CASE("S3 header signing sends x-amz-content-sha256, UNSIGNED-PAYLOAD included") {
  Credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "", {}, "test"};
  SigningConfig cfg;
  cfg.region = "us-east-1";
  cfg.service = "s3";
  cfg.time = 1440938160;
  cfg.normalize_path = false;
  cfg.add_content_sha256 = true;
  SignableRequest req;
  req.method = "GET";
  req.path = "/test.txt";
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}};
  req.payload_hash = kUnsignedPayload;
  SigningResult r = sign_headers(req, creds, cfg);
  CHECK(req.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD");
  CHECK(r.canonical_request.ends_with("\nhost;range;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"));
}

// AWS's documented S3 example (GET Object with Range, "Examples: Signature Calculations in
// AWS Signature Version 4", 24 May 2013): the signature is published.
TEST_CASE("S3 documented example: GET object with range") {
  Credentials creds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", {}, "test"};
  SigningConfig cfg;
  cfg.region = "us-east-1";
  cfg.service = "s3";
  cfg.time = 1369353600;  // 20130524T000000Z
  cfg.normalize_path = false;
  cfg.add_content_sha256 = true;
  SignableRequest req;
  req.method = "GET";
  req.path = "/test.txt";
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}};
  SigningResult r = sign_headers(req, creds, cfg);
  CHECK(r.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("S3 documented example: presigned GET URL") {
  Credentials creds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", {}, "test"};
  SigningConfig cfg;
  cfg.region = "us-east-1";
  cfg.service = "s3";
  cfg.time = 1369353600;
  cfg.normalize_path = false;
  cfg.expires_s = 86400;
  SignableRequest req;
  req.method = "GET";
  req.path = "/test.txt";
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"}};
  req.payload_hash = kUnsignedPayload;
  SigningResult r = presign_query(req, creds, cfg);
  CHECK(r.signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}
