// Transport faults against a local httplib server on 127.0.0.1: standard-mode retries and their
// limit, no retry of other 4xx, dropped connections, timeouts, expired session tokens refreshed,
// S3's wrong-region redirect, CompleteMultipartUpload's 200-with-error, abort on failure.
#include <doctest/doctest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "kiln/aws/client.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sagemaker_json.h"
#include "test_util.h"

using namespace kiln::aws;
using kiln_test::LocalServer;
using kiln_test::ScopedEnv;

static ClientConfig local_config(const LocalServer& s) {
  ClientConfig cfg;
  cfg.region = "us-west-2";
  cfg.endpoint_url = s.url();
  cfg.credentials = CredentialChain::fixed({"AKIDEXAMPLE", "secret", "", {}, "test"});
  cfg.retry.base_delay_s = 0.01;
  cfg.http.read_timeout_ms = 2000;
  return cfg;
}

static nlohmann::json call_sm(const ClientConfig& cfg) {
  SageMakerClient sm(cfg);
  return sm.call("DescribeEndpoint", {{"EndpointName", "e"}});
}

TEST_CASE("5xx is retried and a later success returned") {
  ScopedEnv env;
  LocalServer s;
  std::atomic<int> n{0};
  s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
    int i = ++n;
    if (i == 1) res.status = 500, res.set_content("{\"__type\":\"InternalFailure\"}", "application/json");
    else if (i == 2) res.status = 503, res.set_content("{\"__type\":\"ServiceUnavailable\"}", "application/json");
    else res.set_content("{\"EndpointStatus\":\"InService\"}", "application/x-amz-json-1.1");
  });
  s.start();
  auto r = call_sm(local_config(s));
  CHECK(r["EndpointStatus"] == "InService");
  CHECK(n == 3);
}

TEST_CASE("retries stop after 3 attempts and the error names the code and the attempts") {
  ScopedEnv env;
  LocalServer s;
  std::atomic<int> n{0};
  s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
    ++n;
    res.status = 503;
    res.set_content("{\"__type\":\"ServiceUnavailable\",\"message\":\"busy\"}", "application/json");
  });
  s.start();
  try {
    call_sm(local_config(s));
    FAIL("expected an AwsError");
  } catch (const AwsError& e) {
    CHECK(e.status() == 503);
    CHECK(e.code() == "ServiceUnavailable");
    CHECK(std::string(e.what()).find("after 3 attempts") != std::string::npos);
  }
  CHECK(n == 3);
}

TEST_CASE("throttling errors with a 400 status are retried") {
  ScopedEnv env;
  LocalServer s;
  std::atomic<int> n{0};
  s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
    if (++n == 1) {
      res.status = 400;
      res.set_content("{\"__type\":\"com.amazon.coral.availability#ThrottlingException\",\"message\":\"Rate exceeded\"}",
                      "application/x-amz-json-1.1");
    } else {
      res.set_content("{}", "application/x-amz-json-1.1");
    }
  });
  s.start();
  call_sm(local_config(s));
  CHECK(n == 2);
}

TEST_CASE("other 4xx are never retried, and the AWS code and message come back plainly") {
  ScopedEnv env;
  for (int status : {400, 403, 404}) {
    LocalServer s;
    std::atomic<int> n{0};
    s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
      ++n;
      res.status = status;
      res.set_content("{\"__type\":\"ValidationException\",\"Message\":\"Endpoint e not found\"}", "application/json");
    });
    s.start();
    try {
      call_sm(local_config(s));
      FAIL("expected an AwsError");
    } catch (const AwsError& e) {
      CHECK(e.code() == "ValidationException");
      CHECK(std::string(e.what()).find("ValidationException: Endpoint e not found") != std::string::npos);
    }
    CHECK_MESSAGE(n == 1, "HTTP " << status << " was sent " << n.load() << " times");
  }
}

TEST_CASE("a dropped connection is retried") {
  ScopedEnv env;
  LocalServer s;
  std::atomic<int> n{0};
  s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
    if (++n == 1) {
      // promise 100 bytes, send 5, then give up: the client sees the connection drop
      res.set_content_provider(100, "application/json", [](size_t, size_t, httplib::DataSink& sink) {
        sink.write("{\"a\":", 5);
        return false;
      });
    } else {
      res.set_content("{\"ok\":true}", "application/json");
    }
  });
  s.start();
  auto r = call_sm(local_config(s));
  CHECK(r["ok"] == true);
  CHECK(n == 2);
}

