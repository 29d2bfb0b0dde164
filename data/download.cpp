// `kiln download cifar100` (see download.h): HTTPS GET with certificate verification through
// cpp-httplib + OpenSSL, streaming MD5, validation of the archive, extraction into a temporary
// folder in the target directory and one rename into place.
#include "kiln/data/download.h"

#include <httplib.h>
#include <openssl/evp.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <system_error>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/io/gzip.h"
#include "kiln/io/tar.h"

namespace fs = std::filesystem;

namespace kiln::data {

namespace {

std::string manual_hint(const fs::path& dir) {
  return "without network access, download " + std::string(kCifar100Url) +
         " on another machine (MD5 " + kCifar100Md5 + ") and copy it to " +
         (dir / "cifar-100-python.tar.gz").string() + " (kiln reads the archive directly) or extract it there so that " +
         (dir / "cifar-100-python").string() + "/{train,test,meta} exist";
}

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) {
    KILN_ASSERT(ctx_ && EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr) == 1, "OpenSSL MD5 init");
  }
  ~Md5() { EVP_MD_CTX_free(ctx_); }
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void update(const char* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, d, &len);
    std::string s;
    char b[3];
    for (unsigned i = 0; i < len; ++i) {
      std::snprintf(b, sizeof b, "%02x", d[i]);
      s += b;
    }
    return s;
  }

 private:
  EVP_MD_CTX* ctx_;
};

struct Url {
  std::string origin, path;  // "https://host:port", "/a/b.tar.gz"
};

Url parse_url(const std::string& url) {
  if (!url.starts_with("https://"))
    fail("--url " + url, "an https:// URL (downloads are verified over TLS)", "'" + url + "'");
  const size_t slash = url.find('/', 8);
  if (slash == std::string::npos || slash == 8) fail("--url " + url, "https://HOST/PATH", "'" + url + "'");
  return {url.substr(0, slash), url.substr(slash)};
}

std::string suffix() {
  std::random_device rd;
  return std::to_string(rd()) + std::to_string(rd());
}

// Removes a path on scope exit unless released.
struct Cleanup {
  fs::path path;
  ~Cleanup() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

}  // namespace

std::string md5_hex(std::string_view bytes) {
  Md5 m;
  m.update(bytes.data(), bytes.size());
  return m.hex();
}

// Where a redirect's Location points, from the URL that answered it: absolute, or a path on the
// same origin. Anything but https:// is refused: a downgrade would fetch unverified bytes.
static std::string redirect_target(const Url& from, const std::string& from_text, const std::string& location) {
  std::string to;
  if (location.find("://") != std::string::npos) to = location;
  else if (!location.empty() && location[0] == '/' && (location.size() < 2 || location[1] != '/')) to = from.origin + location;
  else if (location.rfind("//", 0) == 0) to = "https:" + location;  // scheme-relative keeps https
  else to = from.origin + from.path.substr(0, from.path.rfind('/') + 1) + location;
  std::string scheme = to.substr(0, to.find("://"));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "https")
    throw Error(from_text + " redirects to " + scheme + "://" + "...: refusing to leave https (a downgrade)",
                "kiln downloads only over verified HTTPS; use a URL that stays on https");
  return to;
}

