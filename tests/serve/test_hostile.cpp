// Hostile clients against a server process of its own (serve_stub: the server library with the
// tests' predictor), over real sockets on 127.0.0.1: malformed and crafted JPEG/PNG files, decode
// bombs, huge JSON arrays, chunked floods on every route, compressed bodies, endless request lines
// and header floods, slow clients, 1000 connections at once, a 2048-image request next to small
// ones and one whose client leaves. Each case expects a 4xx/503 or a closed connection; throughout,
// a health checker's GET /ping (a new connection every 100 ms) must answer 200 within 2 s, and the
// server's RSS must stay under its baseline + the memory budget (64 MiB) + 96 MiB.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <future>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "helpers.h"

using namespace kiln;
using namespace kiln::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kBudgetMiB = 64;
constexpr int64_t kSlackMiB = 96;

int64_t rss_kib(pid_t pid, const char* field = "VmRSS:") {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::strlen(field)));
  return -1;
}

int connect_to(int port, bool nonblocking = false) {
  int fd = ::socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  REQUIRE((rc == 0 || (nonblocking && errno == EINPROGRESS)));
  return fd;
}

// The server process, a health checker and an RSS sampler, for one test case.
class Hostile {
 public:
  explicit Hostile(std::vector<std::string> extra = {}) {
    const char* stub = std::getenv("KILN_SERVE_STUB");
    REQUIRE_MESSAGE(stub, "KILN_SERVE_STUB must name the serve_stub binary (meson test sets it)");
    std::vector<std::string> args = {stub, "--budget-mb", std::to_string(kBudgetMiB),
                                     "--max-connections", "256", "--header-timeout-ms", "1500",
                                     "--request-timeout-ms", "4000"};
    args.insert(args.end(), extra.begin(), extra.end());
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test that crashed
      ::dup2(out[1], 1);
      ::close(out[0]);
      // ASan keeps freed memory in quarantine (256 MiB by default): keep it small so RSS shows
      // what the server holds.
      std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
      asan += (asan.empty() ? "" : ":") + std::string("quarantine_size_mb=8:thread_local_quarantine_size_kb=64");
      ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    char buf[64] = {};
    pollfd p{out[0], POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10000) == 1);
    REQUIRE(::read(out[0], buf, sizeof buf - 1) > 0);
    ::close(out[0]);
    REQUIRE(std::sscanf(buf, "port %d", &port_) == 1);
    httplib::Client c("127.0.0.1", port_);
    auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      auto r = c.Get("/ping");
      if (r && r->status == 200) break;
      std::this_thread::sleep_for(20ms);
    }
    baseline_kib_ = rss_kib(pid_);
    watcher_ = std::thread([this] { watch(); });
  }

  ~Hostile() {
    done_ = true;
    if (watcher_.joinable()) watcher_.join();
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 300 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(50ms);
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }

  int port() const { return port_; }

  // After the attack: /ping still answers, and the bounds held throughout.
  void check() {
    // A last ping after the attack, on a fresh connection.
    auto t0 = Clock::now();
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(2, 0);
    auto r = c.Get("/ping");
    CHECK_MESSAGE((r && r->status == 200), "/ping after the attack failed");
    CHECK(Clock::now() - t0 < 2s);
    done_ = true;
    watcher_.join();
    const int64_t peak_mib = (peak_kib_ - baseline_kib_) / 1024;
    MESSAGE("server RSS: baseline " << baseline_kib_ / 1024 << " MiB, peak +" << peak_mib
                                    << " MiB; worst /ping " << worst_ping_ms_ << " ms over "
                                    << pings_ << " pings");
    CHECK(peak_mib <= kBudgetMiB + kSlackMiB);
    CHECK(ping_failures_ == 0);
    CHECK(worst_ping_ms_ < 2000);
    CHECK(pings_ > 0);
  }

 private:
  void watch() {
    auto next_ping = Clock::now();
    while (!done_) {
      peak_kib_ = std::max(peak_kib_, rss_kib(pid_));
      if (Clock::now() >= next_ping) {
        auto t0 = Clock::now();
        httplib::Client c("127.0.0.1", port_);  // a new connection, as a health checker
        c.set_connection_timeout(2, 0);
        c.set_read_timeout(2, 0);
        auto r = c.Get("/ping");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        ++pings_;
        if (!r || r->status != 200) ++ping_failures_;
        worst_ping_ms_ = std::max(worst_ping_ms_, ms);
        next_ping = Clock::now() + 100ms;
      }
      std::this_thread::sleep_for(20ms);
    }
    peak_kib_ = std::max(peak_kib_, rss_kib(pid_));
  }

  pid_t pid_ = -1;
  int port_ = -1;
  int64_t baseline_kib_ = 0, peak_kib_ = 0;
  std::thread watcher_;
  std::atomic<bool> done_{false};
  int pings_ = 0, ping_failures_ = 0;
  double worst_ping_ms_ = 0;
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;  // closed without an answer
  return std::atoi(response.c_str() + 9);
}

