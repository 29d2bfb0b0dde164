// Recursive S3 operations treat a prefix as a folder (issue 11): `rm --recursive s3://b/data`
// and `cp --recursive s3://b/data DIR` act on data/... only, never on data-old/... or
// database.csv; against moto_server (moto_fixture.h), the one without signature checks: moto 5
// cannot verify a '/' in a query value (prefix=data/), which real S3 requires encoded as %2F.
#include <doctest/doctest.h>

#include <algorithm>

#include "kiln/aws/s3.h"
#include "kiln/aws/transfer.h"
#include "kiln/core/atomic_file.h"
#include "moto_fixture.h"

using namespace kiln::aws;
using kiln_test::MotoServer;
using kiln_test::ScopedEnv;
using kiln_test::TempDir;

namespace {

ClientConfig folder_config() { return kiln_test::moto_client_config(MotoServer::unsigned_server()); }

std::vector<std::string> keys(S3Client& s3, const std::string& bucket) {
  std::vector<std::string> k;
  for (const auto& o : s3.list_all(bucket, "")) k.push_back(o.key);
  std::sort(k.begin(), k.end());
  return k;
}

// data/ (two files, one nested) next to look-alikes that share its first characters.
void put_tree(S3Client& s3, const std::string& bucket) {
  s3.create_bucket(bucket);
  for (const char* k : {"data/a.csv", "data/sub/b.csv", "data-old/c.csv", "database.csv", "data", "other/d.csv"})
    s3.put_object(bucket, k, k);
}

}  // namespace

TEST_CASE("folder_prefix: a key names a folder, with one trailing slash") {
  CHECK(folder_prefix("data") == "data/");
  CHECK(folder_prefix("data/") == "data/");
  CHECK(folder_prefix("a/b") == "a/b/");
  CHECK(folder_prefix("") == "");
}

static TransferOptions recursive_quiet() {
  TransferOptions t;
  t.recursive = true;
  t.quiet = true;
  return t;
}

TEST_CASE("s3 rm --recursive s3://b/data deletes data/... only, not data-old/, database.csv or the object 'data'") {
  ScopedEnv env;
  S3Client s3(folder_config());
  put_tree(s3, "kiln-rm-folder");
  const TransferOptions t = recursive_quiet();
  CHECK(remove(s3, "s3://kiln-rm-folder/data", t) == 2);
  CHECK(keys(s3, "kiln-rm-folder") == std::vector<std::string>{"data", "data-old/c.csv", "database.csv", "other/d.csv"});
  // with the slash: the same folder (now empty)
  CHECK(remove(s3, "s3://kiln-rm-folder/data/", t) == 0);
  CHECK(keys(s3, "kiln-rm-folder").size() == 4);
}

TEST_CASE("s3 cp --recursive s3://b/data DIR downloads data/... only") {
  ScopedEnv env;
  TempDir d;
  S3Client s3(folder_config());
  put_tree(s3, "kiln-cp-folder");
  const TransferOptions t = recursive_quiet();
  CHECK(copy(s3, "s3://kiln-cp-folder/data", (d / "out").string(), t) == 2);
  CHECK(kiln::read_file(d / "out" / "a.csv") == "data/a.csv");
  CHECK(kiln::read_file(d / "out" / "sub" / "b.csv") == "data/sub/b.csv");
  CHECK_FALSE(std::filesystem::exists(d / "out" / "c.csv"));
  CHECK_FALSE(std::filesystem::exists(d / "out-old"));
  size_t files = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(d / "out"); it != std::filesystem::recursive_directory_iterator(); ++it)
    files += it->is_regular_file();
  CHECK(files == 2);
}

TEST_CASE("list_folder is what every recursive operation lists") {
  ScopedEnv env;
  S3Client s3(folder_config());
  put_tree(s3, "kiln-ls-folder");
  std::vector<std::string> k;
  for (const auto& o : s3.list_folder("kiln-ls-folder", "data")) k.push_back(o.key);
  std::sort(k.begin(), k.end());
  CHECK(k == std::vector<std::string>{"data/a.csv", "data/sub/b.csv"});
  CHECK(s3.list_folder("kiln-ls-folder", "").size() == 6);  // the whole bucket
}

TEST_CASE("kiln s3 rm/ls --recursive s3://b/data: the folder only, from the command line") {
  const char* bin = std::getenv("KILN_BIN");
  REQUIRE_MESSAGE(bin != nullptr, "KILN_BIN is not set (run through meson test)");
  ScopedEnv env;
  S3Client s3(folder_config());
  put_tree(s3, "kiln-cli-folder");
  MotoServer& m = MotoServer::unsigned_server();
  env.set("AWS_ACCESS_KEY_ID", m.key);
  env.set("AWS_SECRET_ACCESS_KEY", m.secret);
  env.set("AWS_REGION", "us-east-1");
  const std::string common = " --endpoint-url " + m.url;
  std::string out;
  REQUIRE_MESSAGE(kiln_test::run_capture(std::string(bin) + " s3 ls --recursive s3://kiln-cli-folder/data" + common, out) == 0, out);
  CHECK(out.find("data/a.csv") != std::string::npos);
  CHECK(out.find("data/sub/b.csv") != std::string::npos);
  CHECK(out.find("data-old") == std::string::npos);
  CHECK(out.find("database.csv") == std::string::npos);
  REQUIRE_MESSAGE(kiln_test::run_capture(std::string(bin) + " s3 rm --recursive s3://kiln-cli-folder/data" + common, out) == 0, out);
  CHECK(out.find("delete: s3://kiln-cli-folder/data/a.csv") != std::string::npos);
  CHECK(keys(s3, "kiln-cli-folder") == std::vector<std::string>{"data", "data-old/c.csv", "database.csv", "other/d.csv"});
}
