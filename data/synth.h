// `kiln synth`: a synthetic dataset in the binary CIFAR-100 layout whose classes are learnable
// (each class is a shape drawn in a class colour on a class background, with random position,
// size and pixel noise). It writes train.bin, test.bin, fine_label_names.txt,
// coarse_label_names.txt and a SYNTHETIC marker file so nothing mistakes it for CIFAR-100.
#pragma once

#include <cstdint>
#include <filesystem>

namespace kiln::data {

struct SynthConfig {
  int64_t classes = 100;  // 1..100
  int64_t train = 5000;
  int64_t test = 1000;
  uint64_t seed = 0;
};

void write_synthetic(const std::filesystem::path& dir, const SynthConfig& cfg);
// One image (3,32,32) of class `label` (deterministic for rng state).
void draw_synthetic(int64_t label, int64_t classes, uint64_t sample_seed, uint8_t* dst);

}  // namespace kiln::data
