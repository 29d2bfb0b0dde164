// Registry API v2 push (see registry.h). Endpoints used:
//   GET  /v2/                                  version check, and the auth challenge
//   HEAD /v2/REPO/blobs/DIGEST                 200: the registry has it
//   POST /v2/REPO/blobs/uploads/               202 + Location: an upload session
//   PUT  LOCATION?digest=DIGEST                201: the blob, in one request
//   PUT  /v2/REPO/manifests/TAG                201 + Docker-Content-Digest
#include "kiln/image/registry.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "kiln/aws/crypto.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace kiln::image {
namespace {

constexpr size_t kMaxSmallBody = 1 << 20;  // token and error answers; more is refused

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string pct(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') o += static_cast<char>(c);
    else {
      o += '%';
      o += hex[c >> 4];
      o += hex[c & 15];
    }
  }
  return o;
}

bool valid_repository(const std::string& r) {
  // path components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* separated by '/'
  if (r.empty() || r.size() > 255) return false;
  size_t start = 0;
  while (true) {
    size_t end = r.find('/', start);
    std::string c = r.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (c.empty() || !std::isalnum(static_cast<unsigned char>(c.front())) ||
        !std::isalnum(static_cast<unsigned char>(c.back())))
      return false;
    for (char ch : c)
      if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-')) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

bool valid_tag(const std::string& t) {
  if (t.empty() || t.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
  for (char c : t)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

std::string short_digest(const std::string& d) { return d.substr(0, 19); }

std::string mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

// A 5xx / 429 answer: worth another try.
class RetryableStatus : public Error {
 public:
  using Error::Error;
};

// `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` -> scheme, params.
std::pair<std::string, std::map<std::string, std::string>> parse_challenge(const std::string& h) {
  std::map<std::string, std::string> params;
  size_t sp = h.find(' ');
  std::string scheme = lower(h.substr(0, sp));
  size_t i = sp == std::string::npos ? h.size() : sp + 1;
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
    size_t eq = h.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = lower(h.substr(i, eq - i));
    i = eq + 1;
    std::string val;
    if (i < h.size() && h[i] == '"') {
      ++i;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        val += h[i++];
      }
      ++i;
    } else {
      size_t e = h.find(',', i);
      val = h.substr(i, e == std::string::npos ? std::string::npos : e - i);
      i = e == std::string::npos ? h.size() : e;
    }
    params[key] = val;
  }
  return {scheme, params};
}

// The registry's own words from an error answer ({"errors":[{"code","message"}]}), short.
std::string registry_error(const aws::HttpResponse& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  try {
    json j = json::parse(r.body);
    if (j.contains("errors") && j["errors"].is_array())
      for (const auto& e : j["errors"]) {
        if (!e.is_object()) continue;
        s += ": " + e.value("code", std::string()) + " " + e.value("message", std::string());
      }
  } catch (const json::exception&) {
    std::string b = r.body.substr(0, 200);
    for (auto& c : b)
      if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
    if (!b.empty()) s += ": " + b;
  }
  return s;
}

class Session {
 public:
  Session(const ImageReference& ref, const RegistryOptions& o) : ref_(ref), o_(o) {
    std::string url = o.registry_url;
    if (url.empty()) {
      std::string host = ref.registry.substr(0, ref.registry.rfind(':') == std::string::npos ||
                                                        ref.registry.find(']') != std::string::npos
                                                    ? std::string::npos
                                                    : ref.registry.rfind(':'));
      url = (is_loopback_host(host) ? "http://" : "https://") + ref.registry;
    }
    base_ = aws::Url::parse(url, "registry URL");
    if (base_.scheme == "http" && !is_loopback_host(base_.host))
      fail("registry URL " + url, "https:// (plain HTTP is only allowed to loopback addresses)", "http://",
           "a registry on another machine must serve TLS");
    user_ = o.username;
    pass_ = o.password;
    if (user_.empty() && pass_.empty()) {
      fs::path cfg = o.docker_config;
      if (cfg.empty()) {
        if (const char* d = std::getenv("DOCKER_CONFIG")) cfg = fs::path(d) / "config.json";
        else if (const char* h = std::getenv("HOME")) cfg = fs::path(h) / ".docker" / "config.json";
      }
      if (!cfg.empty() && fs::exists(cfg)) {
        if (docker_config_credentials(cfg, ref.registry, &user_, &pass_)) creds_from_ = cfg.string();
      }
    } else {
      creds_from_ = "the given credentials";
    }
  }

  void log(const std::string& s) const {
    if (o_.log) o_.log(s);
  }

  // One exchange (following redirects), with this session's Authorization where it belongs and
  // one re-authentication on 401.
  aws::HttpResponse send(std::string method, const std::string& target, std::vector<aws::Header> headers,
                         const std::string& body, const aws::Url* absolute = nullptr) {
    aws::Url url = absolute ? *absolute : base_;
    std::string tgt = absolute ? (absolute->path.empty() ? "/" : absolute->path) : target;
    bool reauthed = false;
    for (int hop = 0;; ++hop) {
      aws::HttpRequest req;
      req.method = method;
      req.url = url;
      req.target = tgt;
      req.headers = headers;
      bool same_host = url.host == base_.host && url.port == base_.port && url.scheme == base_.scheme;
      if (same_host && !auth_.empty()) req.headers.push_back({"Authorization", auth_});
      if (method == "PUT" || method == "POST") req.headers.push_back({"Content-Length", std::to_string(body.size())});
      req.body = body;
      aws::HttpResponse r = bounded_send(req);
      if (r.status == 401 && same_host && !reauthed) {
        reauthed = true;
        authenticate(r.header("WWW-Authenticate"));
        continue;
      }
      if ((r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308) &&
          !r.header("Location").empty()) {
        if (hop >= 5) fail(method + " " + url.str() + tgt, "at most 5 redirects", "more");
        std::string loc = r.header("Location");
        aws::Url next = url;
        if (loc.find("://") != std::string::npos) {
          next = aws::Url::parse(loc, "redirect Location from " + url.authority());
        } else {
          next.path = loc[0] == '/' ? loc : "/" + loc;
        }
        if (next.scheme == "http" && !is_loopback_host(next.host))
          fail("redirect from " + url.authority(), "an https:// Location", "'" + loc.substr(0, 200) + "'",
               "kiln never follows a registry to plain HTTP on another host");
        url = next;
        tgt = next.path.empty() ? "/" : next.path;
        if (r.status == 303) method = "GET";
        continue;
      }
      return r;
    }
  }

  // Retries `fn` on dropped connections and 5xx/429; other errors pass through.
  template <class F>
  auto retrying(const std::string& what, F fn) {
    for (int attempt = 1;; ++attempt) {
      try {
        return fn();
      } catch (const aws::TransportError& e) {
        if (attempt >= o_.max_attempts)
          throw Error(what + ": gave up after " + std::to_string(attempt) + " attempts: " + e.what(), e.hint());
        log("  retrying " + what + " (" + e.what() + ")");
      } catch (const RetryableStatus& e) {
        if (attempt >= o_.max_attempts)
          throw Error(what + ": gave up after " + std::to_string(attempt) + " attempts: " + e.what());
        log("  retrying " + what + " (" + e.what() + ")");
      }
      double d = std::min(8.0, o_.base_delay_s * (1 << std::min(attempt - 1, 10)));
      std::this_thread::sleep_for(std::chrono::duration<double>(d));
    }
  }

  static void check_transient(const aws::HttpResponse& r, const std::string& what) {
    if (r.status >= 500 || r.status == 429) throw RetryableStatus(what + ": " + registry_error(r));
  }

  void ping() {
    aws::HttpResponse r = retrying("GET " + base_.str() + "/v2/", [&] {
      aws::HttpResponse x = send("GET", "/v2/", {}, "");
      check_transient(x, "GET /v2/");
      return x;
    });
    if (r.status == 401)
      fail("registry " + ref_.registry, "access with " + (creds_from_.empty() ? "no credentials" : "credentials from " + creds_from_),
           "401 Unauthorized",
           creds_from_.empty() ? "the registry wants credentials: --username with --password-stdin, or docker login"
                               : "check the user and password (for ECR: the AWS credentials and region)");
    if (r.status == 404)
      fail("registry " + base_.str(), "the registry API v2 (/v2/ answering 200 or 401)", "404",
           "is this address a Docker registry?");
    if (r.status != 200) fail("GET " + base_.str() + "/v2/", "200", registry_error(r));
  }

  bool blob_exists(const Blob& b) {
    std::string what = "HEAD blob " + short_digest(b.digest);
    aws::HttpResponse r = retrying(what, [&] {
      aws::HttpResponse x = send("HEAD", "/v2/" + ref_.repository + "/blobs/" + b.digest, {}, "");
      check_transient(x, what);
      return x;
    });
    if (r.status == 404) return false;
    if (r.status != 200) fail(what + " in " + ref_.str(), "200 or 404", registry_error(r), auth_hint(r));
    std::string d = r.header("Docker-Content-Digest");
    if (!d.empty() && d != b.digest)
      fail(what + ": the registry's Docker-Content-Digest", b.digest, d, "the registry is not trustworthy");
    std::string len = r.header("Content-Length");
    if (!len.empty() && len != std::to_string(b.data.size())) return false;  // not the blob we have: upload it
    return true;
  }

  void upload_blob(const Blob& b) {
    std::string what = "upload of blob " + short_digest(b.digest);
    retrying(what, [&] {
      aws::HttpResponse r = send("POST", "/v2/" + ref_.repository + "/blobs/uploads/", {}, "");
      check_transient(r, what);
      if (r.status != 202) fail(what + ": POST /v2/" + ref_.repository + "/blobs/uploads/", "202 Accepted",
                                registry_error(r), auth_hint(r));
      std::string loc = r.header("Location");
      if (loc.empty()) fail(what + ": the upload's Location header", "a URL", "none");
      aws::Url put_url = base_;
      if (loc.find("://") != std::string::npos) put_url = aws::Url::parse(loc, "upload Location");
      else put_url.path = loc[0] == '/' ? loc : "/" + loc;
      if (put_url.scheme == "http" && !is_loopback_host(put_url.host))
        fail(what + ": upload Location", "an https:// URL", "'" + loc.substr(0, 200) + "'");
      put_url.path += (put_url.path.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + pct(b.digest);
      aws::HttpResponse p = send("PUT", "", {{"Content-Type", "application/octet-stream"}}, b.data, &put_url);
      check_transient(p, what);
      if (p.status != 201 && p.status != 204)
        fail(what + ": PUT", "201 Created", registry_error(p), auth_hint(p));
      std::string d = p.header("Docker-Content-Digest");
      if (!d.empty() && d != b.digest)
        fail(what + ": the digest the registry computed", b.digest, d, "the upload was damaged in transit");
      return 0;
    });
  }

  std::string put_manifest(const std::string& manifest, const std::string& digest) {
    std::string ref = ref_.digest.empty() ? ref_.tag : ref_.digest;
    std::string what = "PUT manifest " + ref_.repository + ":" + ref;
    aws::HttpResponse r = retrying(what, [&] {
      aws::HttpResponse x = send("PUT", "/v2/" + ref_.repository + "/manifests/" + ref,
                                 {{"Content-Type", kManifestV2}}, manifest);
      check_transient(x, what);
      return x;
    });
    if (r.status != 201 && r.status != 200) fail(what, "201 Created", registry_error(r), auth_hint(r));
    std::string d = r.header("Docker-Content-Digest");
    if (!d.empty() && d != digest)
      fail(what + ": the registry's Docker-Content-Digest", digest, d,
           "the registry stored something else than kiln sent; the push did not succeed");
    return digest;
  }

 private:
  aws::HttpResponse bounded_send(const aws::HttpRequest& in) {
    aws::HttpRequest req = in;
    std::string body;
    bool too_big = false;
    req.sink = [&](const char* p, size_t n) {
      if (body.size() + n > kMaxSmallBody) {
        too_big = true;
        return false;
      }
      body.append(p, n);
      return true;
    };
    try {
      aws::HttpResponse r = aws::http_send(req, o_.http);
      if (r.body.empty()) r.body = std::move(body);
      if (r.body.size() > kMaxSmallBody) r.body.resize(kMaxSmallBody);
      return r;
    } catch (const aws::TransportError&) {
      if (too_big)
        fail(req.method + " " + req.url.str() + req.target.substr(0, 120), "an answer of at most 1 MiB",
             "a larger one");
      throw;
    }
  }

  std::string auth_hint(const aws::HttpResponse& r) const {
    if (r.status == 401 || r.status == 403)
      return creds_from_.empty() ? "the registry wants credentials: --username with --password-stdin, or docker login"
                                 : "the credentials from " + creds_from_ + " are not allowed to push to " + ref_.repository;
    return {};
  }

  void authenticate(const std::string& challenge) {
    auto [scheme, params] = parse_challenge(challenge);
    if (scheme == "basic") {
      if (user_.empty() && pass_.empty()) {
        auth_.clear();
        return;  // the 401 goes back to the caller, which names the missing credentials
      }
      auth_ = "Basic " + aws::base64_encode(user_ + ":" + pass_);
      return;
    }
    if (scheme != "bearer")
      fail("registry " + ref_.registry + ": WWW-Authenticate", "a Basic or Bearer challenge",
           "'" + challenge.substr(0, 120) + "'");
    std::string realm = params["realm"];
    if (realm.empty()) fail("registry " + ref_.registry + ": Bearer challenge", "a realm", "none");
    aws::Url ru = aws::Url::parse(realm, "the token realm of " + ref_.registry);
    if (ru.scheme == "http" && !is_loopback_host(ru.host))
      fail("registry " + ref_.registry + ": token realm", "an https:// URL", realm,
           "kiln does not send credentials over plain HTTP");
    std::string q = "service=" + pct(params["service"]) + "&scope=" + pct("repository:" + ref_.repository + ":pull,push");
    ru.path = (ru.path.empty() ? "/" : ru.path) + (ru.path.find('?') == std::string::npos ? "?" : "&") + q;
    aws::HttpRequest req;
    req.method = "GET";
    req.url = ru;
    req.target = ru.path;
    if (!user_.empty() || !pass_.empty())
      req.headers.push_back({"Authorization", "Basic " + aws::base64_encode(user_ + ":" + pass_)});
    aws::HttpResponse r = retrying("token request to " + ru.authority(), [&] {
      aws::HttpResponse x = bounded_send(req);
      check_transient(x, "token request");
      return x;
    });
    if (r.status != 200)
      fail("the token service " + ru.authority() + " of " + ref_.registry, "a token (200)", registry_error(r),
           creds_from_.empty() ? "the registry wants credentials: --username with --password-stdin, or docker login"
                               : "check the credentials from " + creds_from_);
    std::string token;
    try {
      json j = json::parse(r.body);
      if (j.contains("token") && j["token"].is_string()) token = j["token"].get<std::string>();
      else if (j.contains("access_token") && j["access_token"].is_string()) token = j["access_token"].get<std::string>();
    } catch (const json::exception&) {
    }
    if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
      fail("the token service " + ru.authority(), "JSON with a \"token\"", "'" + r.body.substr(0, 80) + "'");
    auth_ = "Bearer " + token;
  }

  ImageReference ref_;
  RegistryOptions o_;
  aws::Url base_;
  std::string user_, pass_, creds_from_, auth_;
};

}  // namespace

bool is_loopback_host(const std::string& host_in) {
  std::string host = lower(host_in);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

std::string ImageReference::str() const {
  return registry + "/" + repository + (digest.empty() ? ":" + tag : "@" + digest);
}

ImageReference parse_image_reference(const std::string& text) {
  auto bad = [&](const std::string& why) {
    fail("image reference '" + text + "'", "REGISTRY/REPOSITORY[:TAG] (lowercase repository, e.g. 127.0.0.1:5000/kiln:1)", why);
  };
  if (text.empty() || text.find_first_of(" \t\r\n") != std::string::npos) bad("empty or with spaces");
  ImageReference r;
  std::string rest = text;
  size_t at = rest.find('@');
  if (at != std::string::npos) {
    r.digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (r.digest.size() != 71 || r.digest.compare(0, 7, "sha256:") != 0) bad("a digest that is not sha256:<64 hex>");
  }
  size_t slash = rest.find('/');
  std::string first = rest.substr(0, slash);
  if (slash != std::string::npos && (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
                                     first == "localhost")) {
    r.registry = first;
    rest = rest.substr(slash + 1);
  } else {
    r.registry = "registry-1.docker.io";
    if (rest.find('/') == std::string::npos) rest = "library/" + rest;
  }
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    r.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!valid_tag(r.tag)) bad("tag '" + r.tag + "' (letters, digits, '_', '.', '-'; at most 128)");
  } else if (r.digest.empty()) {
    r.tag = "latest";
  }
  if (!valid_repository(rest)) bad("repository '" + rest + "' (lowercase letters, digits, '.', '_', '-', '/')");
  r.repository = rest;
  return r;
}

bool docker_config_credentials(const fs::path& config, const std::string& registry, std::string* user,
                               std::string* password) {
  json j;
  try {
    j = json::parse(read_file(config));
  } catch (const json::exception& e) {
    fail(config.string(), "a docker config (JSON)", e.what());
  }
  if (!j.is_object() || !j.contains("auths") || !j["auths"].is_object()) return false;
  auto key_host = [](std::string k) {
    size_t s = k.find("://");
    if (s != std::string::npos) k = k.substr(s + 3);
    size_t p = k.find('/');
    return lower(k.substr(0, p));
  };
  std::string want = lower(registry == "registry-1.docker.io" ? "index.docker.io" : registry);
  for (const auto& [k, v] : j["auths"].items()) {
    if (key_host(k) != want || !v.is_object()) continue;
    if (v.contains("auth") && v["auth"].is_string() && !v["auth"].get<std::string>().empty()) {
      std::string dec = aws::base64_decode(v["auth"].get<std::string>());
      size_t c = dec.find(':');
      if (c == std::string::npos) fail(config.string() + ": auths." + k + ".auth", "base64 of user:password", "no ':'");
      *user = dec.substr(0, c);
      *password = dec.substr(c + 1);
      return true;
    }
    if (v.contains("username") && v["username"].is_string() && v.contains("password") && v["password"].is_string()) {
      *user = v["username"].get<std::string>();
      *password = v["password"].get<std::string>();
      return true;
    }
  }
  return false;
}

PushReport push_image(const Image& img, const ImageReference& ref, const RegistryOptions& opts) {
  Session s(ref, opts);
  s.ping();
  PushReport rep;
  std::vector<const Blob*> blobs;
  for (const Blob& l : img.layers) blobs.push_back(&l);
  blobs.push_back(&img.config);
  for (size_t i = 0; i < blobs.size(); ++i) {
    const Blob& b = *blobs[i];
    std::string name = (i + 1 == blobs.size() ? std::string("config") : "layer " + std::to_string(i + 1)) + " " +
                       short_digest(b.digest) + " (" + mb(b.data.size()) + ")";
    if (s.blob_exists(b)) {
      ++rep.blobs_skipped;
      s.log("  " + name + ": already in the registry, skipped");
      continue;
    }
    auto t0 = std::chrono::steady_clock::now();
    s.upload_blob(b);
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++rep.blobs_uploaded;
    rep.bytes_uploaded += b.data.size();
    char buf[64];
    std::snprintf(buf, sizeof buf, ": uploaded in %.1f s", sec);
    s.log("  " + name + buf);
  }
  std::string manifest = img.manifest();
  rep.digest = s.put_manifest(manifest, sha256_digest(manifest));
  rep.reference = ref.registry + "/" + ref.repository + "@" + rep.digest;
  return rep;
}

}  // namespace kiln::image
