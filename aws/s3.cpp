// S3 over the signed client (see s3.h). XML bodies are parsed with aws/xml.h.
#include "kiln/aws/s3.h"


#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <thread>

#include "kiln/aws/crypto.h"
#include "kiln/aws/xml.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace kiln::aws {

namespace fs = std::filesystem;

S3Uri S3Uri::parse(const std::string& text) {
  if (!is_s3(text)) fail("S3 location", "s3://bucket/key", "'" + text + "'");
  std::string rest = text.substr(5);
  S3Uri u;
  auto slash = rest.find('/');
  u.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) u.key = rest.substr(slash + 1);
  if (u.bucket.empty()) fail("S3 location", "a bucket name after s3://", "'" + text + "'");
  return u;
}

S3Client::S3Client(ClientConfig cfg, S3Options opts) : cfg_(std::move(cfg)), opts_(opts) {}

std::string S3Client::region_of(const std::string& bucket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = bucket_regions_.find(bucket);
  if (it != bucket_regions_.end()) return it->second;
  if (cfg_.region.empty())
    throw Error("S3: no region configured", "pass --region, or set AWS_REGION or a region in your AWS profile");
  return cfg_.region;
}

static bool dns_compatible(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'))
      return false;  // dots break TLS wildcard certificates, so they go path-style
  return b.front() != '-' && b.back() != '-';
}

AwsRequest S3Client::make(const std::string& op, const std::string& method, const std::string& bucket,
                          const std::string& key) {
  AwsRequest r;
  r.service_name = "S3";
  r.operation = op;
  r.signing_name = "s3";
  r.signing_region = region_of(bucket);
  r.method = method;
  r.s3 = true;
  std::string override_url = endpoint_override(cfg_, "s3");
  bool virt = !bucket.empty() &&
              (opts_.addressing == AddressingStyle::virtual_hosted ||
               (opts_.addressing == AddressingStyle::automatic && override_url.empty() && dns_compatible(bucket)));
  if (!override_url.empty()) {
    r.endpoint = Url::parse(override_url, "S3 endpoint URL");
  } else {
    r.endpoint.scheme = "https";
    r.endpoint.port = 443;
    r.endpoint.host = r.signing_region == "us-east-1" ? "s3.amazonaws.com" : "s3." + r.signing_region + ".amazonaws.com";
  }
  if (!r.endpoint.path.empty() && r.endpoint.path.back() == '/') r.endpoint.path.pop_back();
  if (virt) {
    r.endpoint.host = bucket + "." + r.endpoint.host;
    r.path = "/" + key;
  } else {
    r.path = bucket.empty() ? "/" : "/" + bucket + (key.empty() ? "" : "/" + key);
  }
  return r;
}

HttpResponse S3Client::send(AwsRequest req, const std::string& bucket, const std::string& key) {
  try {
    return send_request(cfg_, req);
  } catch (const AwsError& e) {
    std::string where = e.header("x-amz-bucket-region");
    bool redirect = e.status() == 301 || e.status() == 307 || e.status() == 400;
    if (!redirect || where.empty() || where == req.signing_region || bucket.empty()) throw;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bucket_regions_[bucket] = where;
    }
    // Rebuild for the bucket's region: endpoint host (AWS) and signing region both change.
    AwsRequest again = make(req.operation, req.method, bucket, key);
    again.query = req.query;
    again.headers = req.headers;
    again.body = std::move(req.body);
    again.unsigned_payload = req.unsigned_payload;
    again.sink = req.sink;
    again.reset_sink = req.reset_sink;
    if (again.sink && again.reset_sink) again.reset_sink();
    return send_request(cfg_, again);
  }
}

void S3Client::put_object(const std::string& bucket, const std::string& key, const std::string& body,
                          const std::string& content_type) {
  AwsRequest r = make("PutObject", "PUT", bucket, key);
  r.headers.push_back({"Content-Type", content_type});
  r.body = body;
  send(std::move(r), bucket, key);
}

std::string S3Client::create_multipart_upload(const std::string& bucket, const std::string& key) {
  AwsRequest r = make("CreateMultipartUpload", "POST", bucket, key);
  r.query = {{"uploads", ""}};
  r.headers.push_back({"Content-Type", "application/octet-stream"});
  HttpResponse resp = send(std::move(r), bucket, key);
  if (cfg_.dry_run) return "DRY-RUN-UPLOAD-ID";
  XmlNode x = parse_xml(resp.body, "S3 CreateMultipartUpload response");
  std::string id = x.child_text("UploadId");
  if (id.empty()) fail("S3 CreateMultipartUpload response", "an UploadId", "none");
  return id;
}

