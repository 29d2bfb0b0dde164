// TensorBoard event files written by hand, so `tensorboard --logdir` shows kiln's curves without
// any protobuf or TensorFlow dependency. A file is a sequence of TFRecords
// (uint64 length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes), each record
// one serialized tensorflow.Event; scalars are Event{wall_time, step, summary{value{tag,
// simple_value}}}. The first record carries file_version "brain.Event:2".
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace kiln::train {

uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

// Serialized Event protos (exposed for tests).
std::string tb_event_file_version(double wall_time);
std::string tb_event_scalar(double wall_time, int64_t step, const std::string& tag, float value);
std::string tb_record(const std::string& payload);  // TFRecord framing

class TensorBoardWriter {
 public:
  // Creates dir and events.out.tfevents.<seconds>.<host>.kiln in it.
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void scalar(const std::string& tag, float value, int64_t step);
  void flush();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace kiln::train