// One request (head + body as given) on a fresh connection; the status, or -1 if closed unanswered.
int send_once(int port, const std::string& bytes, std::string* response = nullptr) {
  std::string r = raw_request(port, bytes, 10s);
  if (response) *response = r;
  return status_of(r);
}

std::string post_head(const std::string& path, const std::string& type, size_t length) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(length) + "\r\nConnection: close\r\n\r\n";
}

// Streams `head` then `piece` repeatedly until the server answers or closes, or `limit` bytes are
// sent. Returns the status answered (-1: closed without an answer, 0: never stopped us).
int flood(int port, const std::string& head, const std::string& piece, size_t limit,
          size_t* sent_out = nullptr) {
  int fd = connect_to(port);
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  size_t sent = 0;
  std::string answer;
  char buf[4096];
  auto deadline = Clock::now() + 30s;
  while (sent < limit && Clock::now() < deadline) {
    pollfd p{fd, POLLIN | POLLOUT, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r <= 0) break;
      answer.append(buf, static_cast<size_t>(r));
      if (answer.find("\r\n\r\n") != std::string::npos) break;
      continue;
    }
    ssize_t w = ::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN) break;
    if (w > 0) sent += static_cast<size_t>(w);
  }
  // Collect the answer if it is on its way.
  for (int i = 0; i < 20 && answer.find("\r\n\r\n") == std::string::npos; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    answer.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  if (sent_out) *sent_out = sent;
  if (sent >= limit && answer.empty()) return 0;
  return status_of(answer);
}

std::string chunk(size_t n, char fill) {
  char line[32];
  std::snprintf(line, sizeof line, "%zx\r\n", n);
  return line + std::string(n, fill) + "\r\n";
}

// The JPEG fixture with its first DHT segment's code counts raised past 256 codes (the table
// stb_image 2.27 overflowed): the counts become 16 x 17 = 272 codes, the symbols are padding.
std::string crafted_dht_jpeg(const std::string& jpg) {
  size_t at = jpg.find("\xff\xc4", 2);
  REQUIRE(at != std::string::npos);
  const size_t len = (static_cast<unsigned char>(jpg[at + 2]) << 8) | static_cast<unsigned char>(jpg[at + 3]);
  std::string seg = "\xff\xc4";
  const size_t new_len = 2 + 1 + 16 + 272;
  seg += static_cast<char>(new_len >> 8);
  seg += static_cast<char>(new_len & 0xff);
  seg += jpg[at + 4];  // table class and id
  seg += std::string(16, '\x11');
  for (int i = 0; i < 272; ++i) seg += static_cast<char>(i & 0xff);
  return jpg.substr(0, at) + seg + jpg.substr(at + 2 + len);
}

// Malformed variants of a valid file: truncations, byte flips (deterministic), and for JPEG a SOF
// claiming 65500 x 65500 and one claiming 0 x 0; for PNG an IHDR claiming 100000 x 100000 and a
// broken CRC.
std::vector<std::string> malformed(const std::string& good, bool jpeg) {
  std::vector<std::string> out;
  for (size_t n = 0; n < good.size(); n += std::max<size_t>(1, good.size() / 40)) out.push_back(good.substr(0, n));
  uint32_t s = jpeg ? 7u : 11u;
  for (int i = 0; i < 80; ++i) {
    std::string v = good;
    for (int k = 0; k < 1 + i % 4; ++k) {
      s = s * 1664525u + 1013904223u;
      v[(s >> 8) % v.size()] = static_cast<char>(s >> 24);
    }
    out.push_back(v);
  }
  if (jpeg) {
    out.push_back(crafted_dht_jpeg(good));
    size_t sof = good.find("\xff\xc0", 2);
    REQUIRE(sof != std::string::npos);
    std::string big = good;
    big[sof + 5] = big[sof + 7] = '\xff';
    big[sof + 6] = big[sof + 8] = '\xdc';
    out.push_back(big);
    std::string zero = good;
    zero[sof + 5] = zero[sof + 6] = zero[sof + 7] = zero[sof + 8] = 0;
    out.push_back(zero);
  } else {
    std::string huge = good;
    const unsigned char dims[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};
    std::memcpy(huge.data() + 16, dims, 8);
    out.push_back(huge);
    std::string crc = good;
    crc[29] = static_cast<char>(crc[29] ^ 0x55);
    out.push_back(crc);
  }
  return out;
}

