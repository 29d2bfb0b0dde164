// Amazon ECR's control API (see ecr.h).
#include "kiln/aws/ecr.h"

#include <cctype>

#include "kiln/aws/crypto.h"
#include "kiln/aws/json_rpc.h"
#include "kiln/core/error.h"

namespace kiln::aws {

using nlohmann::json;

namespace {

const JsonService kEcr{"ECR", "ecr", "ecr", "AmazonEC2ContainerRegistry_V20150921", "api.ecr"};

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::string EcrImageRef::registry_host() const {
  return account + ".dkr.ecr." + region + ".amazonaws.com";
}

std::optional<EcrImageRef> parse_ecr_image_uri(const std::string& uri) {
  size_t slash = uri.find('/');
  std::string host = uri.substr(0, slash);
  const std::string mid = ".dkr.ecr.", tail = ".amazonaws.com";
  size_t m = host.find(mid);
  if (m == std::string::npos || host.size() < tail.size() ||
      host.compare(host.size() - tail.size(), tail.size(), tail) != 0)
    return std::nullopt;
  EcrImageRef r;
  r.account = host.substr(0, m);
  r.region = host.substr(m + mid.size(), host.size() - tail.size() - m - mid.size());
  if (r.account.size() != 12 || !all_digits(r.account) || r.region.empty())
    fail("ECR image " + uri, "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG] with a 12-digit account", host);
  if (slash == std::string::npos || slash + 1 == uri.size())
    fail("ECR image " + uri, "a repository after the registry host", "none",
         "e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/kiln:0.1.0");
  std::string rest = uri.substr(slash + 1);
  if (size_t at = rest.find('@'); at != std::string::npos) {
    r.digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (r.digest.rfind("sha256:", 0) != 0 || r.digest.size() != 7 + 64)
      fail("ECR image " + uri, "a digest of the form sha256:<64 hex digits>", r.digest);
  } else if (size_t colon = rest.rfind(':'); colon != std::string::npos) {
    r.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (r.tag.empty()) fail("ECR image " + uri, "a tag after ':'", "an empty tag");
  } else {
    r.tag = "latest";
  }
  if (rest.empty()) fail("ECR image " + uri, "a repository name", "none");
  r.repository = rest;
  return r;
}

EcrClient::EcrClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

EcrAuthorization EcrClient::get_authorization_token() {
  json r = json_rpc_call(cfg_, kEcr, "GetAuthorizationToken", json::object());
  const json& list = r.contains("authorizationData") ? r["authorizationData"] : json();
  if (!list.is_array() || list.empty() || !list[0].is_object() || !list[0].contains("authorizationToken") ||
      !list[0]["authorizationToken"].is_string())
    fail("ECR GetAuthorizationToken response", "authorizationData[0].authorizationToken", "none");
  const json& d = list[0];
  std::string decoded = base64_decode(d["authorizationToken"].get<std::string>());
  size_t colon = decoded.find(':');
  if (colon == std::string::npos)
    fail("ECR authorization token", "base64 of USER:PASSWORD", "no ':' after decoding");
  EcrAuthorization a;
  a.username = decoded.substr(0, colon);
  a.password = decoded.substr(colon + 1);
  if (d.contains("proxyEndpoint") && d["proxyEndpoint"].is_string()) a.proxy_endpoint = d["proxyEndpoint"];
  if (d.contains("expiresAt") && d["expiresAt"].is_number()) a.expires_at = static_cast<int64_t>(d["expiresAt"].get<double>());
  return a;
}

bool EcrClient::repository_exists(const std::string& name) {
  try {
    json_rpc_call(cfg_, kEcr, "DescribeRepositories", {{"repositoryNames", json::array({name})}});
    return true;
  } catch (const AwsError& e) {
    if (e.code() == "RepositoryNotFoundException") return false;
    throw;
  }
}

bool EcrClient::create_repository(const std::string& name) {
  try {
    json_rpc_call(cfg_, kEcr, "CreateRepository", {{"repositoryName", name}});
    return true;
  } catch (const AwsError& e) {
    if (e.code() == "RepositoryAlreadyExistsException") return false;
    throw;
  }
}

std::optional<EcrImageInfo> EcrClient::describe_image(const std::string& repository,
                                                      const std::string& tag_or_digest) {
  json id = tag_or_digest.rfind("sha256:", 0) == 0 ? json{{"imageDigest", tag_or_digest}}
                                                   : json{{"imageTag", tag_or_digest}};
  json r;
  try {
    r = json_rpc_call(cfg_, kEcr, "BatchGetImage",
                      {{"repositoryName", repository},
                       {"imageIds", json::array({id})},
                       {"acceptedMediaTypes", json::array({"application/vnd.docker.distribution.manifest.v2+json",
                                                           "application/vnd.oci.image.manifest.v1+json",
                                                           "application/vnd.docker.distribution.manifest.list.v2+json",
                                                           "application/vnd.oci.image.index.v1+json"})}});
  } catch (const AwsError& e) {
    if (e.code() == "RepositoryNotFoundException") return std::nullopt;
    throw;
  }
  if (!r.contains("images") || !r["images"].is_array() || r["images"].empty()) return std::nullopt;
  const json& img = r["images"][0];
  EcrImageInfo info;
  if (img.contains("imageId") && img["imageId"].is_object() && img["imageId"].contains("imageDigest") &&
      img["imageId"]["imageDigest"].is_string())
    info.digest = img["imageId"]["imageDigest"];
  if (img.contains("imageManifestMediaType") && img["imageManifestMediaType"].is_string()) {
    info.manifest_media_type = img["imageManifestMediaType"];
  } else if (img.contains("imageManifest") && img["imageManifest"].is_string()) {
    // Older answers carry only the manifest itself: its mediaType member says what it is.
    try {
      json m = json::parse(img["imageManifest"].get<std::string>());
      if (m.contains("mediaType") && m["mediaType"].is_string()) info.manifest_media_type = m["mediaType"];
    } catch (const std::exception&) {
    }
  }
  return info;
}

}  // namespace kiln::aws
