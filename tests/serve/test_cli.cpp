// End to end: the real `kiln serve` binary (KILN_BIN) on a model directory made at test time
// (torchvision resnet18, random weights, saved by torch.save, converted by `kiln import`), with
// request bodies from numpy's np.save, PIL and json. Answers are checked against PyTorch 1.13's
// log_softmax(model(x)); batched answers against unbatched ones; SIGTERM drains in-flight
// requests; and the AVX2 path (KILN_ISA=avx2 + ONEDNN_MAX_CPU_ISA=AVX2) against AVX-512.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fcntl.h>
#include <future>
#include <httplib.h>
#include <map>
#include <nlohmann/json.hpp>

#include "helpers.h"
#include "kiln/io/npy.h"

using namespace kiln;
using namespace kiln::test;
using namespace std::chrono_literals;

namespace {

// Largest |log-prob| difference accepted between kiln and PyTorch, between batched and unbatched
// answers, and between the AVX2 and AVX-512 paths (fp32 sums in different orders).
constexpr double kTolerance = 2e-4;

const char* kModelScript = R"PY(
import json, numpy as np, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=100)
with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.1, 0.1)
m.eval()
torch.save(m.state_dict(), 'model/model.pth')
names = ['class_%02d' % i for i in range(100)]
json.dump({'format': 'kiln-model', 'version': 1, 'arch': 'resnet18', 'num_classes': 100,
           'class_names': names, 'mean': [0.507, 0.487, 0.441], 'std': [0.267, 0.256, 0.276],
           'image_size': 32, 'dataset': 'synthetic'}, open('model/config.json', 'w'))
mean = np.array([0.507, 0.487, 0.441], np.float32).reshape(3, 1, 1)
std = np.array([0.267, 0.256, 0.276], np.float32).reshape(3, 1, 1)
def ref(x):
    with torch.no_grad():
        return torch.log_softmax(m(torch.from_numpy(x)), 1).numpy()
rng = np.random.default_rng(5)
x4 = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
np.save('batch4.npy', x4); np.save('batch4_ref.npy', ref(x4))
singles = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
np.save('singles_ref.npy', ref(singles))
for i in range(24):
    np.save('single_%02d.npy' % i, singles[i:i + 1])
u8 = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
np.save('pixels.npy', u8)
norm = ((np.moveaxis(u8.astype(np.float32) / np.float32(255), -1, -3) - mean) / std).astype(np.float32)
np.save('pixels_ref.npy', ref(norm))
json.dump({'instances': u8.tolist()}, open('pixels.json', 'w'))
from PIL import Image
Image.fromarray(u8[0]).save('img.png')
Image.fromarray(u8[1]).save('img.jpg', quality=95)
np.save('big.npy', rng.standard_normal((96, 3, 32, 32)).astype(np.float32))
)PY";

struct Fixture {
  fs::path dir;
  std::string bin;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    const char* bin = std::getenv("KILN_BIN");
    REQUIRE_MESSAGE(bin != nullptr, "KILN_BIN must name the kiln binary (meson test sets it)");
    x.bin = bin;
    x.dir = make_temp_dir("serve-cli");
    fs::create_directories(x.dir / "model");
    run_python(x.dir, "make_model.py", kModelScript);
    std::string cmd = "'" + x.bin + "' import '" + (x.dir / "model" / "model.pth").string() +
                      "' --output '" + (x.dir / "model" / "model.safetensors").string() +
                      "' > /dev/null";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "kiln import failed: " << cmd);
    return x;
  }();
  return f;
}

std::string file(const std::string& name) { return read_bytes(fixture().dir / name); }

