// The server library over real sockets on 127.0.0.1, with a deterministic predictor: readiness,
// every content type and Accept, every error status, headers, dynamic batching (answers equal
// unbatched ones), parallel clients, /metrics, and stop() draining in-flight requests.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <httplib.h>
#include <latch>
#include <nlohmann/json.hpp>

#include "kiln/core/error.h"
#include "fixtures.h"
#include "helpers.h"
#include "kiln/io/npy.h"

using namespace kiln;
using namespace kiln::test;
using namespace std::chrono_literals;

namespace {

std::string fixture(const std::string& name) { return read_bytes(fixtures_dir() / name); }

serve::ServerOptions quiet() {
  serve::ServerOptions o;
  o.access_log = nullptr;
  return o;
}

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(20, 0);
  c.set_write_timeout(20, 0);
  return c;
}

// What test_predict gives for a normalized (n,3,32,32) batch, computed directly.
std::vector<float> expected(const std::vector<float>& images) {
  int64_t n = static_cast<int64_t>(images.size()) / (3 * 32 * 32);
  std::vector<float> out(static_cast<size_t>(n * kTestClasses));
  test_predict(images.data(), n, out.data());
  return out;
}

std::vector<float> npy_floats(const std::string& bytes, std::vector<int64_t>* shape = nullptr) {
  io::NamedArray a = io::parse_npy(bytes, "answer");
  REQUIRE(a.dtype == io::DType::f32);
  if (shape) *shape = a.shape;
  return std::vector<float>(a.f32(), a.f32() + a.numel());
}

std::string npy_of(const std::vector<float>& values, std::vector<int64_t> shape) {
  io::NamedArray a;
  a.dtype = io::DType::f32;
  a.shape = std::move(shape);
  a.bytes.resize(values.size() * sizeof(float));
  std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  return io::encode_npy(a);
}

std::vector<float> random_images(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n * 3 * 32 * 32));
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 8) / float(1 << 24) * 4.f - 2.f;
  }
  return v;
}

int64_t metric_value(const std::string& text, const std::string& series) {
  // A sample line starts the line (the # HELP lines also name the series).
  size_t p = text.rfind("\n" + series + " ");
  if (p == std::string::npos) return -1;
  return std::stoll(text.substr(p + series.size() + 2));
}

}  // namespace

TEST_CASE("/ping is 503 while the model loads and 200 once it is ready") {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  TestServer s(quiet(), [gate] {
    gate.wait_for(10s);
    return test_loader()();
  });
  auto c = client(s.port());
  auto r = c.Get("/ping");
  REQUIRE(r);
  CHECK(r->status == 503);
  auto inv = c.Post("/invocations", fixture("batch4_f32.npy"), "application/x-npy");
  REQUIRE(inv);
  CHECK(inv->status == 503);
  CHECK(metric_value(c.Get("/metrics")->body, "kiln_model_ready") == 0);
  release.set_value();
  CHECK(s.wait_ready());
  CHECK(metric_value(c.Get("/metrics")->body, "kiln_model_ready") == 1);
}

TEST_CASE("a loader failure stops the server and is reported by run()") {
  TestServer s(quiet(), []() -> serve::Model { throw kiln::Error("config.json: missing field arch"); });
  // run() joins the worker (which runs the loader) before it reports the loader's error.
  std::string err = s.stop_and_join();
  CHECK(!s.server().ready());
  CHECK(err.find("loading the model failed") != std::string::npos);
  CHECK(err.find("missing field arch") != std::string::npos);
}

TEST_CASE("the SageMaker SDK's request: np.save float32 (4,3,32,32) in, (4,classes) NPY out") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  std::string body = fixture("batch4_f32.npy");
  httplib::Headers h = {{"Accept", "application/x-npy"}};
  auto r = c.Post("/invocations", h, body, "application/x-npy");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "application/x-npy");
  std::vector<int64_t> shape;
  std::vector<float> got = npy_floats(r->body, &shape);
  CHECK(shape == std::vector<int64_t>{4, kTestClasses});
  io::NamedArray in = io::parse_npy(body, "in");
  CHECK(got == expected(std::vector<float>(in.f32(), in.f32() + in.numel())));
  // No Accept and */* give NPY for NPY requests too.
  auto r2 = c.Post("/invocations", httplib::Headers{{"Accept", "*/*"}}, body, "application/x-npy");
  REQUIRE(r2);
  CHECK(r2->body == r->body);
}

