// Signed requests with standard-mode retries (see client.h).
#include "kiln/aws/client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "kiln/aws/crypto.h"
#include "kiln/aws/xml.h"
#include "kiln/core/error.h"

namespace kiln::aws {

static std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

ClientConfig make_client_config(const std::string& cli_region, const std::string& cli_endpoint,
                                const std::string& cli_profile) {
  ClientConfig cfg;
  ProfileOptions po;
  po.profile = cli_profile;
  cfg.region = resolve_region(cli_region, po);
  cfg.endpoint_url = cli_endpoint.empty() ? env("AWS_ENDPOINT_URL") : cli_endpoint;
  if (cfg.endpoint_url.empty()) cfg.endpoint_url = config_setting(po, "endpoint_url");
  cfg.credentials = std::make_shared<CredentialChain>(po);
  if (std::string ca = config_setting(po, "ca_bundle"); !ca.empty()) cfg.http.ca_file = ca;
  if (std::string n = env("AWS_MAX_ATTEMPTS"); !n.empty()) {
    int v = std::atoi(n.c_str());
    if (v >= 1 && v <= 10) cfg.retry.max_attempts = v;
  }
  return cfg;
}

std::string endpoint_override(const ClientConfig& cfg, const std::string& service_id) {
  std::string var = "AWS_ENDPOINT_URL_";
  for (char c : service_id) var += static_cast<char>(std::toupper(static_cast<unsigned char>(c == ' ' ? '_' : c)));
  if (std::string v = env(var.c_str()); !v.empty()) return v;
  return cfg.endpoint_url;
}

AwsError::AwsError(const std::string& what, std::string hint, int status, std::string code,
                   std::string message, std::vector<Header> headers)
    : kiln::Error(what, std::move(hint)),
      status_(status),
      code_(std::move(code)),
      message_(std::move(message)),
      headers_(std::move(headers)) {}

std::string AwsError::header(std::string_view name) const {
  HttpResponse r;
  r.headers = headers_;
  return r.header(name);
}

std::pair<std::string, std::string> parse_error_body(const HttpResponse& r) {
  std::string code, message;
  std::string body = r.body;
  size_t first = body.find_first_not_of(" \r\n\t");
  if (first != std::string::npos && body[first] == '<') {
    try {
      XmlNode x = parse_xml(body, "error response");
      if (const XmlNode* e = x.find("Error")) {
        code = e->child_text("Code");
        message = e->child_text("Message");
      }
    } catch (const kiln::Error&) {
    }
  } else if (first != std::string::npos && body[first] == '{') {
    try {
      auto j = nlohmann::json::parse(body);
      for (const char* k : {"__type", "code", "Code"})
        if (j.contains(k) && j[k].is_string()) { code = j[k]; break; }
      for (const char* k : {"message", "Message", "errorMessage"})
        if (j.contains(k) && j[k].is_string()) { message = j[k]; break; }
    } catch (const std::exception&) {
    }
  }
  if (code.empty()) code = r.header("x-amzn-ErrorType");
  // "com.amazon.coral#ValidationException" / "ValidationException:http://..." -> the bare code
  if (auto h = code.find('#'); h != std::string::npos) code = code.substr(h + 1);
  if (auto c = code.find(':'); c != std::string::npos) code = code.substr(0, c);
  return {code, message};
}

bool is_retryable(int status, const std::string& code) {
  static const char* const kCodes[] = {
      "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
      "TooManyRequestsException", "ProvisionedThroughputExceededException",
      "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
      "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
      "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException", "InternalError",
      "InternalFailure", "ServiceUnavailable"};
  for (const char* c : kCodes)
    if (code == c) return true;
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool is_expired_token(const std::string& code) {
  return code == "ExpiredToken" || code == "ExpiredTokenException" || code == "RequestExpired";
}

static std::string mask_auth(const std::string& v) {
  std::string out = v;
  if (auto p = out.find("Signature="); p != std::string::npos) out = out.substr(0, p) + "Signature=****";
  if (auto p = out.find("Credential="); p != std::string::npos) {
    size_t b = p + 11, e = out.find('/', b);
    if (e != std::string::npos) out = out.substr(0, b) + mask_access_key(out.substr(b, e - b)) + out.substr(e);
  }
  return out;
}

std::string describe_request(const HttpRequest& req) {
  std::string target = req.target;
  // presigned query parameters
  for (const char* k : {"X-Amz-Signature=", "X-Amz-Security-Token="}) {
    if (auto p = target.find(k); p != std::string::npos) {
      size_t b = p + std::string(k).size(), e = target.find('&', b);
      target = target.substr(0, b) + "****" + (e == std::string::npos ? "" : target.substr(e));
    }
  }
  std::string s = req.method + " " + req.url.scheme + "://" + req.url.authority() + target + "\n";
  for (const auto& h : req.headers) {
    std::string n = h.name;
    for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string v = n == "authorization" ? mask_auth(h.value)
                    : n == "x-amz-security-token" ? "****"
                    : h.value;
    s += "  " + h.name + ": " + v + "\n";
  }
  bool printable = std::all_of(req.body.begin(), req.body.end(), [](char c) {
    return c == '\n' || c == '\t' || c == '\r' || static_cast<unsigned char>(c) >= 32;
  });
  if (!req.body.empty()) {
    if (printable && req.body.size() <= 8192) s += "  body: " + req.body + "\n";
    else s += "  body: <" + std::to_string(req.body.size()) + " bytes>\n";
  }
  return s;
}

static double jitter_delay(const RetryPolicy& p, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double cap = std::min(p.max_delay_s, p.base_delay_s * std::pow(2.0, attempt - 1));
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) * cap;
}

static void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(s * 1e6)));
}

