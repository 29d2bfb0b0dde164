// cpp-httplib transport (see http.h). A new connection per request: simple, thread-safe (each
// multipart worker has its own), and never reuses a connection a server half-closed.
#include "kiln/aws/http.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "kiln/core/error.h"

namespace kiln::aws {

static bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

Url Url::parse(std::string_view text, const std::string& what) {
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos)
    fail(what, "a URL like https://host[:port]", "'" + std::string(text) + "'");
  u.scheme = std::string(text.substr(0, sep));
  for (auto& c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https")
    fail(what, "an http:// or https:// URL", "'" + std::string(text) + "'");
  std::string_view rest = text.substr(sep + 3);
  auto slash = rest.find('/');
  std::string_view auth = rest.substr(0, slash);
  if (slash != std::string_view::npos) u.path = std::string(rest.substr(slash));
  u.port = u.scheme == "https" ? 443 : 80;
  auto colon = auth.rfind(':');
  if (colon != std::string_view::npos && auth.find(']') == std::string_view::npos) {
    std::string p(auth.substr(colon + 1));
    char* end = nullptr;
    long v = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end || v <= 0 || v > 65535) fail(what, "a port number", "'" + p + "'");
    u.port = static_cast<int>(v);
    auth = auth.substr(0, colon);
  }
  if (auth.empty()) fail(what, "a host name", "'" + std::string(text) + "'");
  u.host = std::string(auth);
  return u;
}

std::string Url::authority() const {
  return default_port() ? host : host + ":" + std::to_string(port);
}

std::string Url::str() const { return scheme + "://" + authority() + path; }

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

HttpResponse http_send(const HttpRequest& req, const HttpOptions& opts) {
  std::string origin = req.url.scheme + "://" + req.url.host + ":" + std::to_string(req.url.port);
  httplib::Client cli(origin);
  cli.set_url_encode(false);
  cli.set_decompress(false);
  cli.set_keep_alive(false);
  cli.set_follow_location(false);
  cli.set_connection_timeout(std::chrono::milliseconds(opts.connect_timeout_ms));
  cli.set_read_timeout(std::chrono::milliseconds(opts.read_timeout_ms));
  cli.set_write_timeout(std::chrono::milliseconds(opts.read_timeout_ms));
  if (req.url.scheme == "https") {
    std::string ca = opts.ca_file;
    if (ca.empty())
      if (const char* b = std::getenv("AWS_CA_BUNDLE")) ca = b;
    if (!ca.empty()) cli.set_ca_cert_path(ca);
    cli.enable_server_certificate_verification(true);
  }

  httplib::Request hreq;
  hreq.method = req.method;
  hreq.path = req.target;
  for (const auto& h : req.headers) hreq.headers.emplace(h.name, h.value);
  hreq.body = req.body;
  if (!req.body.empty() && !hreq.has_header("Content-Type"))
    hreq.headers.emplace("Content-Type", "application/octet-stream");

  HttpResponse out;
  bool streaming = false;
  if (req.sink) {
    hreq.response_handler = [&](const httplib::Response& r) {
      streaming = r.status >= 200 && r.status < 300;
      return true;
    };
    hreq.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (streaming) return req.sink(data, n);
      out.body.append(data, n);
      return true;
    };
  }
  httplib::Response hres;
  httplib::Error err = httplib::Error::Success;
  if (!cli.send(hreq, hres, err)) {
    throw TransportError(req.method + " " + req.url.str() + req.target.substr(0, 200) +
                             ": connection failed: " + httplib::to_string(err),
                         err == httplib::Error::SSLServerVerification
                             ? "the server's TLS certificate was not trusted (set AWS_CA_BUNDLE to a CA file)"
                             : "check the endpoint and your network");
  }
  out.status = hres.status;
  for (const auto& [k, v] : hres.headers) out.headers.push_back({k, v});
  if (!req.sink) out.body = std::move(hres.body);
  return out;
}

}  // namespace kiln::aws
