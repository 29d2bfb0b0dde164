// `kiln download cifar100` against a local HTTPS server on 127.0.0.1 (cpp-httplib SSLServer,
// self-signed certificate made here with the openssl CLI) serving a generated archive, a
// corrupted one, nothing (refused connection), and with an untrusted certificate.
#include <doctest/doctest.h>

#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/download.h"
#include "tests/support/support.h"
#include "tests/data/https_fixture.h"

using namespace kiln::data;
namespace kt = kiln::test;
namespace fs = std::filesystem;

namespace {

using kiln::test::error_of;

// Everything the download tests share: archives and a running HTTPS server.
struct Fixture {
  kt::TempDir dir{"dl"};
  std::string good, bad;
  kt::HttpsServer https;
  int port = 0;

  Fixture() {
    std::string out;
    const std::string gen = kt::quote(kt::python()) + " " +
                            kt::quote(kt::source_root().string() + "/tests/data/make_cifar_python.py") + " " +
                            kt::quote((dir.path / "src").string()) + " 30 10";
    REQUIRE_MESSAGE(kt::run(gen, &out) == 0, out);
    good = kiln::read_file(dir.path / "src" / "cifar-100-python.tar.gz");
    bad = good;
    bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 1);
    https.server->Get("/good.tar.gz", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(good, "application/gzip");
    });
    https.server->Get("/bad.tar.gz", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(bad, "application/gzip");
    });
    https.server->Get("/moved", [](const httplib::Request&, httplib::Response& r) { r.set_redirect("/good.tar.gz"); });
    https.start();
    port = https.port;
  }
  std::string url(const std::string& path) const { return https.url(path); }
  DownloadConfig cfg(const fs::path& to, const std::string& path) const {
    DownloadConfig c;
    c.url = url(path);
    c.md5 = md5_hex(good);
    c.dir = to;
    c.ca_bundle = https.ca_file();
    c.timeout_s = 5;
    c.quiet = true;
    return c;
  }
};

// Nothing but the given names in a directory (no temporary folders left behind).
std::vector<std::string> listing(const fs::path& d) {
  std::vector<std::string> v;
  if (!fs::exists(d)) return v;
  for (const auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("download: verified HTTPS, checksum, extraction into place") {
  Fixture f;
  const fs::path to = f.dir.path / "data";
  const fs::path got = download_cifar100(f.cfg(to, "/good.tar.gz"));
  CHECK(got == to / "cifar-100-python");
  CHECK(listing(to) == std::vector<std::string>{"cifar-100-python"});
  const Cifar100 c = load_cifar100(to);
  CHECK(c.format == "python");
  CHECK(c.train.size() == 30);
  const Cifar100 ref = load_cifar100(f.dir.path / "src" / "cifar-100-binary");
  CHECK(c.train.images == ref.train.images);
  CHECK(c.test.labels == ref.test.labels);

  // Redirects are followed; a second download replaces the first in one rename.
  download_cifar100(f.cfg(to, "/moved"));
  CHECK(listing(to) == std::vector<std::string>{"cifar-100-python"});
}

TEST_CASE("download: a checksum mismatch leaves nothing behind") {
  Fixture f;
  const fs::path to = f.dir.path / "data";
  const std::string e = error_of([&] { download_cifar100(f.cfg(to, "/bad.tar.gz")); });
  CHECK(e.find("expected MD5 " + md5_hex(f.good)) != std::string::npos);
  CHECK(e.find("found MD5 " + md5_hex(f.bad)) != std::string::npos);
  CHECK(listing(to).empty());
  // With the damaged archive's own checksum, the archive itself is rejected, still leaving nothing.
  DownloadConfig c = f.cfg(to, "/bad.tar.gz");
  c.md5 = md5_hex(f.bad);
  const std::string e2 = error_of([&] { download_cifar100(c); });
  CHECK(e2 != "(no error)");
  MESSAGE("damaged archive with a matching checksum: ", e2);
  CHECK(listing(to).empty());
  CHECK(error_of([&] { download_cifar100(f.cfg(to, "/missing")); }).find("found 404") != std::string::npos);
  CHECK(listing(to).empty());
}

TEST_CASE("download: an untrusted certificate is refused") {
  Fixture f;
  DownloadConfig c = f.cfg(f.dir.path / "data", "/good.tar.gz");
  kt::TempDir other("ca");
  std::string out;
  REQUIRE(kt::run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                  "-subj /CN=other -keyout " + kt::quote((other.path / "k.pem").string()) +
                  " -out " + kt::quote((other.path / "c.pem").string()), &out) == 0);
  c.ca_bundle = (other.path / "c.pem").string();
  const std::string e = error_of([&] { download_cifar100(c); });
  CHECK(e.find("certificate could not be verified") != std::string::npos);
  CHECK(listing(f.dir.path / "data").empty());
}

TEST_CASE("download: offline (refused connection) fails fast and says where to put the files") {
  // A port that was free a moment ago: nothing listens there.
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    ::close(fd);  // bound but never listened on: connecting is refused
  }
  kt::TempDir d("offline");
  DownloadConfig c;
  c.url = "https://127.0.0.1:" + std::to_string(port) + "/cifar-100-python.tar.gz";
  c.dir = d.path / "data";
  c.quiet = true;
  c.timeout_s = 5;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = error_of([&] { download_cifar100(c); });
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(e.find("looks offline") != std::string::npos);
  CHECK(e.find("cifar-100-python.tar.gz") != std::string::npos);
  CHECK(e.find(kCifar100Md5) != std::string::npos);
  CHECK(error_of([&] { c.url = "http://example.com/x"; download_cifar100(c); }).find("https://") != std::string::npos);
}