std::vector<float> floats(const std::string& npy_bytes, std::vector<int64_t>* shape = nullptr) {
  io::NamedArray a = io::parse_npy(npy_bytes, "npy");
  REQUIRE(a.dtype == io::DType::f32);
  if (shape) *shape = a.shape;
  return std::vector<float>(a.f32(), a.f32() + a.numel());
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

// A `kiln serve` child process on 127.0.0.1 with its stdout/stderr in a log file.
class KilnServe {
 public:
  KilnServe(const std::string& tag, std::vector<std::string> extra_args,
            std::map<std::string, std::string> env = {}) {
    log_ = fixture().dir / ("serve_" + tag + ".log");
    std::vector<std::string> args = {fixture().bin, "serve", "--model-dir",
                                     (fixture().dir / "model").string(), "--host", "127.0.0.1",
                                     "--port", "0", "--threads", "2"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    started_ = std::chrono::steady_clock::now();
    proc_ = std::make_unique<ChildProcess>(
        args, log_, std::vector<std::pair<std::string, std::string>>(env.begin(), env.end()));
    // The port: kiln prints "listening on http://127.0.0.1:PORT" as soon as it has bound.
    const std::string marker = "listening on http://127.0.0.1:";
    proc_->wait_until(
        [&] {
          std::string log = read_log();
          size_t p = log.find(marker);
          if (p != std::string::npos) port_ = std::atoi(log.c_str() + p + marker.size());
          return port_ > 0;
        },
        10s, 25ms);
    REQUIRE_MESSAGE(port_ > 0, "kiln serve did not start listening: " << read_log());
  }
  ~KilnServe() {
    if (proc_->running()) terminate(30s);
  }

  int port() const { return port_; }
  std::string read_log() const { return read_text(log_); }
  // Seconds from the start of the process to the first /ping 200 (bounded), or -1.
  double wait_ready(std::chrono::seconds timeout = 120s) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(3, 0);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = c.Get("/ping");
      if (r && r->status == 200)
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      if (r) first_ping_status_ = first_ping_status_ ? first_ping_status_ : r->status;
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  int first_ping_status() const { return first_ping_status_; }
  // SIGTERM, then wait (bounded; SIGKILL after the timeout). Returns the exit status, or -1
  // when it had to be killed.
  int terminate(std::chrono::seconds timeout, double* seconds = nullptr) {
    if (!proc_->running()) return -1;
    auto t0 = std::chrono::steady_clock::now();
    int status = proc_->stop(timeout);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s >= std::chrono::duration<double>(timeout).count()) return -1;
    if (seconds) *seconds = s;
    return status;
  }

 private:
  fs::path log_;
  std::unique_ptr<ChildProcess> proc_;
  int port_ = -1;
  int first_ping_status_ = 0;
  std::chrono::steady_clock::time_point started_;
};

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(60, 0);
  c.set_write_timeout(60, 0);
  return c;
}

// The server shared by the test cases below (the last one stops it with SIGTERM).
KilnServe& shared_server() {
  static std::unique_ptr<KilnServe> s = [] {
    auto k = std::make_unique<KilnServe>("main", std::vector<std::string>{"--max-batch", "8"});
    double t = k->wait_ready();
    REQUIRE_MESSAGE(t > 0, "kiln serve never answered /ping 200: " << k->read_log());
    MESSAGE("kiln serve (resnet18, 2 threads): first /ping 200 after " << t << " s; first ping "
            "status " << k->first_ping_status());
    return k;
  }();
  return *s;
}

std::vector<float> post_npy(httplib::Client& c, const std::string& body,
                            const std::string& type = "application/x-npy") {
  auto r = c.Post("/invocations", httplib::Headers{{"Accept", "application/x-npy"}}, body,
                  type.c_str());
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == 200, r->body);
  return floats(r->body);
}

}  // namespace

TEST_CASE("kiln serve answers the SageMaker SDK's request like PyTorch's model") {
  KilnServe& s = shared_server();
  auto c = client(s.port());
  std::vector<int64_t> shape;
  auto r = c.Post("/invocations", httplib::Headers{{"Accept", "application/x-npy"}},
                  file("batch4.npy"), "application/x-npy");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::vector<float> got = floats(r->body, &shape);
  CHECK(shape == std::vector<int64_t>{4, 100});
  double d = max_diff(got, floats(file("batch4_ref.npy")));
  MESSAGE("max |log-prob| difference kiln vs PyTorch 1.13: " << d);
  CHECK(d <= kTolerance);
  CHECK(max_diff(post_npy(c, file("pixels.npy")), floats(file("pixels_ref.npy"))) <= kTolerance);
  CHECK(max_diff(post_npy(c, file("pixels.json"), "application/json"),
                 floats(file("pixels_ref.npy"))) <= kTolerance);
  std::vector<float> ref = floats(file("pixels_ref.npy"));
  std::vector<float> first(ref.begin(), ref.begin() + 100);
  CHECK(max_diff(post_npy(c, file("img.png"), "image/png"), first) <= kTolerance);
  // JPEG is lossy: only check it answers, in JSON with the config's class names.
  auto j = c.Post("/invocations?k=3", file("img.jpg"), "image/jpeg");
  REQUIRE(j);
  CHECK(j->status == 200);
  auto doc = nlohmann::json::parse(j->body);
  CHECK(doc["predictions"][0]["top_k"].size() == 3);
  CHECK(doc["predictions"][0]["top_k"][0]["class"].get<std::string>().rfind("class_", 0) == 0);
}

