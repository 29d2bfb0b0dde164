// One HTTP(S) exchange over cpp-httplib, no retries, no signing (client.h adds both).
// HTTPS verifies the server certificate against the system CA store (or AWS_CA_BUNDLE).
// Targets are sent byte for byte as given (already URI-encoded): httplib's own encoding is off,
// since SigV4 signs the exact path.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/aws/sigv4.h"
#include "kiln/core/error.h"

namespace kiln::aws {

struct Url {
  std::string scheme = "https", host;
  int port = 443;
  std::string path;  // encoded path (and query) after the authority, may be empty

  // "https://host[:port][/path]"; throws kiln::Error naming `what` when malformed.
  static Url parse(std::string_view text, const std::string& what = "URL");
  bool default_port() const { return port == (scheme == "https" ? 443 : 80); }
  std::string authority() const;  // host[:port], the Host header
  std::string str() const;        // scheme://authority path
};

struct HttpRequest {
  std::string method = "GET";
  Url url;                   // scheme, host and port
  std::string target = "/";  // encoded path + "?" + query
  std::vector<Header> headers;
  std::string body;
  // When set, a 2xx response body goes here as it arrives (not into HttpResponse::body);
  // returning false cancels the transfer.
  std::function<bool(const char* data, size_t size)> sink;
};

struct HttpResponse {
  int status = 0;
  std::vector<Header> headers;
  std::string body;
  std::string header(std::string_view name) const;  // case-insensitive; "" when absent
};

struct HttpOptions {
  int64_t connect_timeout_ms = 10000;
  int64_t read_timeout_ms = 60000;
  std::string ca_file;  // empty: AWS_CA_BUNDLE, else the system store
};

// The connection failed, timed out or dropped before a full response arrived (retryable).
class TransportError : public kiln::Error {
 public:
  using kiln::Error::Error;
};

HttpResponse http_send(const HttpRequest& req, const HttpOptions& opts);

}  // namespace kiln::aws