TEST_CASE("uint8 pixels, JSON, PNG and JPEG requests reach the model as numpy/PIL compute them") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  httplib::Headers npy_accept = {{"Accept", "application/x-npy"}};
  auto check_close = [](const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
    CHECK(worst <= 1e-4);
  };
  auto want = [](const std::string& npy) {
    io::NamedArray a = io::parse_npy(fixture(npy), npy);
    return expected(std::vector<float>(a.f32(), a.f32() + a.numel()));
  };
  auto post = [&](const std::string& body, const std::string& type) {
    auto r = c.Post("/invocations", npy_accept, body, type.c_str());
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return npy_floats(r->body);
  };
  check_close(post(fixture("batch4_u8.npy"), "application/x-npy"), want("batch4_u8_norm.npy"));
  check_close(post(fixture("batch2_chw.json"), "application/json"), want("batch2_chw_expected.npy"));
  check_close(post(fixture("bare_list.json"), "application/json"), want("batch2_chw_expected.npy"));
  check_close(post(fixture("batch2_hwc.json"), "application/json; charset=utf-8"),
              want("batch2_hwc_expected.npy"));
  check_close(post(fixture("img32.png"), "image/png"), want("img32_norm.npy"));
  check_close(post(fixture("img32.png"), "application/x-image"), want("img32_norm.npy"));
  CHECK(post(fixture("img32.jpg"), "image/jpeg").size() == size_t(kTestClasses));
  CHECK(post(fixture("img64x48_rgba.png"), "image/png").size() == size_t(kTestClasses));
}

TEST_CASE("Accept: application/json gives the top-k classes; ?k= and X-Kiln-Top-K choose k") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  std::string body = fixture("batch4_f32.npy");
  io::NamedArray in = io::parse_npy(body, "in");
  std::vector<float> lp = expected(std::vector<float>(in.f32(), in.f32() + in.numel()));
  httplib::Headers h = {{"Accept", "application/json"}};
  auto r = c.Post("/invocations", h, body, "application/x-npy");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  auto doc = nlohmann::json::parse(r->body);
  REQUIRE(doc["predictions"].size() == 4);
  for (int i = 0; i < 4; ++i) {
    auto top = doc["predictions"][i]["top_k"];
    REQUIRE(top.size() == 5);
    int best = int(std::max_element(lp.begin() + i * kTestClasses, lp.begin() + (i + 1) * kTestClasses) -
                   (lp.begin() + i * kTestClasses));
    CHECK(top[0]["index"] == best);
    CHECK(top[0]["class"] == "class_" + std::to_string(best));
    CHECK(top[0]["probability"].get<double>() ==
          doctest::Approx(std::exp(double(lp[size_t(i * kTestClasses + best)]))).epsilon(1e-5));
  }
  auto r3 = c.Post("/invocations?k=3", h, body, "application/x-npy");
  REQUIRE(r3);
  CHECK(nlohmann::json::parse(r3->body)["predictions"][0]["top_k"].size() == 3);
  httplib::Headers hk = {{"Accept", "application/json"}, {"X-Kiln-Top-K", "2"}};
  auto r2 = c.Post("/invocations", hk, body, "application/x-npy");
  REQUIRE(r2);
  CHECK(nlohmann::json::parse(r2->body)["predictions"][0]["top_k"].size() == 2);
  // JSON and image requests answer JSON by default.
  auto rj = c.Post("/invocations", fixture("img32.png"), "image/png");
  REQUIRE(rj);
  CHECK(rj->get_header_value("Content-Type") == "application/json");
}