std::string S3Client::upload_part(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                  int part_number, const std::string& body) {
  AwsRequest r = make("UploadPart", "PUT", bucket, key);
  r.query = {{"partNumber", std::to_string(part_number)}, {"uploadId", upload_id}};
  r.body = body;
  HttpResponse resp = send(std::move(r), bucket, key);
  std::string etag = resp.header("ETag");
  if (etag.empty() && !cfg_.dry_run)
    fail("S3 UploadPart " + std::to_string(part_number) + " response", "an ETag header", "none");
  return etag;
}

std::string multipart_etag(const std::vector<std::pair<int, std::string>>& parts) {
  std::string digests;
  for (const auto& [n, etag] : parts) {
    std::string hex = etag;
    if (hex.size() >= 2 && hex.front() == '"' && hex.back() == '"') hex = hex.substr(1, hex.size() - 2);
    if (hex.size() != 32) return {};  // not an MD5 (e.g. SSE-KMS parts): nothing to compare
    auto nibble = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) ? (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10) : -1; };
    for (size_t i = 0; i < 32; i += 2) {
      int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
      if (hi < 0 || lo < 0) return {};
      digests += static_cast<char>(hi * 16 + lo);
    }
  }
  return "\"" + to_hex(md5(digests)) + "-" + std::to_string(parts.size()) + "\"";
}

void S3Client::complete_multipart_upload(const std::string& bucket, const std::string& key,
                                         const std::string& upload_id,
                                         const std::vector<std::pair<int, std::string>>& parts) {
  std::string body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (const auto& [n, etag] : parts)
    body += "<Part><PartNumber>" + std::to_string(n) + "</PartNumber><ETag>" + xml_escape(etag) + "</ETag></Part>";
  body += "</CompleteMultipartUpload>";
  // S3 may answer 200 and put the error in the body (the connection is kept open while it
  // assembles the parts): that is a failure, retried like any other when the code is transient.
  for (int attempt = 1;; ++attempt) {
    AwsRequest r = make("CompleteMultipartUpload", "POST", bucket, key);
    r.query = {{"uploadId", upload_id}};
    r.headers.push_back({"Content-Type", "application/xml"});
    r.body = body;
    HttpResponse resp;
    try {
      resp = send(std::move(r), bucket, key);
    } catch (const AwsError& e) {
      // Not idempotent: when an earlier attempt completed the upload but its answer was lost, the
      // retry hears NoSuchUpload. The object is ours when its ETag is the one our parts make.
      if (e.code() != "NoSuchUpload") throw;
      std::string want = multipart_etag(parts);
      std::optional<HeadResult> h = want.empty() ? std::nullopt : head_object(bucket, key);
      if (!h || h->etag != want) throw;
      if (cfg_.on_retry)
        cfg_.on_retry("S3 CompleteMultipartUpload: NoSuchUpload on a retry, but s3://" + bucket + "/" + key +
                      " has our ETag " + want + ": the earlier attempt completed it");
      return;
    }
    if (cfg_.dry_run) return;
    XmlNode x = parse_xml(resp.body, "S3 CompleteMultipartUpload response");
    if (x.name != "Error") return;
    std::string code = x.child_text("Code"), message = x.child_text("Message");
    if (is_retryable(500, code) && code != "" && attempt < std::max(1, cfg_.retry.max_attempts) &&
        (code == "InternalError" || code == "SlowDown" || code == "ServiceUnavailable")) {
      if (cfg_.on_retry) cfg_.on_retry("S3 CompleteMultipartUpload: 200 with error " + code + "; retrying");
      continue;
    }
    throw AwsError("S3 CompleteMultipartUpload failed: " + code + ": " + message +
                       " (HTTP 200 with an error in the body)",
                   "", 200, code, message, resp.headers);
  }
}

void S3Client::abort_multipart_upload(const std::string& bucket, const std::string& key,
                                      const std::string& upload_id) {
  AwsRequest r = make("AbortMultipartUpload", "DELETE", bucket, key);
  r.query = {{"uploadId", upload_id}};
  send(std::move(r), bucket, key);
}

static std::string read_range(const fs::path& path, int64_t offset, int64_t size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + " for reading");
  in.seekg(offset);
  std::string buf(static_cast<size_t>(size), '\0');
  in.read(buf.data(), size);
  if (in.gcount() != size)
    fail(path.string(), std::to_string(size) + " bytes at offset " + std::to_string(offset),
         std::to_string(in.gcount()) + " (did the file change during the upload?)");
  return buf;
}

