// TensorBoard event files: CRC32C against known vectors, and a written file parsed back by a
// small independent Python reader (TFRecord framing with masked CRCs, Event/Summary protobuf
// fields decoded by hand: tensorboard and python3-protobuf are not installed here).
#include <doctest/doctest.h>

#include <cstring>

#include "tests/support/support.h"
#include "kiln/train/metrics_log.h"
#include "kiln/train/tensorboard.h"

using namespace kiln::train;

TEST_CASE("crc32c matches the published check values") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  unsigned char zeros[32] = {};
  CHECK(crc32c(zeros, 32) == 0x8A9136AAu);  // RFC 3720 B.4
}

static const char* kReader = R"PY(
import struct, sys, os, glob
def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF
def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xFFFFFFFF
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1; v |= (x & 0x7F) << s; s += 7
        if x < 0x80: return v, i
def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i); num, wt = key >> 3, key & 7
        if wt == 0: v, i = varint(b, i)
        elif wt == 1: v = b[i:i+8]; i += 8
        elif wt == 5: v = b[i:i+4]; i += 4
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i+n]; i += n
        else: raise ValueError("wire type %d" % wt)
        yield num, wt, v
(path,) = glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*"))
data = open(path, "rb").read()
i = 0; first = True
while i < len(data):
    hdr = data[i:i+8]; (n,) = struct.unpack("<Q", hdr)
    (hcrc,) = struct.unpack("<I", data[i+8:i+12]); assert hcrc == masked(hdr), "length crc"
    payload = data[i+12:i+12+n]
    (pcrc,) = struct.unpack("<I", data[i+12+n:i+16+n]); assert pcrc == masked(payload), "data crc"
    i += 16 + n
    ev = {num: v for num, wt, v in fields(payload)}
    assert 1 in ev, "wall_time"
    if first:
        assert ev[3] == b"brain.Event:2", ev; first = False; continue
    step = ev.get(2, 0)
    for num, wt, val in fields(ev[5]):
        assert num == 1
        f = {k: v for k, _, v in fields(val)}
        print(f[1].decode(), step, "%.6g" % struct.unpack("<f", f[2])[0])
)PY";

TEST_CASE("TensorBoard event files parse back: framing, CRCs, tags, steps, values") {
  kiln::test::TempDir tmp("tb");
  {
    MetricsLog log(tmp.path / "logs", /*force_plain=*/true);
    EpochMetrics m;
    m.epoch = 1;
    m.train_loss = 4.5;
    m.train_acc = 0.125;
    m.val_loss = 4.25;
    m.val_acc = 0.25;
    log.end_epoch(m, 10);
    log.test(3.5, 0.5, 10);
  }
  kiln::test::write_text(tmp.path / "reader.py", kReader);
  auto r = kiln::test::run_command(kiln::test::python() + " " + (tmp.path / "reader.py").string() +
                                   " " + (tmp.path / "logs").string());
  REQUIRE_MESSAGE(r.status == 0, r.output);
  CHECK(r.output ==
        "train_loss 1 4.5\ntrain_acc 1 0.125\nval_loss 1 4.25\nval_acc 1 0.25\n"
        "test_loss 10 3.5\ntest_acc 10 0.5\n");
  std::string jsonl = kiln::test::read_text(tmp.path / "logs" / "metrics.jsonl");
  CHECK(jsonl.find("\"val_acc\":0.25") != std::string::npos);
  CHECK(jsonl.find("\"test_loss\":3.5") != std::string::npos);
}

TEST_CASE("metric lines are what the documented MetricDefinitions regexes scrape") {
  EpochMetrics m;
  m.epoch = 3;
  m.train_loss = 4.12345;
  m.train_acc = 0.0812;
  CHECK(epoch_metric_line(m) == "epoch=3 train_loss=4.1235 train_acc=0.0812");
  m.val_loss = 3.9;
  m.val_acc = 0.11;
  CHECK(epoch_metric_line(m) == "epoch=3 train_loss=4.1235 train_acc=0.0812 val_loss=3.9000 val_acc=0.1100");
  CHECK(test_metric_line(1.5, 0.25) == "test_loss=1.5000 test_acc=0.2500");
}