const char* kBombScript = R"PY(
import struct, zlib
def png(w, h, depth, color, rows):
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, depth, color, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(rows, 9)) + chunk(b'IEND', b'')
# 16-bit RGB 4096 x 4096 of zeros: ~100 KB of file, 50 MB of 8-bit RGB (100 MB at 16 bits) decoded.
w = 4096
open('bomb16.png', 'wb').write(png(w, w, 16, 2, (b'\0' + b'\0' * (w * 6)) * w))
)PY";

}  // namespace

TEST_CASE("hostile: malformed and crafted JPEG/PNG files are 400, the crafted DHT among them") {
  Hostile h;
  const std::string jpg = read_bytes(fixtures_dir() / "img32.jpg");
  const std::string png = read_bytes(fixtures_dir() / "img32.png");
  int counts[2] = {0, 0};
  for (int kind = 0; kind < 2; ++kind) {
    const bool jpeg = kind == 0;
    const char* type = jpeg ? "image/jpeg" : "image/png";
    const auto corpus = malformed(jpeg ? jpg : png, jpeg);
    // The corpus goes to the fuzzer's seeds too (tests/fuzz: serve_codec), when asked.
    if (const char* seeds = std::getenv("KILN_SERVE_SEED_DIR")) {
      fs::create_directories(seeds);
      for (size_t i = 0; i < corpus.size(); ++i)
        write_text(fs::path(seeds) / (std::string(jpeg ? "jpeg_" : "png_") + std::to_string(i)),
                    std::string(1, jpeg ? '\3' : '\2') + corpus[i]);  // the harness's type byte
    }
    // Several clients at once, as in a server with other requests in flight.
    std::vector<std::future<std::pair<int, size_t>>> results;
    std::atomic<size_t> next{0};
    for (int t = 0; t < 4; ++t)
      results.push_back(std::async(std::launch::async, [&] {
        int bad = 0;
        size_t n = 0;
        for (size_t i; (i = next++) < corpus.size(); ++n) {
          const int st = send_once(h.port(), post_head("/invocations", type, corpus[i].size()) + corpus[i]);
          if (st != 200 && st != 400) ++bad;
        }
        return std::make_pair(bad, n);
      }));
    for (auto& r : results) {
      auto [bad, n] = r.get();
      CHECK(bad == 0);
      counts[kind] += static_cast<int>(n);
    }
    if (jpeg) {
      std::string answer;
      const std::string crafted = crafted_dht_jpeg(jpg);
      CHECK(send_once(h.port(), post_head("/invocations", type, crafted.size()) + crafted, &answer) == 400);
      CHECK(answer.find("JPEG") != std::string::npos);
    }
  }
  MESSAGE(counts[0] << " malformed JPEGs and " << counts[1] << " malformed PNGs sent");
  h.check();
}