void S3Client::upload_file(const fs::path& src, const std::string& bucket, const std::string& key,
                           const ProgressFn& progress) {
  std::error_code ec;
  auto size_u = fs::file_size(src, ec);
  if (ec) throw Error("cannot read " + src.string() + ": " + ec.message());
  const int64_t size = static_cast<int64_t>(size_u);
  if (size <= opts_.multipart_threshold) {
    put_object(bucket, key, read_range(src, 0, size));
    if (progress) progress(size, size);
    return;
  }
  int64_t part = std::max<int64_t>(opts_.part_size, 5 << 20);
  while ((size + part - 1) / part > 10000) part *= 2;  // S3 allows at most 10,000 parts
  const int n_parts = static_cast<int>((size + part - 1) / part);
  std::string upload_id = create_multipart_upload(bucket, key);
  std::vector<std::string> etags(static_cast<size_t>(n_parts));
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::exception_ptr first_error;
  int64_t done = 0;
  auto worker = [&] {
    for (;;) {
      int i = next.fetch_add(1);
      if (i >= n_parts || failed.load()) return;
      try {
        int64_t off = int64_t{i} * part, len = std::min(part, size - off);
        etags[static_cast<size_t>(i)] = upload_part(bucket, key, upload_id, i + 1, read_range(src, off, len));
        std::lock_guard<std::mutex> lock(mu);
        done += len;
        if (progress) progress(done, size);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error) first_error = std::current_exception();
        failed = true;
        return;
      }
    }
  };
  int threads = std::clamp(opts_.concurrency, 1, std::min(n_parts, 16));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (!failed) {
    std::vector<std::pair<int, std::string>> parts;
    for (int i = 0; i < n_parts; ++i) parts.emplace_back(i + 1, etags[static_cast<size_t>(i)]);
    try {
      complete_multipart_upload(bucket, key, upload_id, parts);
      return;
    } catch (...) {
      first_error = std::current_exception();
    }
  }
  // Abort so the uploaded parts are not billed forever; report the original failure.
  std::string abort_note;
  try {
    abort_multipart_upload(bucket, key, upload_id);
    abort_note = "the multipart upload was aborted";
  } catch (const std::exception& e) {
    abort_note = std::string("aborting the multipart upload failed too: ") + e.what();
  }
  try {
    std::rethrow_exception(first_error);
  } catch (const kiln::Error& e) {
    throw Error(std::string(e.what()) + " (" + abort_note + ")", e.hint());
  }
}

std::string S3Client::get_object(const std::string& bucket, const std::string& key,
                                 std::optional<std::pair<int64_t, int64_t>> range) {
  AwsRequest r = make("GetObject", "GET", bucket, key);
  if (range)
    r.headers.push_back({"Range", "bytes=" + std::to_string(range->first) + "-" + std::to_string(range->second)});
  return send(std::move(r), bucket, key).body;
}

void S3Client::download_file(const std::string& bucket, const std::string& key, const fs::path& dst,
                             const ProgressFn& progress) {
  int64_t total = 0;
  if (progress) {
    auto h = head_object(bucket, key);
    if (h) total = h->size;
  }
  std::string buf;
  AwsRequest r = make("GetObject", "GET", bucket, key);
  r.sink = [&](const char* data, size_t n) {
    buf.append(data, n);
    if (progress) progress(static_cast<int64_t>(buf.size()), std::max<int64_t>(total, static_cast<int64_t>(buf.size())));
    return true;
  };
  r.reset_sink = [&] { buf.clear(); };
  send(std::move(r), bucket, key);
  if (cfg_.dry_run) return;
  if (dst.has_parent_path()) fs::create_directories(dst.parent_path());
  write_file_atomic(dst, buf);
}

std::optional<HeadResult> S3Client::head_object(const std::string& bucket, const std::string& key) {
  AwsRequest r = make("HeadObject", "HEAD", bucket, key);
  HttpResponse resp;
  try {
    resp = send(std::move(r), bucket, key);
  } catch (const AwsError& e) {
    if (e.status() == 404) return std::nullopt;
    throw;
  }
  HeadResult h;
  std::string len = resp.header("Content-Length");
  h.size = len.empty() ? 0 : std::stoll(len);
  h.etag = resp.header("ETag");
  h.content_type = resp.header("Content-Type");
  h.last_modified = resp.header("Last-Modified");
  return h;
}

void S3Client::delete_object(const std::string& bucket, const std::string& key) {
  send(make("DeleteObject", "DELETE", bucket, key), bucket, key);
}

