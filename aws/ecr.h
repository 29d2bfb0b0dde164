// Amazon ECR's control API (JSON 1.1, signing name "ecr"): the registry credentials `kiln image
// push` needs (GetAuthorizationToken), repositories (CreateRepository, DescribeRepositories) and
// what a pushed image is (BatchGetImage: its digest and manifest media type, which SageMaker
// requires to be Docker's v2 schema 2). Image references of ECR's form are parsed here too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kiln/aws/client.h"

namespace kiln::aws {

// ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG | @sha256:HEX]; tag "latest" when neither is given.
struct EcrImageRef {
  std::string account, region, repository, tag, digest;
  std::string registry_host() const;  // ACCOUNT.dkr.ecr.REGION.amazonaws.com
};
// nullopt when `uri`'s host is not an ECR registry; throws kiln::Error when it is one but the
// rest is malformed.
std::optional<EcrImageRef> parse_ecr_image_uri(const std::string& uri);

struct EcrAuthorization {
  std::string username, password;  // from the base64 "AWS:<token>" authorizationToken
  std::string proxy_endpoint;      // "https://ACCOUNT.dkr.ecr.REGION.amazonaws.com"
  int64_t expires_at = 0;          // seconds since the epoch
};

struct EcrImageInfo {
  std::string digest;               // "sha256:..."
  std::string manifest_media_type;  // "application/vnd.docker.distribution.manifest.v2+json", ...
};

class EcrClient {
 public:
  explicit EcrClient(ClientConfig cfg);
  // The registry credentials for this account and region (valid 12 hours).
  EcrAuthorization get_authorization_token();
  bool repository_exists(const std::string& name);
  // Creates the repository; false when it existed already.
  bool create_repository(const std::string& name);
  // The image with this tag or digest ("sha256:..."); nullopt when the repository or the image
  // does not exist.
  std::optional<EcrImageInfo> describe_image(const std::string& repository, const std::string& tag_or_digest);

 private:
  ClientConfig cfg_;
};

}  // namespace kiln::aws