TEST_CASE("md5_hex matches the known digest of a short string") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
}

TEST_CASE("kiln download cifar100: KILN_CA_BUNDLE and KILN_CIFAR100_MD5 from the environment") {
  Fixture f;
  const fs::path to = f.dir.path / "cli";
  const std::string env = "KILN_CA_BUNDLE=" + kt::quote(f.https.ca_file()) +
                          " KILN_CIFAR100_MD5=" + md5_hex(f.good) + " ";
  const std::string cmd = env + kt::quote(kt::kiln_bin()) + " download cifar100 --dir " +
                          kt::quote(to.string()) + " --url " + f.url("/good.tar.gz");
  std::string out;
  REQUIRE_MESSAGE(kt::run(cmd, &out) == 0, out);
  CHECK(out.find("ready in") != std::string::npos);
  CHECK(load_cifar100(to).test.size() == 10);
  REQUIRE(kt::run(cmd, &out) == 0);
  CHECK(out.find("already in") != std::string::npos);
  // Without the test CA the same server is refused (the system's CAs do not trust it).
  REQUIRE(kt::run("KILN_CIFAR100_MD5=" + md5_hex(f.good) + " " + kt::quote(kt::kiln_bin()) +
                  " download cifar100 --force --dir " + kt::quote(to.string()) + " --url " +
                  f.url("/good.tar.gz"), &out) == 1);
  CHECK(out.find("kiln download: error:") != std::string::npos);
  CHECK(out.find("certificate") != std::string::npos);
  CHECK(listing(to) == std::vector<std::string>{"cifar-100-python"});
}

TEST_CASE("download: a redirect from https to http is refused before anything is fetched over http") {
  Fixture f;
  // A plain-HTTP server that would serve the archive: it must never be asked.
  httplib::Server plain;
  std::atomic<int> asked{0};
  plain.Get("/good.tar.gz", [&](const httplib::Request&, httplib::Response& r) {
    ++asked;
    r.set_content(f.good, "application/gzip");
  });
  const int plain_port = plain.bind_to_any_port("127.0.0.1");
  std::thread t([&] { plain.listen_after_bind(); });
  const std::string http_url = "http://127.0.0.1:" + std::to_string(plain_port) + "/good.tar.gz";
  f.https.server->Get("/downgrade", [&](const httplib::Request&, httplib::Response& r) { r.set_redirect(http_url); });
  f.https.server->Get("/hop", [](const httplib::Request&, httplib::Response& r) { r.set_redirect("/downgrade"); });
  f.https.server->Get("/loop", [](const httplib::Request&, httplib::Response& r) { r.set_redirect("/loop"); });

  const fs::path to = f.dir.path / "data";
  for (const char* path : {"/downgrade", "/hop"}) {
    CAPTURE(path);
    const std::string msg = error_of([&] { download_cifar100(f.cfg(to, path)); });
    CHECK(msg.find("redirects to http://...: refusing to leave https (a downgrade)") != std::string::npos);
    CHECK(msg.find("/downgrade") != std::string::npos);  // names the hop that downgraded
  }
  CHECK(asked == 0);
  CHECK(listing(to).empty());
  CHECK(error_of([&] { download_cifar100(f.cfg(to, "/loop")); }).find("at most 10 redirects") != std::string::npos);
  plain.stop();
  t.join();
}
