// AWS credentials and where they come from, in the AWS CLI's order:
//   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//      (skipped when a profile is named explicitly with --profile, as the CLI does)
//   2. shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials), [profile]
//   3. config file (AWS_CONFIG_FILE, else ~/.aws/config), [profile NAME] / [default]
//   4. container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or
//      AWS_CONTAINER_CREDENTIALS_FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)
//   5. instance metadata, IMDSv2 (token PUT, then the role's credentials); the endpoint is
//      AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254; AWS_EC2_METADATA_DISABLED=true skips it
// The profile is --profile, else AWS_PROFILE, else "default". Secrets are never printed: use
// describe()/mask(). Temporary credentials are refreshed before they expire.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace kiln::aws {

using Clock = std::chrono::system_clock;

struct Credentials {
  std::string access_key_id, secret_access_key, session_token;
  std::optional<Clock::time_point> expiration;  // temporary credentials only
  std::string source;                           // "environment", "profile default in ...", ...

  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
  // "AKIA************MPLE (environment, session token, expires 2026-...)": no secret in it.
  std::string describe() const;
};

// Access key ids keep their first 4 and last 4 characters; anything else becomes "****".
std::string mask_access_key(const std::string& id);
std::string mask_secret(const std::string& secret);

// INI files of the AWS CLI: section -> key -> value (keys lower-cased, values trimmed).
using IniFile = std::map<std::string, std::map<std::string, std::string>>;
IniFile parse_ini(const std::string& text);

struct ProfileOptions {
  std::string profile;            // --profile; empty: AWS_PROFILE, else "default"
  std::chrono::seconds refresh_margin{300};  // refresh temporary credentials this long before expiry
  int64_t metadata_timeout_ms = 1000;        // container / instance metadata requests
};

std::string resolve_profile_name(const ProfileOptions& opts);
std::string config_file_path();
std::string credentials_file_path();
// A setting of the profile in the config file ("region", "output", ...), or "" when absent.
std::string config_setting(const ProfileOptions& opts, const std::string& key);

// The region: --region (given), AWS_REGION, AWS_DEFAULT_REGION, the profile's region; "" if none.
std::string resolve_region(const std::string& cli_region, const ProfileOptions& opts);

// Each provider returns empty credentials when it does not apply, and throws kiln::Error when it
// applies but fails (a profile with a key id and no secret, a metadata server that errs).
struct Url;
bool container_credentials_uri_allowed(const Url& url);
// A container / instance metadata credentials document ({"AccessKeyId", "SecretAccessKey",
// "Token", "Expiration", "Code"}). Errors name `what` and the document's shape, never its text
// (it holds the secret). The fuzz harness drives it.
Credentials parse_credentials_json(const std::string& body, const std::string& what);

Credentials credentials_from_env();
Credentials credentials_from_profile(const ProfileOptions& opts);
// AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to what the AWS SDKs allow:
// loopback (127.0.0.0/8, ::1, localhost) or the ECS/EKS agents (169.254.170.2, 169.254.170.23,
// fd00:ec2::23); otherwise it is refused before any request (the token would go in clear).
Credentials credentials_from_container(const ProfileOptions& opts);
Credentials credentials_from_imds(const ProfileOptions& opts);

// The chain, resolved lazily and cached; thread-safe.
class CredentialChain {
 public:
  explicit CredentialChain(ProfileOptions opts = {});
  // Fixed credentials (tests, --dry-run placeholders).
  static std::shared_ptr<CredentialChain> fixed(Credentials creds);

  // The cached credentials, re-resolved when absent or expiring within the refresh margin.
  // Throws kiln::Error (with the list of places looked at) when no provider has any.
  Credentials get();
  // Forget the cached credentials (the service said the token expired).
  void invalidate();

 private:
  Credentials resolve();
  ProfileOptions opts_;
  std::mutex mu_;
  std::optional<Credentials> cached_;
  bool fixed_ = false;
};

}  // namespace kiln::aws