TEST_CASE("every error is a 4xx with a one-line reason, and the server keeps serving") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  struct Case {
    const char* what;
    std::string body, type, accept, path;
    int status;
  };
  std::string good = fixture("batch4_f32.npy");
  std::vector<Case> cases = {
      {"unsupported type", good, "text/csv", "", "/invocations", 415},
      {"multipart", "--x\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data; boundary=x", "", "/invocations", 415},
      {"unacceptable Accept", good, "application/x-npy", "text/html", "/invocations", 406},
      {"malformed NPY", "\x93NUMPY garbage", "application/x-npy", "", "/invocations", 400},
      {"wrong shape", fixture("wrong_shape.npy"), "application/x-npy", "", "/invocations", 400},
      {"wrong dtype", fixture("wrong_dtype.npy"), "application/x-npy", "", "/invocations", 400},
      {"empty batch", fixture("empty.npy"), "application/x-npy", "", "/invocations", 400},
      {"NaN", fixture("nan.npy"), "application/x-npy", "", "/invocations", 400},
      {"malformed JSON", "{\"instances\": [1, 2", "application/json", "", "/invocations", 400},
      {"malformed PNG", fixture("img32.png").substr(0, 60), "image/png", "", "/invocations", 400},
      {"JPEG bytes as PNG", fixture("img32.jpg"), "image/png", "", "/invocations", 400},
      {"bad k", good, "application/x-npy", "application/json", "/invocations?k=0", 400},
      {"body over 6 MiB", std::string((6u << 20) + 1, 'x'), "application/x-npy", "", "/invocations", 413},
      {"unknown path", good, "application/x-npy", "", "/predict", 404},
  };
  for (const Case& k : cases) {
    INFO(k.what);
    httplib::Headers h;
    if (!k.accept.empty()) h.emplace("Accept", k.accept);
    auto r = c.Post(k.path.c_str(), h, k.body, k.type.c_str());
    REQUIRE(r);
    CHECK(r->status == k.status);
    CHECK(r->get_header_value("Content-Type") == "text/plain");
    REQUIRE(!r->body.empty());
    CHECK(r->body.back() == '\n');
    CHECK(r->body.find('\n') == r->body.size() - 1);
    // The same connection still answers a good request.
    auto ok = c.Post("/invocations", good, "application/x-npy");
    REQUIRE(ok);
    CHECK(ok->status == 200);
  }
  auto g = c.Get("/invocations");
  REQUIRE(g);
  CHECK(g->status == 405);
  // No Content-Type at all.
  std::string raw = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                    "Connection: close\r\n\r\nabcd";
  std::string resp = raw_request(s.port(), raw);
  CHECK(resp.rfind("HTTP/1.1 415", 0) == 0);
  // Garbage that is not HTTP.
  std::string junk = raw_request(s.port(), "\x16\x03\x01 not http at all\r\n\r\n", 300ms);
  CHECK(junk.rfind("HTTP/1.1 400", 0) == 0);
  // A chunked body over 6 MiB (no Content-Length) is 413 too.
  std::string chunked = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  std::string chunk(1 << 20, 'y');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
  for (int i = 0; i < 7; ++i) chunked += size_line + chunk + "\r\n";
  chunked += "0\r\n\r\n";
  std::string big = raw_request(s.port(), chunked);
  CHECK(big.rfind("HTTP/1.1 413", 0) == 0);
  auto after = c.Post("/invocations", good, "application/x-npy");
  REQUIRE(after);
  CHECK(after->status == 200);
}

TEST_CASE("custom attributes are echoed and unknown headers ignored") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  httplib::Headers h = {{"X-Amzn-SageMaker-Custom-Attributes", "trace=abc,v=1"},
                        {"X-Something-Unknown", "whatever"},
                        {"X-Amzn-SageMaker-Target-Model", "m.tar.gz"}};
  auto r = c.Post("/invocations", h, fixture("batch4_f32.npy"), "application/x-npy");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("X-Amzn-SageMaker-Custom-Attributes") == "trace=abc,v=1");
  auto bad = c.Post("/invocations", h, "nope", "text/plain");
  REQUIRE(bad);
  CHECK(bad->status == 415);
  CHECK(bad->get_header_value("X-Amzn-SageMaker-Custom-Attributes") == "trace=abc,v=1");
  auto plain = c.Post("/invocations", fixture("batch4_f32.npy"), "application/x-npy");
  CHECK(!plain->has_header("X-Amzn-SageMaker-Custom-Attributes"));
}