TEST_CASE("kiln serve: every error is a 4xx with a reason and the server keeps serving") {
  KilnServe& s = shared_server();
  auto c = client(s.port());
  struct Case {
    std::string body, type, accept;
    int status;
  };
  std::vector<Case> cases = {
      {file("batch4.npy"), "text/plain", "", 415},
      {file("batch4.npy"), "application/x-npy", "text/html", 406},
      {std::string((6u << 20) + 100, '\0'), "application/x-npy", "", 413},
      {"\x93NUMPY\x01\x00garbage", "application/x-npy", "", 400},
      {file("big.npy").substr(0, 1000), "application/x-npy", "", 400},
      {"{\"instances\": [[1, 2]]}", "application/json", "", 400},
      {"[1, 2", "application/json", "", 400},
      {file("img.png").substr(0, 100), "image/png", "", 400},
      {file("img.jpg"), "image/png", "", 400},
  };
  for (const Case& k : cases) {
    INFO(k.type << " -> " << k.status);
    httplib::Headers h;
    if (!k.accept.empty()) h.emplace("Accept", k.accept);
    h.emplace("X-Amzn-SageMaker-Custom-Attributes", "case=1");
    auto r = c.Post("/invocations", h, k.body, k.type.c_str());
    REQUIRE(r);
    CHECK(r->status == k.status);
    CHECK(r->get_header_value("X-Amzn-SageMaker-Custom-Attributes") == "case=1");
    CHECK(!r->body.empty());
    CHECK(r->body.find('\n') == r->body.size() - 1);
  }
  CHECK(max_diff(post_npy(c, file("batch4.npy")), floats(file("batch4_ref.npy"))) <= kTolerance);
  std::string log = s.read_log();
  CHECK(log.find("\"POST /invocations\" 415") != std::string::npos);  // access log on stdout
}

TEST_CASE("kiln serve: parallel clients, batched answers equal unbatched ones") {
  KilnServe& s = shared_server();
  const std::vector<float> ref = floats(file("singles_ref.npy"));
  // Unbatched: one request at a time, each a batch of one.
  std::vector<std::vector<float>> alone(24);
  {
    auto c = client(s.port());
    char name[32];
    for (int i = 0; i < 24; ++i) {
      std::snprintf(name, sizeof name, "single_%02d.npy", i);
      alone[size_t(i)] = post_npy(c, file(name));
    }
  }
  auto m0 = client(s.port()).Get("/metrics")->body;
  // Batched: 12 clients at once, 2 images each, several rounds.
  std::atomic<int> bad{0}, good{0};
  std::atomic<double> worst_batched{0}, worst_torch{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t)
    threads.emplace_back([&, t] {
      auto c = client(s.port());
      char name[32];
      for (int round = 0; round < 3; ++round)
        for (int j = 0; j < 2; ++j) {
          int i = (t * 2 + j + round * 5) % 24;
          std::snprintf(name, sizeof name, "single_%02d.npy", i);
          auto r = c.Post("/invocations", file(name), "application/x-npy");
          if (!r || r->status != 200) {
            ++bad;
            continue;
          }
          std::vector<float> got = floats(r->body);
          std::vector<float> want(ref.begin() + i * 100, ref.begin() + (i + 1) * 100);
          double db = max_diff(got, alone[size_t(i)]), dt = max_diff(got, want);
          double prev = worst_batched.load();
          while (db > prev && !worst_batched.compare_exchange_weak(prev, db)) {}
          prev = worst_torch.load();
          while (dt > prev && !worst_torch.compare_exchange_weak(prev, dt)) {}
          (db <= kTolerance && dt <= kTolerance ? good : bad)++;
        }
    });
  for (auto& th : threads) th.join();
  MESSAGE("batched vs unbatched max |diff| " << worst_batched.load() << ", vs PyTorch "
                                             << worst_torch.load());
  CHECK(bad == 0);
  CHECK(good == 12 * 3 * 2);
  std::string m1 = client(s.port()).Get("/metrics")->body;
  auto value = [](const std::string& text, const std::string& series) -> double {
    size_t p = text.rfind("\n" + series + " ");
    return p == std::string::npos ? -1 : std::atof(text.c_str() + p + series.size() + 2);
  };
  double batches = value(m1, "kiln_batch_size_count") - value(m0, "kiln_batch_size_count");
  double images = value(m1, "kiln_batch_size_sum") - value(m0, "kiln_batch_size_sum");
  MESSAGE("72 parallel requests ran as " << batches << " forward passes");
  CHECK(images == 72);
  CHECK(batches < 72);  // some requests shared a forward pass
}

