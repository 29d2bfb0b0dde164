// Memory budgets of .pth and pickle loading (issue 11): the crafted files of make_hostile.py
// (4,000 names for one storage, 4,000 zip entries on one deflate stream, a memoized value copied
// 20,000 times, a storage_offset near INT64_MAX) are refused with an error that says what and by
// how much, and each is parsed in a forked child whose peak RSS is bounded here.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "fixtures.h"
#include "kiln/io/pickle.h"
#include "kiln/io/pth.h"

using namespace kiln::io;
using kiln_test::fs::path;

namespace {

const path& hostile() {
  static path dir = [] {
    path src = kiln_test::env_or("KILN_SOURCE_ROOT", ".");
    path d = kiln_test::work_dir() / "hostile";
    std::string out;
    int rc = kiln_test::run(kiln_test::python() + " " + kiln_test::quote(src / "tests/io/make_hostile.py") + " " +
                            kiln_test::quote(d), &out);
    if (rc != 0) throw kiln::Error("make_hostile.py failed (exit " + std::to_string(rc) + "):\n" + out);
    return d;
  }();
  return dir;
}

struct ChildResult {
  int status = -1;           // the child's exit status
  long max_rss_mb = 0;       // its peak resident set
  std::string message;       // the kiln::Error it caught ("" when none)
};

// Runs `parse` in a forked child (so its peak RSS is its own) and reports how it ended:
// exit 0 when it threw kiln::Error (message sent back), 1 when it returned, 2 on another exception.
ChildResult in_child(const std::function<void()>& parse) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    int code = 1;
    std::string msg;
    try {
      parse();
    } catch (const kiln::Error& e) {
      code = 0;
      msg = e.full_message();
    } catch (const std::exception& e) {
      code = 2;
      msg = std::string("other exception: ") + e.what();
    }
    if (::write(fds[1], msg.data(), msg.size()) < 0) code = 3;
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) r.message.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  struct rusage ru {};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.max_rss_mb = ru.ru_maxrss / 1024;
  return r;
}

// Before the budgets these asked for 4-5 GiB; the bound leaves room for ASan's own overhead.
constexpr long kRssBoundMb = 400;

}  // namespace

TEST_CASE("4,000 state_dict names for one 1 MiB storage: refused before copying, saying by how much") {
  ChildResult r = in_child([] { read_pth(hostile() / "shared_storage.pth"); });
  INFO(r.message);
  CHECK(r.status == 0);
  CHECK(r.message.find("its 4000 tensors") != std::string::npos);
  CHECK(r.message.find("twice its 1.0 MiB of storages") != std::string::npos);
  CHECK(r.message.find("3.9 GiB") != std::string::npos);  // what they would take
  CHECK(r.max_rss_mb < kRssBoundMb);
}

TEST_CASE("a zip whose 4,000 entries share one deflate stream is refused as overlapping") {
  ChildResult r = in_child([] { read_pth(hostile() / "shared_deflate.pth"); });
  INFO(r.message);
  CHECK(r.status == 0);
  CHECK(r.message.find("zip entries 'archive/data/0' and 'archive/data/1'") != std::string::npos);
  CHECK(r.message.find("overlapping bytes") != std::string::npos);
  CHECK(r.max_rss_mb < kRssBoundMb);
}

TEST_CASE("a pickle copying one memoized 256 KiB value 20,000 times stops at its budget") {
  for (const char* file : {"memo_amplify.pkl", "memo_amplify.pth"}) {
    CAPTURE(file);
    ChildResult r = in_child([file] {
      if (std::strstr(file, ".pkl")) unpickle(kiln::read_file(hostile() / file), file);
      else read_pth(hostile() / file);
    });
    INFO(r.message);
    CHECK(r.status == 0);
    CHECK(r.message.find("values of at most 70 MiB in all (64 MiB + 16 x the pickle's 393 KiB)") != std::string::npos);
    CHECK(r.message.find("more asked") != std::string::npos);
    CHECK(r.max_rss_mb < kRssBoundMb);
  }
}

TEST_CASE("a storage_offset near INT64_MAX is an error, not a signed overflow") {
  // UBSan (the sanitizer build) turned the old `last += ...` into a failure; now it is checked.
  CHECK_THROWS_WITH_AS(read_pth(hostile() / "offset_overflow.pth"), doctest::Contains("view extent (offset 9223372036854775806)"),
                       kiln::Error);
}

TEST_CASE("a genuine state_dict with a tied weight (two names, one storage) still loads") {
  StateDict sd = read_pth(hostile() / "tied.pth");
  REQUIRE(sd.size() == 3);
  CHECK(sd[0].name == "emb");
  CHECK(sd[1].name == "head");
  CHECK(sd[0].bytes == sd[1].bytes);
  CHECK(sd[1].f32()[5] == 5.0f);
}

TEST_CASE("PthLimits::max_bytes: the caller's budget is exact and named in the error") {
  const uint64_t need = 2 * 6 * 4 + 2 * 4;  // emb + head + bias
  CHECK(read_pth(hostile() / "tied.pth", PthLimits{need}).size() == 3);
  CHECK_THROWS_WITH_AS(read_pth(hostile() / "tied.pth", PthLimits{need - 1}),
                       doctest::Contains("at most 55 bytes in all (the caller's limit), found 56 bytes, 1 bytes over"),
                       kiln::Error);
}

TEST_CASE("UnpickleLimits::max_bytes bounds a legitimate pickle too, with the numbers") {
  using namespace std::literals;
  std::string p = "\x80\x02]q\x00("s;
  for (int i = 0; i < 100; ++i) p += "X\x04\x00\x00\x00"s + "abcd";
  p += "e.";
  CHECK(unpickle(p, "ok.pkl").root().items.size() == 100);
  UnpickleLimits tight;
  tight.max_bytes = 4096;
  CHECK_THROWS_WITH_AS(unpickle(p, "tight.pkl", tight), doctest::Contains("values of at most 4.0 KiB in all (the caller's limit)"),
                       kiln::Error);
}
