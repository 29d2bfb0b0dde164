// The data pipeline's random numbers: SplitMix64 streams keyed by (seed, epoch, index), so
// every sample's augmentation and every epoch's shuffle is a pure function of those numbers
// (identical whatever the worker count, and reproducible after a resume).
#pragma once

#include <cstdint>
#include <initializer_list>

namespace kiln::data {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Mixes a key into a seed (order matters).
inline uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t s = seed ^ 0x6B696C6E64617461ull;  // "kilndata"
  uint64_t h = splitmix64(s);
  for (uint64_t k : {a, b, c}) {
    s = h ^ (k * 0xD1B54A32D192ED03ull);
    h = splitmix64(s);
  }
  return h;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64(state_); }
  // Uniform in [0, n), n > 0: rejection sampling removes the modulo bias.
  uint64_t below(uint64_t n) {
    uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
    uint64_t x;
    do x = next(); while (x >= limit);
    return x % n;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace kiln::data
