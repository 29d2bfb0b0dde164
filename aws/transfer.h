// File and directory transfers between the local disk and S3 (what `kiln s3 cp` and
// `kiln sagemaker upload` do), with an optional terminal progress bar.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "kiln/aws/s3.h"

namespace kiln::aws {

// "\r[#####.....]  45%  12.3/27.0 MiB  5.1 MiB/s" on stderr, only when stderr is a terminal
// (or forced) and the transfer is at least min_bytes.
class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();
  void update(int64_t done, int64_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};
bool stderr_is_terminal();

struct TransferOptions {
  bool recursive = false;
  bool progress = true;   // draw a bar when stderr is a terminal
  bool quiet = false;     // no "upload: a to s3://b/a" lines
};

// Returns the number of files copied. SRC/DST as in `aws s3 cp`: either side s3://bucket/key;
// a recursive download copies the folder s3://b/key/ (folder_prefix).
int64_t copy(S3Client& s3, const std::string& src, const std::string& dst, const TransferOptions& opts);
// Deletes one object, or with recursive every object in the folder (s3://b/data: the keys under
// data/, never data-old/... or database.csv). Returns the count.
int64_t remove(S3Client& s3, const std::string& uri, const TransferOptions& opts);

}  // namespace kiln::aws