std::string https_get(const std::string& url_text, const FetchOptions& o) {
  std::string current = url_text;
  std::string body;
  const auto t0 = std::chrono::steady_clock::now();
  for (int hop = 0;; ++hop) {
    const Url url = parse_url(current);
    httplib::Client cli(url.origin);
    cli.enable_server_certificate_verification(true);
    if (!o.ca_bundle.empty()) {
      if (!fs::is_regular_file(o.ca_bundle))
        fail("CA bundle " + o.ca_bundle, "a PEM file of trusted certificates", "no such file");
      cli.set_ca_cert_path(o.ca_bundle);
    }
    // Redirects are followed here, not by cpp-httplib, so that every hop is checked to stay https.
    cli.set_follow_location(false);
    cli.set_connection_timeout(std::chrono::seconds(o.timeout_s));
    cli.set_read_timeout(std::chrono::seconds(o.timeout_s));

    bool too_big = false, redirect = false;
    int64_t last_report = 0;
    auto res = cli.Get(
        url.path, httplib::Headers{},
        [&](const httplib::Response& r) {
          redirect = r.status >= 300 && r.status < 400;  // its body is not the download
          return true;
        },
        [&](const char* data, size_t n) {
          if (redirect) return true;
          if (body.size() + n > o.max_bytes) {
            too_big = true;
            return false;
          }
          body.append(data, n);
          if (o.on_data) o.on_data(data, n);
          return true;
        },
        [&](uint64_t cur, uint64_t total) {
          if (!redirect && !o.quiet && static_cast<int64_t>(cur) - last_report >= (int64_t(16) << 20)) {
            last_report = static_cast<int64_t>(cur);
            std::fprintf(stderr, "  %.0f / %.0f MiB\n", cur / 1048576.0, total / 1048576.0);
          }
          return true;
        });
    if (too_big)
      fail(url_text, "at most " + std::to_string(o.max_bytes >> 20) + " MiB", "a larger answer", o.offline_hint);
    if (!res) {
      const auto err = res.error();
      std::string why = httplib::to_string(err);
      if (err == httplib::Error::SSLServerVerification)
        throw Error(current + ": the server's TLS certificate could not be verified (" + why + ")",
                    "kiln only downloads over verified HTTPS; if a proxy re-signs TLS, point "
                    "KILN_CA_BUNDLE at its CA certificate (PEM); otherwise " + o.offline_hint);
      if (err == httplib::Error::Connection || err == httplib::Error::ConnectionTimeout ||
          err == httplib::Error::SSLConnection)
        throw Error(current + ": cannot connect (" + why + "): this machine looks offline", o.offline_hint);
      throw Error(current + ": download failed (" + why + ")", o.offline_hint);
    }
    if (redirect) {
      if (hop >= 10) fail(url_text, "at most 10 redirects", "more");
      std::string location = res->get_header_value("Location");
      if (location.empty()) fail(current + ": HTTP " + std::to_string(res->status), "a Location header", "none");
      current = redirect_target(url, current, location);
      continue;
    }
    if (res->status != 200) fail(current, "HTTP status 200", std::to_string(res->status), o.offline_hint);
    break;
  }
  if (!o.quiet) {
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "downloaded %.1f MiB in %.1f s\n", body.size() / 1048576.0, sec);
  }
  return body;
}

fs::path download_cifar100(const DownloadConfig& cfg) {
  const fs::path target = cfg.dir / "cifar-100-python";
  (void)parse_url(cfg.url);
  fs::create_directories(cfg.dir);

  Md5 md5;
  FetchOptions fo;
  fo.ca_bundle = cfg.ca_bundle;
  fo.timeout_s = cfg.timeout_s;
  fo.quiet = cfg.quiet;
  fo.max_bytes = size_t(1) << 30;  // CIFAR-100 is 161 MiB
  fo.offline_hint = manual_hint(cfg.dir);
  fo.on_data = [&](const char* p, size_t n) { md5.update(p, n); };
  std::string body = https_get(cfg.url, fo);
  const std::string got = md5.hex();
  if (!cfg.md5.empty() && got != cfg.md5)
    fail(cfg.url + " (" + std::to_string(body.size()) + " bytes)", "MD5 " + cfg.md5, "MD5 " + got,
         "the download is damaged or not the official archive; nothing was written, try again");
  if (!cfg.quiet) std::fprintf(stderr, "MD5 %s%s\n", got.c_str(), cfg.md5.empty() ? " (not checked)" : " (ok)");

  // Validate the whole dataset before anything lands in the target directory.
  (void)parse_cifar_python_targz(body, cfg.url);
  const std::vector<io::TarEntry> entries =
      io::parse_tar(io::gunzip(body, cfg.url, size_t(512) << 20), cfg.url);
  body.clear();
  body.shrink_to_fit();

  Cleanup tmp{cfg.dir / (".cifar-100-python.part-" + suffix())};
  fs::create_directories(tmp.path);
  for (const auto& e : entries) {
    // io::parse_tar rejects absolute names and "..": the paths stay inside tmp.
    if (!e.name.starts_with("cifar-100-python/") && e.name != "cifar-100-python") continue;
    const fs::path p = tmp.path / e.name;
    if (e.is_dir) {
      fs::create_directories(p);
    } else {
      fs::create_directories(p.parent_path());
      write_file_atomic(p, e.data);
    }
  }
  std::error_code ec;
  if (fs::exists(target, ec)) {
    // Replacing a copy (--force): move the old one aside, and back if the rename fails.
    const fs::path old = cfg.dir / (".cifar-100-python.old-" + suffix());
    fs::rename(target, old);
    fs::rename(tmp.path / "cifar-100-python", target, ec);
    if (ec) {
      fs::rename(old, target);
      throw Error(target.string() + ": cannot move the new dataset into place: " + ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp.path / "cifar-100-python", target);
  }
  return target;
}

}  // namespace kiln::data