TEST_CASE("a read timeout is a retryable transport error; refused connections fail after 3 attempts") {
  ScopedEnv env;
  {
    LocalServer s;
    std::atomic<int> n{0};
    s.svr.Post("/", [&](const httplib::Request&, httplib::Response& res) {
      if (++n == 1) std::this_thread::sleep_for(std::chrono::milliseconds(700));
      res.set_content("{}", "application/json");
    });
    s.start();
    ClientConfig cfg = local_config(s);
    cfg.http.read_timeout_ms = 300;
    call_sm(cfg);
    CHECK(n == 2);
  }
  LocalServer closed;
  closed.start();
  ClientConfig cfg = local_config(closed);
  closed.svr.stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int retries = 0;
  cfg.on_retry = [&](const std::string&) { ++retries; };
  CHECK_THROWS_AS(call_sm(cfg), TransportError);
  CHECK(retries == 2);
}

TEST_CASE("an expired session token makes the chain fetch new credentials and the call succeed") {
  ScopedEnv env;
  LocalServer creds_server;
  std::atomic<int> fetches{0};
  creds_server.svr.Get("/creds", [&](const httplib::Request&, httplib::Response& res) {
    int i = ++fetches;
    nlohmann::json j = {{"AccessKeyId", "ASIATEMP" + std::to_string(i)},
                        {"SecretAccessKey", "secret"},
                        {"Token", "token" + std::to_string(i)},
                        {"Expiration", "2099-01-01T00:00:00Z"}};
    res.set_content(j.dump(), "application/json");
  });
  creds_server.start();
  env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds_server.url() + "/creds");

  LocalServer s;
  std::vector<std::string> tokens;
  std::mutex mu;
  s.svr.Post("/", [&](const httplib::Request& req, httplib::Response& res) {
    std::string t = req.get_header_value("X-Amz-Security-Token");
    {
      std::lock_guard<std::mutex> lock(mu);
      tokens.push_back(t);
    }
    if (t == "token1") {
      res.status = 400;
      res.set_content("{\"__type\":\"ExpiredTokenException\",\"message\":\"The security token included in the request is expired\"}",
                      "application/json");
    } else {
      res.set_content("{}", "application/json");
    }
  });
  s.start();
  ClientConfig cfg = local_config(s);
  cfg.credentials = std::make_shared<CredentialChain>();
  call_sm(cfg);
  CHECK(fetches == 2);
  REQUIRE(tokens.size() == 2);
  CHECK(tokens[0] == "token1");
  CHECK(tokens[1] == "token2");
}

TEST_CASE("S3: a bucket in another region is retried there (x-amz-bucket-region)") {
  ScopedEnv env;
  LocalServer s;
  std::vector<std::string> regions;
  std::mutex mu;
  s.svr.Get("/bkt/key", [&](const httplib::Request& req, httplib::Response& res) {
    std::string r = kiln_test::scope_region(req);
    {
      std::lock_guard<std::mutex> lock(mu);
      regions.push_back(r);
    }
    if (r != "eu-west-1") {
      res.status = 301;
      res.set_header("x-amz-bucket-region", "eu-west-1");
      res.set_content("<Error><Code>PermanentRedirect</Code><Message>use the right endpoint</Message></Error>",
                      "application/xml");
    } else {
      res.set_content("hello", "application/octet-stream");
    }
  });
  s.start();
  S3Client s3(local_config(s));
  CHECK(s3.get_object("bkt", "key") == "hello");
  CHECK(s3.region_of("bkt") == "eu-west-1");
  CHECK(s3.get_object("bkt", "key") == "hello");  // remembered: no second redirect
  REQUIRE(regions.size() == 3);
  CHECK(regions[0] == "us-west-2");
  CHECK(regions[1] == "eu-west-1");
  CHECK(regions[2] == "eu-west-1");
}

// A tiny multipart S3: records which calls it saw.
struct FakeMultipart {
  LocalServer s;
  std::mutex mu;
  std::vector<std::string> calls;
  std::atomic<int> complete_errors;  // CompleteMultipartUpload answers 200 + <Error> this many times
  const std::string complete_error_code;
  const int fail_part;                // this part number answers 403
  void log(const std::string& c) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(c);
  }
  int count(const std::string& c) {
    std::lock_guard<std::mutex> lock(mu);
    return static_cast<int>(std::count(calls.begin(), calls.end(), c));
  }
  FakeMultipart(int errors, std::string code, int failing_part)
      : complete_errors(errors), complete_error_code(std::move(code)), fail_part(failing_part) {
    s.svr.Post("/b/big", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.has_param("uploads")) {
        log("create");
        res.set_content("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>big</Key><UploadId>UP1</UploadId></InitiateMultipartUploadResult>",
                        "application/xml");
        return;
      }
      log("complete");
      if (complete_errors.fetch_sub(1) > 0) {
        res.set_content("<?xml version=\"1.0\"?>\n<Error><Code>" + complete_error_code +
                            "</Code><Message>We encountered an internal error.</Message></Error>",
                        "application/xml");
        return;
      }
      res.set_content("<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>", "application/xml");
    });
    s.svr.Put("/b/big", [this](const httplib::Request& req, httplib::Response& res) {
      int part = std::stoi(req.get_param_value("partNumber"));
      log("part");
      if (part == fail_part) {
        res.status = 403;
        res.set_content("<Error><Code>AccessDenied</Code><Message>no</Message></Error>", "application/xml");
        return;
      }
      res.set_header("ETag", "\"etag" + std::to_string(part) + "\"");
    });
    s.svr.Delete("/b/big", [this](const httplib::Request&, httplib::Response& res) {
      log("abort");
      res.status = 204;
    });
    s.start();
  }
};

