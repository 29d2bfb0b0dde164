// CIFAR-100's training records split into parts, for SageMaker's ShardedByS3Key distribution
// (each host receives a subset of the channel's S3 objects). A parts folder holds files named
//   train-KKKKK-of-NNNNN.bin   (KKKKK = 00000 ... NNNNN-1, five digits each)
// each a whole number of the binary version's 3074-byte records. A host may hold any subset of
// the parts; they are read in part order, so all N parts together are the original train.bin,
// record for record. Class names and the test half live elsewhere (the `test` channel), since
// any other file in a sharded channel would reach one host only; `kiln data shard` writes both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/data/dataset.h"

namespace kiln::data {

struct TrainPart {
  std::filesystem::path path;
  int64_t index = 0, count = 0;  // KKKKK and NNNNN of its name
};

// The parts in `dir`, sorted by index; {} when it has none. Throws kiln::Error naming the file
// for a name that starts with "train-" and ends in ".bin" but is not train-KKKKK-of-NNNNN.bin,
// for parts of different NNNNN, and for KKKKK >= NNNNN.
std::vector<TrainPart> find_train_parts(const std::filesystem::path& dir);

// The parts' records in part order with the given class names (labels >= their count are an
// error naming the part and record; a part that is not a whole number of records names the
// file and its size). Throws when `dir` holds no part.
Dataset load_train_parts(const std::filesystem::path& dir, const std::vector<std::string>& class_names);

// What `kiln data shard` writes from a loaded dataset: <out>/training/ with `parts` parts of the
// training records (contiguous, nearly equal: the first records % parts parts one record more)
// and <out>/test/ with test.bin, fine_label_names.txt (and SYNTHETIC for synthetic data). The
// binary layout's coarse label byte is written as 0 (kiln reads the fine label only). Written
// into a temporary sibling folder renamed to <out>: never half a set; <out> must not exist.
struct ShardReport {
  std::vector<int64_t> part_records;
  std::filesystem::path training, test;
};
ShardReport write_train_parts(const Cifar100& ds, int64_t parts, const std::filesystem::path& out);

// True for a name train-KKKKK-of-NNNNN.bin with KKKKK < NNNNN (an S3 key's last part, say).
bool is_train_part_name(const std::string& name);

// train-00003-of-00008.bin for (3, 8).
std::string train_part_name(int64_t index, int64_t count);

}  // namespace kiln::data
