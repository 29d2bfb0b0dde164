// `kiln s3 cp|ls|rm|mb|presign`: S3 without the AWS CLI, over kiln's own SigV4 client (aws/).
// Options follow the AWS CLI: --region, --profile, --endpoint-url, --recursive, --dry-run.
#include <cstdio>
#include <string>
#include <vector>

#include "kiln/aws/client.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/transfer.h"
#include "kiln/core/error.h"
#include "tools/args.h"
#include "tools/command.h"

namespace {

using namespace kiln::aws;
using kiln::cli::Args;

void add_common(Args& a) {
  a.option("--region", "REGION", "AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's region)");
  a.option("--profile", "NAME", "profile in ~/.aws/credentials and ~/.aws/config (else AWS_PROFILE)");
  a.option("--endpoint-url", "URL", "send every request here (else AWS_ENDPOINT_URL[_S3]), e.g. a local S3");
  a.option("--addressing-style", "STYLE", "auto, path or virtual", "auto");
  a.option("--multipart-threshold-mib", "N", "upload files larger than this in parts", "8");
  a.option("--part-size-mib", "N", "multipart part size (at least 5)", "8");
  a.option("--concurrency", "N", "parts uploaded in parallel", "4");
  a.flag("--no-progress", "no progress bar (it is only drawn when stderr is a terminal)");
  a.flag("--dry-run", "print the requests that would be sent (secrets masked), send nothing");
  a.flag("--quiet", "no per-file lines");
}

S3Client make_client(const Args& a) {
  ClientConfig cfg = make_client_config(a.get_or("--region", ""), a.get_or("--endpoint-url", ""),
                                        a.get_or("--profile", ""));
  if (a.flag_set("--dry-run")) cfg.dry_run = [](const std::string& s) { std::fputs(s.c_str(), stdout); };
  S3Options o;
  std::string style = a.get("--addressing-style");
  if (style == "path") o.addressing = AddressingStyle::path;
  else if (style == "virtual") o.addressing = AddressingStyle::virtual_hosted;
  else if (style != "auto") kiln::fail("--addressing-style", "auto, path or virtual", "'" + style + "'");
  o.multipart_threshold = a.get_int("--multipart-threshold-mib") << 20;
  o.part_size = a.get_int("--part-size-mib") << 20;
  if (o.part_size < (5 << 20)) kiln::fail("--part-size-mib", "at least 5 (S3's minimum part size)", a.get("--part-size-mib"));
  o.concurrency = static_cast<int>(a.get_int("--concurrency"));
  if (o.concurrency < 1 || o.concurrency > 16) kiln::fail("--concurrency", "1 to 16", a.get("--concurrency"));
  return S3Client(cfg, o);
}

TransferOptions transfer_options(const Args& a, bool recursive) {
  TransferOptions t;
  t.recursive = recursive;
  t.progress = !a.flag_set("--no-progress");
  t.quiet = a.flag_set("--quiet");
  return t;
}

int cmd_cp(const std::vector<std::string>& argv) {
  Args a("kiln s3 cp", "Copy a file or (with --recursive) a directory to or from S3.\n"
                       "  kiln s3 cp data/ s3://bucket/data/cifar100 --recursive\n"
                       "  kiln s3 cp s3://bucket/model/model.tar.gz .");
  a.positional("SRC", "local path or s3://bucket/key");
  a.positional("DST", "local path or s3://bucket/key");
  a.flag("--recursive", "copy every file under SRC");
  add_common(a);
  if (!a.parse(argv)) return 0;
  S3Client s3 = make_client(a);
  int64_t n = copy(s3, a.positionals()[0], a.positionals()[1], transfer_options(a, a.flag_set("--recursive")));
  if (n == 0) std::fprintf(stderr, "kiln s3 cp: nothing to copy\n");
  return 0;
}

int cmd_ls(const std::vector<std::string>& argv) {
  Args a("kiln s3 ls", "List buckets, or the objects and prefixes under s3://bucket/prefix.");
  a.positional("S3URI", "s3://bucket[/prefix]; none lists your buckets", false);
  a.flag("--recursive", "list every object in the folder s3://bucket/prefix/ (no grouping by '/')");
  add_common(a);
  if (!a.parse(argv)) return 0;
  S3Client s3 = make_client(a);
  if (a.positionals().empty()) {
    for (const auto& b : s3.list_buckets()) std::printf("%s\n", b.c_str());
    return 0;
  }
  S3Uri u = S3Uri::parse(a.positionals()[0]);
  std::string token;
  for (int page = 0; page < 100000; ++page) {
    // --recursive lists the folder (as rm/cp --recursive act on it); without, the prefix as typed
    bool recursive = a.flag_set("--recursive");
    ListPage p = s3.list_objects_v2(u.bucket, recursive ? folder_prefix(u.key) : u.key, recursive ? "" : "/", token);
    for (const auto& cp : p.common_prefixes) std::printf("%30s PRE %s\n", "", cp.c_str());
    for (const auto& o : p.objects)
      std::printf("%-24s %12lld %s\n", o.last_modified.c_str(), static_cast<long long>(o.size), o.key.c_str());
    if (p.next_token.empty()) break;
    token = p.next_token;
  }
  return 0;
}

int cmd_rm(const std::vector<std::string>& argv) {
  Args a("kiln s3 rm", "Delete an object, or every object under a prefix with --recursive.");
  a.positional("S3URI", "s3://bucket/key");
  a.flag("--recursive", "delete every object in the folder (s3://b/data: data/..., never data-old/...)");
  add_common(a);
  if (!a.parse(argv)) return 0;
  S3Client s3 = make_client(a);
  remove(s3, a.positionals()[0], transfer_options(a, a.flag_set("--recursive")));
  return 0;
}

int cmd_mb(const std::vector<std::string>& argv) {
  Args a("kiln s3 mb", "Create a bucket in the region (LocationConstraint unless us-east-1).");
  a.positional("S3URI", "s3://bucket");
  add_common(a);
  if (!a.parse(argv)) return 0;
  S3Client s3 = make_client(a);
  S3Uri u = S3Uri::parse(a.positionals()[0]);
  s3.create_bucket(u.bucket);
  std::printf("make_bucket: %s\n", u.bucket.c_str());
  return 0;
}

int cmd_presign(const std::vector<std::string>& argv) {
  Args a("kiln s3 presign", "Print a presigned GET URL for an object.");
  a.positional("S3URI", "s3://bucket/key");
  a.option("--expires-in", "SECONDS", "validity, at most 604800 (7 days)", "3600");
  add_common(a);
  if (!a.parse(argv)) return 0;
  S3Client s3 = make_client(a);
  S3Uri u = S3Uri::parse(a.positionals()[0]);
  std::printf("%s\n", s3.presign_get(u.bucket, u.key, a.get_int("--expires-in")).c_str());
  return 0;
}

int run_s3(const std::vector<std::string>& argv) {
  static const char* usage =
      "usage: kiln s3 <cp|ls|rm|mb|presign> ... (`kiln s3 <sub> --help` for options)\n";
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(usage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  const std::string& sub = argv[0];
  if (sub == "cp") return cmd_cp(rest);
  if (sub == "ls") return cmd_ls(rest);
  if (sub == "rm") return cmd_rm(rest);
  if (sub == "mb") return cmd_mb(rest);
  if (sub == "presign") return cmd_presign(rest);
  throw kiln::Error("unknown s3 command '" + sub + "'", "one of: cp ls rm mb presign");
}

}  // namespace

KILN_COMMAND("s3", "copy, list and delete S3 objects (cp, ls, rm, mb, presign)", run_s3);