static std::filesystem::path make_file(const kiln_test::TempDir& d, size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 7 + 3);
  auto p = d / "big.bin";
  kiln_test::write_text(p, data);
  return p;
}

TEST_CASE("S3 multipart: a 200 response carrying <Error> is detected and retried when transient") {
  ScopedEnv env;
  kiln_test::TempDir dir;
  FakeMultipart fake(1, "InternalError", -1);
  S3Options o;
  o.multipart_threshold = 5 << 20;
  o.part_size = 5 << 20;
  S3Client s3(local_config(fake.s), o);
  s3.upload_file(make_file(dir, (5 << 20) + 1000), "b", "big");
  CHECK(fake.count("create") == 1);
  CHECK(fake.count("part") == 2);
  CHECK(fake.count("complete") == 2);
  CHECK(fake.count("abort") == 0);
}

TEST_CASE("S3 multipart: a non-transient 200-with-error fails the upload and aborts it") {
  ScopedEnv env;
  kiln_test::TempDir dir;
  FakeMultipart fake(5, "InvalidPart", -1);
  S3Options o;
  o.multipart_threshold = 5 << 20;
  o.part_size = 5 << 20;
  S3Client s3(local_config(fake.s), o);
  CHECK_THROWS_WITH_AS(s3.upload_file(make_file(dir, (5 << 20) + 1000), "b", "big"),
                       doctest::Contains("InvalidPart"), kiln::Error);
  CHECK(fake.count("complete") == 1);
  CHECK(fake.count("abort") == 1);
}

TEST_CASE("S3 multipart: a failed part aborts the upload") {
  ScopedEnv env;
  kiln_test::TempDir dir;
  FakeMultipart fake(0, "", 2);
  S3Options o;
  o.multipart_threshold = 5 << 20;
  o.part_size = 5 << 20;
  o.concurrency = 2;
  S3Client s3(local_config(fake.s), o);
  CHECK_THROWS_WITH_AS(s3.upload_file(make_file(dir, 3 * (5 << 20)), "b", "big"),
                       doctest::Contains("aborted"), kiln::Error);
  CHECK(fake.count("complete") == 0);
  CHECK(fake.count("abort") == 1);
}

// HTTPS: a local TLS server with a self-signed certificate (made at test time) is refused while
// verification is on, and accepted once AWS_CA_BUNDLE names its certificate.
TEST_CASE("HTTPS verifies the server certificate; AWS_CA_BUNDLE adds a trusted CA") {
  ScopedEnv env;
  kiln_test::TempDir d;
  std::string out;
  int rc = kiln_test::run_capture(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
          (d / "key.pem").string() + " -out " + (d / "cert.pem").string() + " 2>&1",
      out);
  REQUIRE_MESSAGE(rc == 0, "openssl req failed: " << out);
  httplib::SSLServer svr((d / "cert.pem").c_str(), (d / "key.pem").c_str());
  REQUIRE(svr.is_valid());
  svr.Post("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("{\"ok\":1}", "application/json"); });
  int port = svr.bind_to_any_port("127.0.0.1");
  std::thread t([&] { svr.listen_after_bind(); });
  for (int i = 0; i < 200 && !svr.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ClientConfig cfg;
  cfg.region = "us-east-1";
  cfg.endpoint_url = "https://127.0.0.1:" + std::to_string(port);
  cfg.credentials = CredentialChain::fixed({"AKIDEXAMPLE", "secret", "", {}, "test"});
  cfg.retry.max_attempts = 1;
  CHECK_THROWS_WITH_AS(call_sm(cfg), doctest::Contains("SSL"), TransportError);
  env.set("AWS_CA_BUNDLE", (d / "cert.pem").string());
  CHECK(call_sm(cfg)["ok"] == 1);
  svr.stop();
  t.join();
}
