// AWS Signature Version 4: canonical request, string to sign, signature; header signing and
// query signing (presigned URLs). Paths and query parameters are given DECODED (raw bytes) and
// URI-encoded exactly once here (RFC 3986 unreserved characters kept). S3 signs with
// normalize_path = false: no dot-segment or double-slash removal (an S3 key is taken literally).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/aws/credentials.h"

namespace kiln::aws {

inline constexpr const char* kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Header {
  std::string name, value;
};

// A request as the signer sees it. Host must be among the headers.
struct SignableRequest {
  std::string method;
  std::string path = "/";                                   // decoded, starts with '/'
  std::vector<std::pair<std::string, std::string>> query;   // decoded, in any order
  std::vector<Header> headers;                              // in sending order
  std::string payload_hash = kEmptySha256;                  // hex SHA-256 or UNSIGNED-PAYLOAD

  std::string header(std::string_view name) const;  // case-insensitive; "" when absent
  void set_header(const std::string& name, const std::string& value);  // replaces
};

struct SigningConfig {
  std::string region, service;
  std::time_t time = 0;              // seconds since the epoch, UTC
  bool normalize_path = true;        // false for S3
  bool omit_session_token = false;   // add the token after signing (it is then not signed)
  bool add_content_sha256 = false;   // header signing: send x-amz-content-sha256 (S3 needs it)
  int64_t expires_s = 3600;          // query signing only
};

struct SigningResult {
  std::string canonical_request, string_to_sign, signature;
};

// RFC 3986 percent-encoding of every byte but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash).
std::string uri_encode(std::string_view s, bool keep_slash);
std::string uri_decode(std::string_view s);
// The canonical URI of a decoded path (dot segments and empty segments removed if normalize).
std::string canonical_path(std::string_view path, bool normalize);
// "k=v&k2=v2" sorted by encoded key then value: the canonical query string, also fit for the wire.
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);
std::string amz_date(std::time_t t);  // 20150830T123600Z

// Adds X-Amz-Date, X-Amz-Security-Token (unless omitted; then added unsigned afterwards),
// x-amz-content-sha256 (if asked) and Authorization. Every header present is signed.
SigningResult sign_headers(SignableRequest& req, const Credentials& creds, const SigningConfig& cfg);
// Adds the X-Amz-* query parameters including X-Amz-Signature (a presigned request).
SigningResult presign_query(SignableRequest& req, const Credentials& creds, const SigningConfig& cfg);

}  // namespace kiln::aws
