// The signed, retried AWS request that every service client sends.
// Retries follow the SDKs' "standard" mode: at most max_attempts tries; the delay before retry n
// is a uniformly random fraction of min(base * 2^(n-1), max_delay) ("full jitter"); retried are
// dropped/failed connections, 5xx, 429 and throttling/transient error codes; other 4xx never.
// An expired session token (ExpiredToken...) makes the credentials re-resolve once and retry.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/credentials.h"
#include "kiln/aws/http.h"
#include "kiln/aws/sigv4.h"

namespace kiln::aws {

struct RetryPolicy {
  int max_attempts = 3;
  double base_delay_s = 1.0;
  double max_delay_s = 20.0;
};

// Everything a service client needs from the command line / environment.
struct ClientConfig {
  std::string region;        // resolved region ("" is an error when a request is made)
  std::string endpoint_url;  // --endpoint-url / AWS_ENDPOINT_URL[_<SERVICE>]; "" = AWS's endpoint
  std::shared_ptr<CredentialChain> credentials;
  HttpOptions http;
  RetryPolicy retry;
  // --dry-run: print each request (secrets masked) to this callback instead of sending it;
  // the response is an empty 200.
  std::function<void(const std::string&)> dry_run;
  // Called before each retry with a one-line reason (for --verbose and tests).
  std::function<void(const std::string&)> on_retry;
};

// Fills a ClientConfig from options as the AWS CLI would (region: --region, AWS_REGION,
// AWS_DEFAULT_REGION, the profile; endpoint: --endpoint-url, AWS_ENDPOINT_URL).
ClientConfig make_client_config(const std::string& cli_region, const std::string& cli_endpoint,
                                const std::string& cli_profile);

// The endpoint for `service_id` ("s3", "sagemaker", "iam"): AWS_ENDPOINT_URL_<SERVICE_ID> if set,
// else the config's endpoint_url, else "" (the caller builds AWS's own).
std::string endpoint_override(const ClientConfig& cfg, const std::string& service_id);

struct AwsRequest {
  std::string service_name;  // for messages: "S3", "SageMaker", "IAM"
  std::string operation;     // "PutObject", ...
  std::string signing_name;  // "s3", "sagemaker", "iam"
  std::string signing_region;
  Url endpoint;              // scheme/host/port, path prefix (encoded) prepended to path
  std::string method = "GET";
  std::string path = "/";  // decoded
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<Header> headers;  // besides Host and the signing headers
  std::string body;
  bool s3 = false;               // S3 rules: no path normalization, x-amz-content-sha256
  bool unsigned_payload = false;  // S3: UNSIGNED-PAYLOAD instead of the body's hash
  std::function<bool(const char*, size_t)> sink;  // 2xx body streamed here
  std::function<void()> reset_sink;               // called before a retry when sink is set
};

class AwsError : public kiln::Error {
 public:
  AwsError(const std::string& what, std::string hint, int status, std::string code, std::string message,
           std::vector<Header> headers);
  int status() const { return status_; }
  const std::string& code() const { return code_; }
  const std::string& aws_message() const { return message_; }
  std::string header(std::string_view name) const;

 private:
  int status_;
  std::string code_, message_;
  std::vector<Header> headers_;
};

// Error code and message from an AWS error body (XML <Error>, JSON __type/message) or headers.
std::pair<std::string, std::string> parse_error_body(const HttpResponse& r);
bool is_retryable(int status, const std::string& code);
bool is_expired_token(const std::string& code);

// Signs, sends, retries. Returns 2xx responses; throws AwsError for others (after retries) and
// TransportError when the connection failed on every attempt.
HttpResponse send_request(const ClientConfig& cfg, AwsRequest req);

// The text --dry-run prints: request line, headers (signature and token masked), body.
std::string describe_request(const HttpRequest& req);

}  // namespace kiln::aws