TEST_CASE("hostile: decode bombs and huge JSON arrays are refused or fit the memory budget") {
  fs::path dir = make_temp_dir("serve-hostile_bombs");
  run_python(dir, "bomb.py", kBombScript);
  const std::string bomb = read_bytes(dir / "bomb16.png");
  Hostile h({"--batch-delay-ms", "20"});
  // Eight 16-bit 4096 x 4096 PNGs at once: each needs ~50 MB decoded, the budget is 64 MiB, so at
  // most one decodes at a time and the others are 503 with Retry-After.
  std::vector<std::future<std::string>> bombs;
  for (int i = 0; i < 8; ++i)
    bombs.push_back(std::async(std::launch::async, [&] {
      std::string r;
      send_once(h.port(), post_head("/invocations", "image/png", bomb.size()) + bomb, &r);
      return r;
    }));
  int ok = 0, busy = 0;
  for (auto& f : bombs) {
    std::string r = f.get();
    const int st = status_of(r);
    CHECK((st == 200 || st == 503));
    if (st == 200) ++ok;
    if (st == 503) {
      ++busy;
      CHECK(r.find("Retry-After: 1") != std::string::npos);
    }
  }
  MESSAGE(ok << " bombs decoded, " << busy << " refused with 503");
  CHECK(busy > 0);
  // One valid image, then 3 million zeros: 400 at the first zero, nothing reserved for 3M images.
  std::string img = "[";
  for (int c = 0; c < 3; ++c) {
    img += c ? ",[" : "[";
    for (int y = 0; y < 32; ++y) {
      img += y ? ",[" : "[";
      for (int x = 0; x < 32; ++x) img += x ? ",0" : "0";
      img += "]";
    }
    img += "]";
  }
  img += "]";
  std::string zeros = "{\"instances\": [" + img;
  while (zeros.size() < (6u << 20) - 16) zeros += ",0";
  zeros += "]}";
  std::string answer;
  CHECK(send_once(h.port(), post_head("/invocations", "application/json", zeros.size()) + zeros, &answer) == 400);
  CHECK(answer.find("ragged") != std::string::npos);
  // 6 MiB of numbers in one flat list (shape (3M,)): 400, parsed at 4 bytes per number.
  std::string flat = "[0";
  while (flat.size() < (6u << 20) - 16) flat += ",0";
  flat += "]";
  CHECK(send_once(h.port(), post_head("/invocations", "application/json", flat.size()) + flat) == 400);
  // Deep nesting outside the instances.
  std::string deep = "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + ", \"instances\": [1]}";
  CHECK(send_once(h.port(), post_head("/invocations", "application/json", deep.size()) + deep) == 400);
  h.check();
  fs::remove_all(dir);
}

TEST_CASE("hostile: chunked and compressed floods on every route, long request lines, header floods") {
  Hostile h;
  const std::string piece = chunk(64 << 10, 'z');
  // A 400 MB chunked body to any route is stopped at the 6 MiB limit (413), whatever the method.
  for (const char* target : {"POST /ping", "PUT /x", "GET /metrics", "POST /invocations", "DELETE /"}) {
    INFO(target);
    std::string head = std::string(target) +
                       " HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    size_t sent = 0;
    const int st = flood(h.port(), head, piece, size_t{400} << 20, &sent);
    CHECK(st == 413);
    CHECK(sent < (size_t{64} << 20));
  }
  // Declared bodies over the limit are refused before they are read.
  CHECK(flood(h.port(), "PUT /x HTTP/1.1\r\nContent-Length: 400000000\r\n\r\n", std::string(1 << 16, 'x'),
              size_t{400} << 20) == 413);
  // Compressed bodies are refused, not inflated (6 MB of gzip zeros would be gigabytes).
  CHECK(send_once(h.port(), "POST /invocations HTTP/1.1\r\nContent-Type: application/x-npy\r\n"
                            "Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd") == 415);
  CHECK(send_once(h.port(), "POST /ping HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n") == 501);
  // Smuggling shapes: both framings, or two lengths.
  CHECK(send_once(h.port(), "POST /invocations HTTP/1.1\r\nContent-Length: 4\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400);
  CHECK(send_once(h.port(), "POST /invocations HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde") == 400);
  // An endless request line, one endless header, endless header lines.
  CHECK(flood(h.port(), "GET /", std::string(1 << 16, 'a'), size_t{200} << 20) == 414);
  CHECK(flood(h.port(), "GET /ping HTTP/1.1\r\nX-Long: ", std::string(1 << 16, 'b'), size_t{200} << 20) == 431);
  std::string lines;
  for (int i = 0; i < 2000; ++i) lines += "X-H: v\r\n";
  CHECK(flood(h.port(), "GET /ping HTTP/1.1\r\n", lines, size_t{200} << 20) == 431);
  // An endless chunk-size line and chunk trailers that never end.
  CHECK(flood(h.port(), "POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", std::string(1 << 16, 'f'),
              size_t{200} << 20) == 400);
  CHECK(flood(h.port(), "POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", lines,
              size_t{200} << 20) == 431);
  // Not HTTP at all.
  static const char kTls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls\r\n\r\n";
  CHECK(send_once(h.port(), std::string(kTls, sizeof kTls - 1)) == 400);
  h.check();
}

TEST_CASE("hostile: slow clients and 1000 connections at once do not starve /ping") {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
  ::setrlimit(RLIMIT_NOFILE, &lim);
  REQUIRE(lim.rlim_cur >= 1100);
  Hostile h;
  // 300 clients (the bound is 256) that each send one byte of their head every 200 ms.
  std::vector<int> slow;
  for (int i = 0; i < 300; ++i) slow.push_back(connect_to(h.port()));
  const std::string head = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  auto t0 = Clock::now();
  size_t closed = 0;
  for (size_t at = 0; at < head.size() && closed < slow.size(); ++at) {
    closed = 0;
    for (int fd : slow) {
      char c = head[std::min(at, head.size() - 3)];  // never completes the head
      if (::send(fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) ++closed;
    }
    std::this_thread::sleep_for(200ms);
    if (Clock::now() - t0 > 6s) break;
  }
  // Each was closed: by eviction (the oldest, to make room), or at its head's deadline (1.5 s)
  // with 408.
  int answered_408 = 0, shut = 0;
  for (int fd : slow) {
    char buf[256];
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) == 1) {
      ssize_t r = ::recv(fd, buf, sizeof buf - 1, 0);
      if (r > 0 && std::string(buf, static_cast<size_t>(r)).rfind("HTTP/1.1 408", 0) == 0) ++answered_408;
      else ++shut;
    }
    ::close(fd);
  }
  MESSAGE("slow clients: " << answered_408 << " answered 408, " << shut << " closed");
  CHECK(answered_408 + shut == 300);
  // 1000 connections opened at once, each then sending a /ping: all answered 200 or 503, or closed
  // (evicted) — and the health checker keeps getting through.
  std::vector<int> many;
  for (int i = 0; i < 1000; ++i) many.push_back(connect_to(h.port(), true));
  std::this_thread::sleep_for(300ms);
  const std::string ping = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int fd : many) ::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL);
  int ok = 0, other = 0;
  for (int fd : many) {
    pollfd p{fd, POLLIN, 0};
    char buf[512];
    if (::poll(&p, 1, 3000) == 1) {
      ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      const int st = r > 0 ? status_of(std::string(buf, static_cast<size_t>(r))) : -1;
      if (st == 200) ++ok;
      else if (st == 503 || st == -1) ++other;
    }
    ::close(fd);
  }
  MESSAGE("1000 connections: " << ok << " pings answered 200, " << other << " refused or closed");
  CHECK(ok + other == 1000);
  CHECK(ok > 0);
  h.check();
}

