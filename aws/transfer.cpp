// Local <-> S3 copies and removals (see transfer.h).
#include "kiln/aws/transfer.h"

#include <unistd.h>

#include <cstdio>

#include "kiln/core/error.h"

namespace kiln::aws {

namespace fs = std::filesystem;

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int64_t done, int64_t total) {
  if (!enabled_ || total < (1 << 20)) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  int filled = static_cast<int>(frac * 30);
  std::string bar(static_cast<size_t>(filled), '#');
  bar += std::string(static_cast<size_t>(30 - filled), '.');
  std::fprintf(stderr, "\r%s [%s] %3d%% %.1f/%.1f MiB %.1f MiB/s ", label_.c_str(), bar.c_str(),
               static_cast<int>(frac * 100), static_cast<double>(done) / 1048576.0,
               static_cast<double>(total) / 1048576.0,
               secs > 0 ? static_cast<double>(done) / 1048576.0 / secs : 0.0);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) std::fputs("\n", stderr);
  drawn_ = false;
}

static std::string join_key(const std::string& prefix, const std::string& rel) {
  if (prefix.empty()) return rel;
  return prefix.back() == '/' ? prefix + rel : prefix + "/" + rel;
}

static void upload_one(S3Client& s3, const fs::path& file, const S3Uri& dst, const TransferOptions& opts) {
  ProgressBar bar(file.filename().string(), opts.progress);
  s3.upload_file(file, dst.bucket, dst.key, [&](int64_t d, int64_t t) { bar.update(d, t); });
  bar.finish();
  if (!opts.quiet) std::printf("upload: %s to %s\n", file.string().c_str(), dst.str().c_str());
}

static void download_one(S3Client& s3, const S3Uri& src, const fs::path& file, const TransferOptions& opts) {
  ProgressBar bar(fs::path(src.key).filename().string(), opts.progress);
  s3.download_file(src.bucket, src.key, file, [&](int64_t d, int64_t t) { bar.update(d, t); });
  bar.finish();
  if (!opts.quiet) std::printf("download: %s to %s\n", src.str().c_str(), file.string().c_str());
}

int64_t copy(S3Client& s3, const std::string& src, const std::string& dst, const TransferOptions& opts) {
  bool src_s3 = S3Uri::is_s3(src), dst_s3 = S3Uri::is_s3(dst);
  if (src_s3 && dst_s3)
    throw Error("s3 cp: copying from S3 to S3 is not supported", "download, then upload");
  if (!src_s3 && !dst_s3) throw Error("s3 cp: one of SRC and DST must be an s3:// location");
  if (!src_s3) {
    S3Uri d = S3Uri::parse(dst);
    fs::path p(src);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      if (!opts.recursive) throw Error("s3 cp: " + src + " is a directory", "add --recursive to upload its files");
      std::vector<fs::path> files;
      for (auto it = fs::recursive_directory_iterator(p); it != fs::recursive_directory_iterator(); ++it)
        if (it->is_regular_file()) files.push_back(it->path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files)
        upload_one(s3, f, {d.bucket, join_key(d.key, fs::relative(f, p).generic_string())}, opts);
      return static_cast<int64_t>(files.size());
    }
    if (!fs::is_regular_file(p, ec)) throw Error("s3 cp: " + src + " does not exist or is not a file");
    if (d.key.empty() || d.key.back() == '/') d.key += p.filename().string();
    upload_one(s3, p, d, opts);
    return 1;
  }
  S3Uri s = S3Uri::parse(src);
  fs::path out(dst);
  if (opts.recursive) {
    const std::string prefix = folder_prefix(s.key);
    auto objects = s3.list_folder(s.bucket, s.key);
    int64_t n = 0;
    for (const auto& o : objects) {
      if (o.key.empty() || o.key.back() == '/') continue;  // "folder" markers
      std::string rel = o.key.substr(prefix.size());
      fs::path target = (out / rel).lexically_normal();
      // A key like "../../x" must not write outside DST.
      auto r = target.lexically_relative(out.lexically_normal());
      if (r.empty() || r.begin()->string() == "..")
        throw Error("s3 cp: key " + o.key + " would be written outside " + dst);
      download_one(s3, {s.bucket, o.key}, target, opts);
      ++n;
    }
    return n;
  }
  if (s.key.empty()) throw Error("s3 cp: " + src + " names a bucket, not an object", "add --recursive to copy every object");
  std::error_code ec;
  if (fs::is_directory(out, ec) || dst.back() == '/') out /= fs::path(s.key).filename();
  download_one(s3, s, out, opts);
  return 1;
}

int64_t remove(S3Client& s3, const std::string& uri, const TransferOptions& opts) {
  S3Uri u = S3Uri::parse(uri);
  if (!opts.recursive) {
    if (u.key.empty()) throw Error("s3 rm: " + uri + " names a bucket", "add --recursive to delete every object in it");
    s3.delete_object(u.bucket, u.key);
    if (!opts.quiet) std::printf("delete: %s\n", u.str().c_str());
    return 1;
  }
  // The prefix is a folder: `rm --recursive s3://b/data` leaves data-old/ and database.csv alone.
  auto objects = s3.list_folder(u.bucket, u.key);
  for (const auto& o : objects) {
    s3.delete_object(u.bucket, o.key);
    if (!opts.quiet) std::printf("delete: s3://%s/%s\n", u.bucket.c_str(), o.key.c_str());
  }
  return static_cast<int64_t>(objects.size());
}

}  // namespace kiln::aws
