// S3 client: objects, listings, buckets, multipart uploads, presigned URLs.
// Addressing: virtual-hosted (bucket.s3.REGION.amazonaws.com) for AWS when the bucket name is
// DNS-compatible, path-style (endpoint/bucket/key) for custom endpoints or when asked.
// A bucket in another region (301/400 with x-amz-bucket-region) is retried there once, and the
// bucket's region remembered. Keys are signed and sent encoded once, never normalized.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/aws/client.h"

namespace kiln::aws {

enum class AddressingStyle { automatic, path, virtual_hosted };

struct S3Options {
  AddressingStyle addressing = AddressingStyle::automatic;
  int64_t multipart_threshold = 8 << 20;  // bytes; larger uploads go multipart
  int64_t part_size = 8 << 20;            // bytes (S3 minimum 5 MiB except the last part)
  int concurrency = 4;                    // parts in flight
};

struct S3Uri {
  std::string bucket, key;
  static bool is_s3(const std::string& text) { return text.rfind("s3://", 0) == 0; }
  static S3Uri parse(const std::string& text);  // s3://bucket[/key]
  std::string str() const { return "s3://" + bucket + "/" + key; }
};

struct S3Object {
  std::string key, etag, last_modified;
  int64_t size = 0;
};

struct ListPage {
  std::vector<S3Object> objects;
  std::vector<std::string> common_prefixes;
  std::string next_token;  // "" when this was the last page
};

// The prefix that treats `key` as a folder, as every recursive operation does: "data" ->
// "data/" (so that "data-old/x" and "database.csv" are not under it); "" and "data/" unchanged.
std::string folder_prefix(const std::string& key);

// The ETag S3 gives an object completed from these parts: "md5(part md5s concatenated)-N"
// (quoted); "" when a part's ETag is not a plain MD5.
std::string multipart_etag(const std::vector<std::pair<int, std::string>>& parts);

// A ListObjectsV2 response body (XML) -> its page; kiln::Error on anything malformed (fuzzed).
ListPage parse_list_objects_v2(std::string_view body);

struct HeadResult {
  int64_t size = 0;
  std::string etag, content_type, last_modified;
};

// Bytes done / total, called from the transferring thread(s) under a lock.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

class S3Client {
 public:
  S3Client(ClientConfig cfg, S3Options opts = {});

  void put_object(const std::string& bucket, const std::string& key, const std::string& body,
                  const std::string& content_type = "application/octet-stream");
  // Single PUT up to the threshold, multipart above it (parts in parallel, aborted on failure).
  void upload_file(const std::filesystem::path& src, const std::string& bucket, const std::string& key,
                   const ProgressFn& progress = {});
  // range_begin/end inclusive; nullopt = whole object.
  std::string get_object(const std::string& bucket, const std::string& key,
                         std::optional<std::pair<int64_t, int64_t>> range = std::nullopt);
  void download_file(const std::string& bucket, const std::string& key, const std::filesystem::path& dst,
                     const ProgressFn& progress = {});
  std::optional<HeadResult> head_object(const std::string& bucket, const std::string& key);
  void delete_object(const std::string& bucket, const std::string& key);
  ListPage list_objects_v2(const std::string& bucket, const std::string& prefix, const std::string& delimiter,
                           const std::string& continuation_token = {}, int max_keys = 1000);
  // Every object under the prefix, following continuation tokens (bounded).
  std::vector<S3Object> list_all(const std::string& bucket, const std::string& prefix);
  // Every object in the folder `key` (folder_prefix): what --recursive operations act on.
  std::vector<S3Object> list_folder(const std::string& bucket, const std::string& key);
  std::vector<std::string> list_buckets();        // ListBuckets: names
  void create_bucket(const std::string& bucket);  // LocationConstraint = region unless us-east-1
  bool bucket_exists(const std::string& bucket);  // HeadBucket: false on 404, throws on 403

  // Multipart pieces (public for tests).
  std::string create_multipart_upload(const std::string& bucket, const std::string& key);
  std::string upload_part(const std::string& bucket, const std::string& key, const std::string& upload_id,
                          int part_number, const std::string& body);  // returns the ETag
  // Retried like any call; a retry answered NoSuchUpload counts as success when the object is
  // there with multipart_etag(parts) (an earlier attempt completed it and its answer was lost).
  void complete_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                 const std::vector<std::pair<int, std::string>>& parts);
  void abort_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id);

  // A presigned GET URL valid for expires_s seconds.
  std::string presign_get(const std::string& bucket, const std::string& key, int64_t expires_s);

  const ClientConfig& config() const { return cfg_; }
  std::string region_of(const std::string& bucket);  // remembered after a redirect, else the config's

 private:
  AwsRequest make(const std::string& op, const std::string& method, const std::string& bucket,
                  const std::string& key);
  HttpResponse send(AwsRequest req, const std::string& bucket, const std::string& key);
  ClientConfig cfg_;
  S3Options opts_;
  std::mutex mu_;
  std::map<std::string, std::string> bucket_regions_;
};

}  // namespace kiln::aws