TEST_CASE("hostile: a 2048-image request is interleaved with small ones and dropped when its client leaves") {
  Hostile h({"--max-batch", "64", "--batch-delay-ms", "30"});
  // uint8 (2000,32,32,3): 6 MB of pixels (what fits in 6 MiB), 32 forward passes of 64.
  std::string npy("\x93NUMPY\x01\x00", 8);
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2000, 32, 32, 3), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  npy += static_cast<char>(header.size() & 0xff);
  npy += static_cast<char>(header.size() >> 8);
  npy += header + std::string(size_t{2000} * 32 * 32 * 3, '\x10');
  const std::string big = post_head("/invocations", "application/x-npy", npy.size()) + npy;
  const std::string small_body = read_bytes(fixtures_dir() / "single_f32.npy");
  const std::string small = post_head("/invocations", "application/x-npy", small_body.size()) + small_body;
  auto big_done = std::async(std::launch::async, [&] { return send_once(h.port(), big); });
  std::this_thread::sleep_for(100ms);  // the big one is running
  auto t0 = Clock::now();
  CHECK(send_once(h.port(), small) == 200);
  const double small_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  CHECK(big_done.get() == 200);
  const double big_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  MESSAGE("small request next to a 2000-image one: " << small_ms << " ms (the big one took " << big_ms << " ms more)");
  CHECK(small_ms < big_ms / 3);  // a few passes, not the 32 of the big request
  // A client that sends the big request and leaves: its remaining passes are not run.
  auto images = [&] {
    httplib::Client c("127.0.0.1", h.port());
    std::string m = c.Get("/metrics")->body;
    size_t p = m.rfind("\nkiln_images_total ");
    return std::stoll(m.substr(p + 19));
  };
  const int64_t before = images();
  int fd = connect_to(h.port());
  ::send(fd, big.data(), big.size(), MSG_NOSIGNAL);
  std::this_thread::sleep_for(300ms);
  ::close(fd);
  std::this_thread::sleep_for(2000ms);  // 32 passes of 30 ms would have finished by now
  const int64_t run = images() - before;
  MESSAGE("images run for the request whose client left: " << run << " of 2000");
  CHECK(run < 2000);
  h.check();
}