TEST_CASE("kiln serve on the AVX2 path predicts like the AVX-512 path") {
  KilnServe& main_server = shared_server();
  std::vector<float> ref512;
  {
    auto c = client(main_server.port());
    ref512 = post_npy(c, file("batch4.npy"));
    auto more = post_npy(c, file("pixels.npy"));
    ref512.insert(ref512.end(), more.begin(), more.end());
  }
  // ONEDNN_VERBOSE=1 logs each primitive's implementation: proof that oneDNN ran AVX2 kernels.
  KilnServe avx2("avx2", {"--isa", "avx2", "--no-access-log"},
                 {{"KILN_ISA", "avx2"}, {"ONEDNN_MAX_CPU_ISA", "AVX2"}, {"ONEDNN_VERBOSE", "1"}});
  REQUIRE(avx2.wait_ready() > 0);
  CHECK(avx2.read_log().find("isa avx2") != std::string::npos);
  auto c = client(avx2.port());
  std::vector<float> got = post_npy(c, file("batch4.npy"));
  auto more = post_npy(c, file("pixels.npy"));
  got.insert(got.end(), more.begin(), more.end());
  double d = max_diff(got, ref512);
  MESSAGE("max |log-prob| difference AVX2 vs AVX-512 path: " << d);
  CHECK(d <= kTolerance);
  for (size_t i = 0; i < got.size() / 100; ++i) {
    auto a = std::max_element(got.begin() + long(i * 100), got.begin() + long(i * 100 + 100));
    auto b = std::max_element(ref512.begin() + long(i * 100), ref512.begin() + long(i * 100 + 100));
    CHECK(a - got.begin() == b - ref512.begin());
  }
  CHECK(avx2.terminate(30s) == 0);
  std::string log = avx2.read_log();
  CHECK(log.find("exec,cpu,convolution") != std::string::npos);
  CHECK(log.find(":avx2,") != std::string::npos);
  CHECK(log.find("avx512") == std::string::npos);
}

TEST_CASE("kiln serve: SIGTERM finishes in-flight requests and exits 0 within 30 s") {
  KilnServe& s = shared_server();
  const std::string big = file("big.npy");  // 96 images: twelve forward passes each
  std::vector<std::future<int>> inflight;
  for (int i = 0; i < 3; ++i)
    inflight.push_back(std::async(std::launch::async, [&] {
      auto c = client(s.port());
      auto r = c.Post("/invocations", big, "application/x-npy");
      if (!r) return -1;
      std::vector<int64_t> shape;
      if (r->status == 200) floats(r->body, &shape);
      return r->status == 200 && shape == std::vector<int64_t>{96, 100} ? 200 : r->status;
    }));
  // SIGTERM once the first of their forward passes has finished, while the rest are pending.
  auto batches = [&] {
    auto r = client(s.port()).Get("/metrics");
    if (!r) return -1.0;
    size_t p = r->body.rfind("\nkiln_batch_size_count ");
    return p == std::string::npos ? -1.0 : std::atof(r->body.c_str() + p + 23);
  };
  const double before = batches();
  for (int i = 0; i < 2000 && batches() <= before; ++i) std::this_thread::sleep_for(5ms);
  int pending = 0;
  for (auto& f : inflight) pending += f.wait_for(0s) != std::future_status::ready;
  CHECK(pending > 0);  // the drain below is tested, not a server that had already finished
  double seconds = 0;
  int code = s.terminate(30s, &seconds);
  MESSAGE("SIGTERM to exit: " << seconds << " s");
  CHECK(code == 0);
  CHECK(seconds < 30);
  for (auto& f : inflight) CHECK(f.get() == 200);
  std::string log = s.read_log();
  CHECK(log.find("SIGTERM") != std::string::npos);
  CHECK(log.find("kiln serve: stopped") != std::string::npos);
  auto after = client(s.port()).Get("/ping");
  CHECK(!after);
}