TEST_CASE("parallel clients are batched together and every answer equals the unbatched one") {
  serve::ServerOptions o = quiet();
  o.max_batch = 8;
  o.max_wait_ms = 20;
  TestServer s(o, test_loader(15ms));  // slow forward passes: requests pile up behind them
  REQUIRE(s.wait_ready());
  constexpr int kClients = 12, kPerClient = 6;
  std::atomic<int> failures{0}, checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t)
    threads.emplace_back([&, t] {
      auto c = client(s.port());
      for (int i = 0; i < kPerClient; ++i) {
        int64_t n = 1 + (t + i) % 3;  // 1-3 images per request
        std::vector<float> imgs = random_images(n, uint32_t(t * 100 + i));
        auto r = c.Post("/invocations", npy_of(imgs, {n, 3, 32, 32}), "application/x-npy");
        if (!r || r->status != 200 || npy_floats(r->body) != expected(imgs)) {
          ++failures;
        } else {
          ++checked;
        }
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(checked == kClients * kPerClient);
  std::string m = client(s.port()).Get("/metrics")->body;
  // Some forward pass held more than one request's images, and none more than max_batch.
  int64_t batches = metric_value(m, "kiln_batch_size_count");
  int64_t images = metric_value(m, "kiln_images_total");
  CHECK(batches > 0);
  CHECK(batches < kClients * kPerClient);
  CHECK(images == metric_value(m, "kiln_batch_size_sum"));
  CHECK(metric_value(m, "kiln_batch_size_bucket{le=\"8\"}") == batches);
  CHECK(metric_value(m, "kiln_http_requests_total{path=\"/invocations\",code=\"200\"}") ==
        kClients * kPerClient);
}

TEST_CASE("a request larger than max_batch runs in chunks with the same answer") {
  serve::ServerOptions o = quiet();
  o.max_batch = 4;
  TestServer s(o, test_loader());
  REQUIRE(s.wait_ready());
  std::vector<float> imgs = random_images(11, 7);
  auto r = client(s.port()).Post("/invocations", npy_of(imgs, {11, 3, 32, 32}), "application/x-npy");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(npy_floats(r->body) == expected(imgs));
  std::string m = client(s.port()).Get("/metrics")->body;
  CHECK(metric_value(m, "kiln_batch_size_count") == 3);  // 4 + 4 + 3
}

TEST_CASE("a lone request does not wait for company") {
  serve::ServerOptions o = quiet();
  o.max_wait_ms = 500;
  TestServer s(o, test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  std::string body = fixture("batch4_f32.npy");
  REQUIRE(c.Post("/invocations", body, "application/x-npy"));  // warm the connection
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.Post("/invocations", body, "application/x-npy");
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(ms < 250);  // max_wait is 500 ms: a waiting batcher would show
}

TEST_CASE("/ping answers fast while the model is busy") {
  serve::ServerOptions o = quiet();
  o.max_batch = 2;
  TestServer s(o, test_loader(100ms));
  REQUIRE(s.wait_ready());
  std::atomic<bool> done{false};
  std::vector<std::thread> load;
  for (int t = 0; t < 16; ++t)
    load.emplace_back([&] {
      auto c = client(s.port());
      for (int i = 0; i < 50 && !done; ++i) c.Post("/invocations", fixture("single_f32.npy"), "application/x-npy");
    });
  std::this_thread::sleep_for(200ms);
  double worst = 0;
  for (int i = 0; i < 5; ++i) {
    auto c = client(s.port());  // a new connection each time, as a health checker would
    auto t0 = std::chrono::steady_clock::now();
    auto r = c.Get("/ping");
    worst = std::max(worst, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  done = true;
  for (auto& th : load) th.join();
  CHECK(worst < 0.5);
}

TEST_CASE("stop() finishes in-flight requests, then run() returns") {
  TestServer s(quiet(), test_loader(400ms));
  REQUIRE(s.wait_ready());
  std::vector<std::future<int>> inflight;
  for (int i = 0; i < 4; ++i)
    inflight.push_back(std::async(std::launch::async, [&, i] {
      std::vector<float> imgs = random_images(1, uint32_t(i));
      auto r = client(s.port()).Post("/invocations", npy_of(imgs, {1, 3, 32, 32}), "application/x-npy");
      return r && npy_floats(r->body) == expected(imgs) ? r->status : -1;
    }));
  std::this_thread::sleep_for(150ms);  // all four are inside the server now
  auto t0 = std::chrono::steady_clock::now();
  CHECK(s.stop_and_join().empty());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& f : inflight) CHECK(f.get() == 200);
  CHECK(seconds < 10);
  auto after = client(s.port()).Get("/ping");
  CHECK(!after);  // nobody listens any more
}

TEST_CASE("/metrics is Prometheus text with requests by code, latency and batch histograms") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  auto c = client(s.port());
  c.Post("/invocations", fixture("batch4_f32.npy"), "application/x-npy");
  c.Post("/invocations", "x", "text/plain");
  auto r = c.Get("/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type").rfind("text/plain", 0) == 0);
  const std::string& m = r->body;
  CHECK(metric_value(m, "kiln_http_requests_total{path=\"/invocations\",code=\"200\"}") == 1);
  CHECK(metric_value(m, "kiln_http_requests_total{path=\"/invocations\",code=\"415\"}") == 1);
  CHECK(metric_value(m, "kiln_invocation_errors_total") == 1);
  CHECK(metric_value(m, "kiln_request_duration_seconds_count") == 2);
  CHECK(metric_value(m, "kiln_request_duration_seconds_bucket{le=\"+Inf\"}") == 2);
  CHECK(metric_value(m, "kiln_batch_size_count") == 1);
  CHECK(metric_value(m, "kiln_images_total") == 4);
  CHECK(m.find("# TYPE kiln_batch_size histogram") != std::string::npos);
  CHECK(m.find("# TYPE kiln_http_requests_total counter") != std::string::npos);
}

TEST_CASE("the access log has one line per request, with what the client sent escaped") {
  fs::path dir = make_temp_dir("serve-accesslog");
  std::FILE* f = std::fopen((dir / "access.log").c_str(), "w");
  REQUIRE(f);
  {
    serve::ServerOptions o;
    o.access_log = f;
    TestServer s(o, test_loader());
    REQUIRE(s.wait_ready());
    auto c = client(s.port());
    c.Post("/invocations", fixture("batch4_f32.npy"), "application/x-npy");
    c.Get("/nope");
    raw_request(s.port(), "GET /%0a2026-01-01T00:00:00.000Z%20127.0.0.1%20%22POST%20/invocations%22%20200"
                          " HTTP/1.1\r\nConnection: close\r\n\r\n");
  }
  std::fclose(f);
  std::string log = read_bytes(dir / "access.log");
  CHECK(log.find("\"POST /invocations\" 200 ") != std::string::npos);
  CHECK(log.find("\"GET /nope\" 404 ") != std::string::npos);
  CHECK(log.find("127.0.0.1") != std::string::npos);
  // A decoded path with a newline, a quote and a forged line cannot split or forge log lines.
  // wait_ready's /ping requests (more than one when the server starts slowly, as under ASan)
  // are left out of the count.
  int64_t lines = 0, pings = 0;
  for (size_t at = 0, end; (end = log.find('\n', at)) != std::string::npos; at = end + 1) {
    ++lines;
    if (log.substr(at, end - at).find("\"GET /ping\" ") != std::string::npos) ++pings;
  }
  CHECK(pings >= 1);
  CHECK(lines - pings == 3);
  CHECK(log.find("\"GET /\\x0a2026-01-01T00:00:00.000Z\\x20") != std::string::npos);
  CHECK(log.find("\\x22") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("a server destroyed without run() does not hang") {
  serve::ServerOptions o = quiet();
  o.host = "127.0.0.1";
  o.port = 0;
  auto s = std::make_unique<serve::Server>(o);
  CHECK(s->bind() > 0);
  s->start(test_loader());
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  s.reset();  // joins the worker, which was serving an empty queue
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("answers made on other threads while the loop is busy are never lost") {
  // Answers come from the model's thread (NPY) and the pool (JSON) while the event loop answers
  // /ping itself: thousands of hand-overs, each one must reach its client.
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  std::atomic<int> failures{0}, answered{0};
  std::vector<std::thread> threads;
  const std::string npy = fixture("single_f32.npy");
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(5, 0);
      for (int i = 0; i < 250; ++i) {
        httplib::Result r = t % 3 == 0   ? c.Get("/ping")
                            : t % 3 == 1 ? c.Post("/invocations", npy, "application/x-npy")
                                         : c.Post("/invocations", {{"Accept", "application/json"}}, npy,
                                                  "application/x-npy");
        if (!r || r->status != 200) {
          ++failures;
          break;  // a lost hand-over stalls every later answer: no need to wait for each
        }
        ++answered;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(answered == 8 * 250);
}

TEST_CASE("Expect: 100-continue gets 100 before the body; HEAD /ping has no body; pipelining") {
  TestServer s(quiet(), test_loader());
  REQUIRE(s.wait_ready());
  const std::string body = fixture("batch4_f32.npy");
  // curl sends Expect: 100-continue for large bodies and waits for the 100 before sending them.
  std::string head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                     "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  std::string first = raw_request(s.port(), head, 1000ms);
  CHECK(first == "HTTP/1.1 100 Continue\r\n\r\n");
  std::string full = raw_request(s.port(), head + body, 3000ms);
  CHECK(full.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0) == 0);
  // Too large: refused at once, without the 100.
  std::string big = raw_request(s.port(), "POST /invocations HTTP/1.1\r\nExpect: 100-continue\r\n"
                                          "Content-Length: 99999999\r\n\r\n", 1000ms);
  CHECK(big.rfind("HTTP/1.1 413", 0) == 0);
  std::string h = raw_request(s.port(), "HEAD /ping HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(h.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(h.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(h.substr(h.size() - 4) == "\r\n\r\n");
  // Three pipelined requests on one connection are answered in order.
  std::string piped = raw_request(s.port(), "GET /ping HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                                            "GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n");
  size_t a = piped.find("HTTP/1.1 200"), b = piped.find("HTTP/1.1 404"), c = piped.rfind("HTTP/1.1 200");
  CHECK(a == 0);
  CHECK(b != std::string::npos);
  CHECK((b > a && c > b));
}
