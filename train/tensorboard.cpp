// TensorBoard event files (see tensorboard.h). Protobuf wire format by hand: field key =
// (number << 3) | wire_type; wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
#include "kiln/train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "kiln/core/error.h"

namespace kiln::train {

namespace {

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli, reflected
    t[i] = c;
  }
  return t;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

template <typename T>
void put_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // x86-64 is little-endian, as the wire format
  out.append(b, sizeof(T));
}

void put_bytes_field(std::string& out, int field, const std::string& bytes) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tb_event_file_version(double wall_time) {
  std::string ev;
  put_varint(ev, (1 << 3) | 1);  // wall_time: double
  put_le(ev, wall_time);
  put_bytes_field(ev, 3, "brain.Event:2");  // file_version
  return ev;
}

std::string tb_event_scalar(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;  // Summary.Value
  put_bytes_field(v, 1, tag);
  put_varint(v, (2 << 3) | 5);  // simple_value: float
  put_le(v, value);
  std::string summary;
  put_bytes_field(summary, 1, v);
  std::string ev;
  put_varint(ev, (1 << 3) | 1);
  put_le(ev, wall_time);
  put_varint(ev, (2 << 3) | 0);  // step: int64
  put_varint(ev, static_cast<uint64_t>(step));
  put_bytes_field(ev, 5, summary);
  return ev;
}

std::string tb_record(const std::string& payload) {
  std::string rec;
  uint64_t len = payload.size();
  std::string len_bytes;
  put_le(len_bytes, len);
  rec += len_bytes;
  put_le(rec, masked_crc32c(len_bytes.data(), len_bytes.size()));
  rec += payload;
  put_le(rec, masked_crc32c(payload.data(), payload.size()));
  return rec;
}

TensorBoardWriter::TensorBoardWriter(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  double t = now_seconds();
  path_ = dir / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(t)) + "." + host +
                 ".kiln." + std::to_string(getpid()));
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) fail("TensorBoard log " + path_.string(), "a writable file", "an error opening it",
                   "check --log-dir");
  std::string rec = tb_record(tb_event_file_version(t));
  std::fwrite(rec.data(), 1, rec.size(), file_);
  std::fflush(file_);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalar(const std::string& tag, float value, int64_t step) {
  std::string rec = tb_record(tb_event_scalar(now_seconds(), step, tag, value));
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size())
    fail("TensorBoard log " + path_.string(), "a successful write", "a write error");
}

void TensorBoardWriter::flush() { std::fflush(file_); }

}  // namespace kiln::train
