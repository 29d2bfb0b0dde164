// `kiln download cifar100`: fetch cifar-100-python.tar.gz over HTTPS with certificate
// verification, check its MD5, extract into a temporary folder next to the target and rename
// it into place, so a dataset directory is either complete or absent.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace kiln::data {

inline constexpr const char* kCifar100Url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz";
inline constexpr const char* kCifar100Md5 = "eb9058c3a382ffc7106e4002c42a8d85";

struct DownloadConfig {
  std::string url = kCifar100Url;
  std::string md5 = kCifar100Md5;  // expected, lower-case hex ("" = skip, only for tests)
  std::filesystem::path dir = "data";
  std::string ca_bundle;           // PEM file of trusted CAs ("" = the system's)
  int timeout_s = 30;              // connect/read timeout
  bool quiet = false;
};

// One GET over verified HTTPS (redirects followed), the body into memory, at most max_bytes.
// Failures say whether the machine looks offline, the certificate was not trusted or the server
// answered something else, each followed by offline_hint (where to put the file by hand).
struct FetchOptions {
  std::string ca_bundle;  // PEM file of trusted CAs ("" = the system's)
  int timeout_s = 30;
  bool quiet = false;     // no progress lines on stderr
  size_t max_bytes = size_t(1) << 30;
  std::string offline_hint;
  std::function<void(const char*, size_t)> on_data;  // sees the body as it arrives (hashing)
};
std::string https_get(const std::string& url, const FetchOptions& opts);

// Returns the folder that now holds the dataset (dir/cifar-100-python).
std::filesystem::path download_cifar100(const DownloadConfig& cfg);

std::string md5_hex(std::string_view bytes);

}  // namespace kiln::data
