// Hashes and encodings the AWS protocols need, over OpenSSL's EVP API.
// Digests come back as raw bytes in a std::string; *_hex variants give lowercase hex.
#pragma once

#include <string>
#include <string_view>

namespace kiln::aws {

std::string sha256(std::string_view data);
std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string md5(std::string_view data);

// Incremental SHA-256 for bodies streamed from files.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  std::string hex_digest();  // finishes the hash

 private:
  void* ctx_;
};

std::string to_hex(std::string_view bytes);
std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);  // throws kiln::Error on malformed input

}  // namespace kiln::aws
