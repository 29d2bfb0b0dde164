// A Docker registry client (registry HTTP API v2) that pushes an Image: blob existence checks
// (blobs the registry has are skipped), monolithic blob uploads, then the Docker v2 schema-2
// manifest, whose digest the registry must confirm. Authentication as the registry asks for it:
// none, Basic, or the Bearer-token challenge (realm/service/scope), with credentials given, from
// ECR (the caller fetches them) or from ~/.docker/config.json. Plain HTTP only to loopback hosts.
// Transient failures (dropped connections, 5xx, 429) are retried with backoff; credentials are
// only ever sent to the host they were issued for (a redirect elsewhere goes without them).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "kiln/aws/http.h"
#include "kiln/image/archive.h"

namespace kiln::image {

// REGISTRY/REPO[:TAG][@sha256:HEX]. REGISTRY is the first component when it has a '.' or ':' or
// is "localhost"; otherwise Docker Hub (registry-1.docker.io, "library/" for one-part names).
struct ImageReference {
  std::string registry;    // "127.0.0.1:5000", "123456789012.dkr.ecr.us-east-1.amazonaws.com"
  std::string repository;  // "kiln", "team/kiln"
  std::string tag;         // "latest" when neither tag nor digest is given
  std::string digest;      // "sha256:..." when given
  std::string str() const;  // REGISTRY/REPO:TAG (or @DIGEST)
};
ImageReference parse_image_reference(const std::string& text);

// 127.0.0.0/8, ::1 and "localhost": the only hosts plain HTTP is allowed to.
bool is_loopback_host(const std::string& host);

struct RegistryOptions {
  std::string registry_url;  // where to send the registry's traffic; "" = https://REGISTRY (http: loopback)
  std::string username, password;        // explicit credentials (ECR's come here too)
  std::filesystem::path docker_config;   // "" = $DOCKER_CONFIG/config.json, else ~/.docker/config.json
  aws::HttpOptions http;
  int max_attempts = 5;                  // per request (a blob upload is retried as a whole)
  double base_delay_s = 0.5;             // doubled per retry, at most 8 s
  std::function<void(const std::string&)> log;  // one line per blob and per retry
};

struct PushReport {
  std::string digest;     // the manifest's, as the registry confirmed it
  std::string reference;  // REGISTRY/REPO@sha256:...
  int blobs_uploaded = 0, blobs_skipped = 0;
  uint64_t bytes_uploaded = 0;
};

PushReport push_image(const Image& img, const ImageReference& ref, const RegistryOptions& opts);

// Credentials for `registry` in a docker config.json ("auths": "auth" (base64 user:password) or
// "username"/"password"); false when it has none. Throws on a malformed file.
bool docker_config_credentials(const std::filesystem::path& config, const std::string& registry, std::string* user,
                               std::string* password);

}  // namespace kiln::image
