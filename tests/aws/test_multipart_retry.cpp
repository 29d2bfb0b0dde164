// CompleteMultipartUpload is not idempotent (issue 8): when its answer is lost after S3 completed
// the upload, the retry hears NoSuchUpload. Against moto_server through a forwarding proxy on
// 127.0.0.1 that drops the connection after the first CompleteMultipartUpload: kiln recognises
// the object as its own by the multipart ETag (md5 of the parts' md5s, "-N") and succeeds; when
// the object under the key is someone else's, the NoSuchUpload stays an error.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <optional>

#include "kiln/aws/crypto.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/xml.h"
#include "kiln/core/atomic_file.h"
#include "moto_fixture.h"

using namespace kiln::aws;
using kiln_test::MotoServer;
using kiln_test::ScopedEnv;
using kiln_test::TempDir;

namespace {

// Forwards every request to moto; the first CompleteMultipartUpload (POST ?uploadId=) is
// forwarded (or not), `before_drop` runs, and a truncated answer goes back (the client sees
// the connection drop and retries).
struct DroppingProxy {
  kiln_test::LocalServer s;
  std::atomic<int> completes{0};
  bool forward_first = true;
  std::function<void()> before_drop;
  bool answer_retry_no_such_upload = false;  // later completes get S3's 404 instead of moto's answer

  DroppingProxy() {
    auto fwd = [this](const httplib::Request& req, httplib::Response& res) {
      bool complete = req.method == "POST" && req.has_param("uploadId");
      bool drop = complete && ++completes == 1;
      if (complete && !drop && answer_retry_no_such_upload) {
        res.status = 404;
        res.set_content("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchUpload</Code><Message>The "
                        "specified upload does not exist.</Message><UploadId>x</UploadId></Error>", "application/xml");
        return;
      }
      std::optional<httplib::Response> r;
      if (!drop || forward_first) {
        httplib::Client up(MotoServer::unsigned_server().url);
        up.set_url_encode(false);
        httplib::Request out;
        out.method = req.method;
        out.path = req.target;
        for (const auto& [k, v] : req.headers)
          if (k != "Host" && k != "Content-Length" && k.rfind("REMOTE_", 0) != 0 && k.rfind("LOCAL_", 0) != 0)
            out.headers.emplace(k, v);
        out.body = req.body;
        httplib::Result got = up.send(out);
        if (!got) {
          res.status = 502;
          return;
        }
        r = *got;
      }
      if (drop) {
        if (before_drop) before_drop();
        res.set_content_provider(1000, "application/xml", [](size_t, size_t, httplib::DataSink& sink) {
          sink.write("<Compl", 6);
          return false;  // the answer is lost
        });
        return;
      }
      res.status = r->status;
      for (const auto& [k, v] : r->headers)
        if (k != "Content-Length" && k != "Transfer-Encoding" && k != "Connection") res.set_header(k, v);
      res.body = r->body;
    };
    s.svr.Get(".*", fwd);
    s.svr.Put(".*", fwd);
    s.svr.Post(".*", fwd);
    s.svr.Delete(".*", fwd);
    s.start();
  }
};

ClientConfig config_for(const std::string& url, std::vector<std::string>* notes) {
  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::unsigned_server(), url);
  cfg.http.read_timeout_ms = 5000;
  static std::mutex mu;
  cfg.on_retry = [notes](const std::string& n) {
    std::lock_guard<std::mutex> lock(mu);
    notes->push_back(n);
  };
  return cfg;
}

std::string file_of(const TempDir& d, size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131) >> 3);
  kiln_test::write_text(d / "big.bin", data);
  return data;
}

S3Options two_parts() {
  S3Options o;
  o.multipart_threshold = 5 << 20;
  o.part_size = 5 << 20;
  return o;
}

}  // namespace

TEST_CASE("multipart_etag is md5 of the parts' md5s with the part count") {
  std::string a(10, 'a'), b(3, 'b');
  std::string want = "\"" + to_hex(md5(md5(a) + md5(b))) + "-2\"";
  CHECK(multipart_etag({{1, "\"" + to_hex(md5(a)) + "\""}, {2, to_hex(md5(b))}}) == want);
  CHECK(multipart_etag({{1, "\"not-an-md5\""}}).empty());
}

TEST_CASE("CompleteMultipartUpload whose answer is lost: the retry's NoSuchUpload is recognised as success") {
  ScopedEnv env;
  TempDir d;
  std::string data = file_of(d, (5 << 20) + 1000);
  std::vector<std::string> notes;
  S3Client direct(config_for(MotoServer::unsigned_server().url, &notes));
  direct.create_bucket("kiln-mpu-retry");
  DroppingProxy proxy;
  // moto 5 recognises a repeated completion itself (answers 200); S3 may have forgotten the
  // upload and answers NoSuchUpload: the proxy answers the retry that way.
  proxy.answer_retry_no_such_upload = true;
  S3Client s3(config_for(proxy.s.url(), &notes), two_parts());
  s3.upload_file(d / "big.bin", "kiln-mpu-retry", "model.tar.gz");
  CHECK(proxy.completes >= 2);  // the retry happened
  CHECK(direct.get_object("kiln-mpu-retry", "model.tar.gz") == data);
  bool recognised = false;
  for (const auto& n : notes) recognised |= n.find("NoSuchUpload on a retry") != std::string::npos;
  CHECK_MESSAGE(recognised, "notes: " << notes.size() << " " << (notes.empty() ? "" : notes[0]));
}

TEST_CASE("CompleteMultipartUpload retried into NoSuchUpload while the key holds another object: an error") {
  ScopedEnv env;
  TempDir d;
  file_of(d, (5 << 20) + 1000);
  std::vector<std::string> notes;
  S3Client direct(config_for(MotoServer::unsigned_server().url, &notes));
  direct.create_bucket("kiln-mpu-other");
  DroppingProxy proxy;
  proxy.forward_first = false;
  // Meanwhile our upload is aborted (moto still knows it: it was never completed) and someone
  // else writes the key.
  proxy.before_drop = [&] {
    httplib::Client up(MotoServer::unsigned_server().url);
    auto r = up.Get("/kiln-mpu-other?uploads");
    REQUIRE(r);
    XmlNode x = parse_xml(r->body, "ListMultipartUploads");
    for (const XmlNode* u : x.all("Upload"))
      direct.abort_multipart_upload("kiln-mpu-other", "model.tar.gz", u->child_text("UploadId"));
    direct.put_object("kiln-mpu-other", "model.tar.gz", "someone else's");
  };
  S3Client s3(config_for(proxy.s.url(), &notes), two_parts());
  CHECK_THROWS_WITH_AS(s3.upload_file(d / "big.bin", "kiln-mpu-other", "model.tar.gz"),
                       doctest::Contains("NoSuchUpload"), kiln::Error);
  CHECK(direct.get_object("kiln-mpu-other", "model.tar.gz") == "someone else's");
}