HttpResponse send_request(const ClientConfig& cfg, AwsRequest req) {
  KILN_ASSERT(!req.signing_region.empty(), "no signing region for " + req.operation);
  const std::string what = req.service_name + " " + req.operation;
  std::string payload_hash = req.s3 && req.unsigned_payload ? kUnsignedPayload : sha256_hex(req.body);
  bool refreshed = false;
  int max_attempts = std::max(1, cfg.retry.max_attempts);
  for (int attempt = 1;; ++attempt) {
    Credentials creds;
    if (cfg.dry_run) {
      try {
        creds = cfg.credentials ? cfg.credentials->get() : Credentials{};
      } catch (const kiln::Error&) {
      }
      if (creds.empty()) creds = {"AKIDDRYRUNPLACEHOLDER", "placeholder", "", {}, "dry-run placeholder"};
    } else {
      if (!cfg.credentials) throw Error(what + ": no credentials configured");
      creds = cfg.credentials->get();
    }
    SignableRequest sr;
    sr.method = req.method;
    sr.path = uri_decode(req.endpoint.path) + req.path;
    if (sr.path.empty() || sr.path[0] != '/') sr.path = "/" + sr.path;
    sr.query = req.query;
    sr.headers.push_back({"Host", req.endpoint.authority()});
    for (const auto& h : req.headers) sr.headers.push_back(h);
    sr.payload_hash = payload_hash;
    SigningConfig sc;
    sc.region = req.signing_region;
    sc.service = req.signing_name;
    sc.time = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    sc.normalize_path = !req.s3;
    sc.add_content_sha256 = req.s3;
    sign_headers(sr, creds, sc);

    HttpRequest hr;
    hr.method = req.method;
    hr.url = req.endpoint;
    hr.target = canonical_path(sr.path, !req.s3);
    if (std::string q = canonical_query(req.query); !q.empty()) hr.target += "?" + q;
    hr.headers = sr.headers;
    hr.body = req.body;
    hr.sink = req.sink;
    if (cfg.dry_run) {
      cfg.dry_run(describe_request(hr));
      HttpResponse fake;
      fake.status = 200;
      return fake;
    }
    if (attempt > 1 && req.sink && req.reset_sink) req.reset_sink();

    HttpResponse resp;
    try {
      resp = http_send(hr, cfg.http);
    } catch (const TransportError& e) {
      if (attempt >= max_attempts)
        throw TransportError(what + ": " + e.what() + " (after " + std::to_string(attempt) + " attempts)",
                             e.hint());
      double d = jitter_delay(cfg.retry, attempt);
      if (cfg.on_retry) cfg.on_retry(what + ": " + e.what() + "; retrying");
      sleep_s(d);
      continue;
    }
    if (resp.status >= 200 && resp.status < 300) return resp;
    auto [code, message] = parse_error_body(resp);
    if (is_expired_token(code) && !refreshed && cfg.credentials) {
      refreshed = true;
      cfg.credentials->invalidate();
      if (cfg.on_retry) cfg.on_retry(what + ": " + code + "; refreshing credentials");
      --attempt;  // a refresh does not use up an attempt
      continue;
    }
    bool retry = is_retryable(resp.status, code) && attempt < max_attempts;
    if (retry) {
      if (cfg.on_retry)
        cfg.on_retry(what + ": HTTP " + std::to_string(resp.status) + " " + code + "; retrying");
      sleep_s(jitter_delay(cfg.retry, attempt));
      continue;
    }
    std::string msg = what + " failed: " + (code.empty() ? "HTTP " + std::to_string(resp.status) : code) +
                      (message.empty() ? "" : ": " + message) + " (HTTP " + std::to_string(resp.status);
    if (std::string id = resp.header("x-amzn-RequestId"); !id.empty()) msg += ", request id " + id;
    else if (std::string id2 = resp.header("x-amz-request-id"); !id2.empty()) msg += ", request id " + id2;
    if (attempt > 1) msg += ", after " + std::to_string(attempt) + " attempts";
    msg += ")";
    std::string hint;
    if (code == "SignatureDoesNotMatch" || code == "InvalidClientTokenId" || code == "InvalidAccessKeyId" ||
        code == "UnrecognizedClientException")
      hint = "the credentials used (" + creds.describe() + ") were refused: check the key pair and region";
    else if (code == "AccessDenied" || code == "AccessDeniedException")
      hint = "the identity " + mask_access_key(creds.access_key_id) + " lacks permission for " + req.operation;
    throw AwsError(msg, hint, resp.status, code, message, resp.headers);
  }
}

}  // namespace kiln::aws