ListPage parse_list_objects_v2(std::string_view body) {
  const std::string what = "S3 ListObjectsV2 response";
  XmlNode x = parse_xml(body, what);
  ListPage page;
  for (const XmlNode* c : x.all("Contents")) {
    S3Object o;
    o.key = c->child_text("Key");
    o.etag = c->child_text("ETag");
    o.last_modified = c->child_text("LastModified");
    std::string sz = c->child_text("Size");
    o.size = 0;
    for (char ch : sz) {  // a decimal count of bytes; anything else is a bad response, not a crash
      if (ch < '0' || ch > '9' || __builtin_mul_overflow(o.size, 10, &o.size) ||
          __builtin_add_overflow(o.size, ch - '0', &o.size))
        fail(what + ": Size of '" + o.key + "'", "a decimal byte count", std::to_string(sz.size()) + " other characters");
    }
    page.objects.push_back(std::move(o));
  }
  for (const XmlNode* p : x.all("CommonPrefixes")) page.common_prefixes.push_back(p->child_text("Prefix"));
  if (x.child_text("IsTruncated") == "true") {
    page.next_token = x.child_text("NextContinuationToken");
    if (page.next_token.empty()) fail(what, "a NextContinuationToken when IsTruncated is true", "none");
  }
  return page;
}

ListPage S3Client::list_objects_v2(const std::string& bucket, const std::string& prefix, const std::string& delimiter,
                                   const std::string& continuation_token, int max_keys) {
  AwsRequest r = make("ListObjectsV2", "GET", bucket, "");
  r.query = {{"list-type", "2"}, {"max-keys", std::to_string(max_keys)}};
  if (!prefix.empty()) r.query.emplace_back("prefix", prefix);
  if (!delimiter.empty()) r.query.emplace_back("delimiter", delimiter);
  if (!continuation_token.empty()) r.query.emplace_back("continuation-token", continuation_token);
  HttpResponse resp = send(std::move(r), bucket, "");
  if (cfg_.dry_run) return {};
  return parse_list_objects_v2(resp.body);
}

std::vector<S3Object> S3Client::list_all(const std::string& bucket, const std::string& prefix) {
  std::vector<S3Object> all;
  std::string token;
  for (int page = 0; page < 100000; ++page) {  // bounded: 100 million keys
    ListPage p = list_objects_v2(bucket, prefix, "", token);
    for (auto& o : p.objects) all.push_back(std::move(o));
    if (p.next_token.empty()) return all;
    if (p.next_token == token) fail("S3 ListObjectsV2", "a new continuation token", "the same one again");
    token = p.next_token;
  }
  throw Error("S3 ListObjectsV2: more than 100000 pages under s3://" + bucket + "/" + prefix);
}

std::string folder_prefix(const std::string& key) {
  if (key.empty() || key.back() == '/') return key;
  return key + "/";
}

std::vector<S3Object> S3Client::list_folder(const std::string& bucket, const std::string& key) {
  return list_all(bucket, folder_prefix(key));
}

std::vector<std::string> S3Client::list_buckets() {
  HttpResponse resp = send(make("ListBuckets", "GET", "", ""), "", "");
  std::vector<std::string> names;
  if (cfg_.dry_run) return names;
  XmlNode x = parse_xml(resp.body, "S3 ListBuckets response");
  if (const XmlNode* b = x.child("Buckets"))
    for (const XmlNode* n : b->all("Bucket")) names.push_back(n->child_text("Name"));
  return names;
}

void S3Client::create_bucket(const std::string& bucket) {
  AwsRequest r = make("CreateBucket", "PUT", bucket, "");
  if (r.signing_region != "us-east-1") {
    r.headers.push_back({"Content-Type", "application/xml"});
    r.body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
             xml_escape(r.signing_region) + "</LocationConstraint></CreateBucketConfiguration>";
  }
  try {
    send(std::move(r), bucket, "");
  } catch (const AwsError& e) {
    if (e.code() != "BucketAlreadyOwnedByYou") throw;
  }
}

bool S3Client::bucket_exists(const std::string& bucket) {
  try {
    send(make("HeadBucket", "HEAD", bucket, ""), bucket, "");
    return true;
  } catch (const AwsError& e) {
    if (e.status() == 404) return false;
    throw;
  }
}

std::string S3Client::presign_get(const std::string& bucket, const std::string& key, int64_t expires_s) {
  if (expires_s < 1 || expires_s > 604800) fail("presigned URL expiry", "1 to 604800 seconds", std::to_string(expires_s));
  AwsRequest r = make("GetObject", "GET", bucket, key);
  SignableRequest sr;
  sr.method = "GET";
  sr.path = uri_decode(r.endpoint.path) + r.path;
  sr.headers = {{"Host", r.endpoint.authority()}};
  sr.payload_hash = kUnsignedPayload;
  SigningConfig sc;
  sc.region = r.signing_region;
  sc.service = "s3";
  sc.time = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  sc.normalize_path = false;
  sc.expires_s = expires_s;
  if (!cfg_.credentials) throw Error("S3 presign: no credentials configured");
  presign_query(sr, cfg_.credentials->get(), sc);
  return r.endpoint.scheme + "://" + r.endpoint.authority() + canonical_path(sr.path, false) + "?" +
         canonical_query(sr.query);
}

}  // namespace kiln::aws
