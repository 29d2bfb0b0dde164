// Seeded initialisers (see layers/init.h).
#include "kiln/layers/init.h"

#include <cmath>
#include <vector>

namespace kiln::layers {

uint64_t Rng::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
  spare_ = r * std::sin(a);
  has_spare_ = true;
  return r * std::cos(a);
}

Rng Rng::fork(uint64_t stream) {
  Rng r(state_ ^ (stream * 0xD1B54A32D192ED03ULL));
  r.next_u64();
  return r;
}

namespace {
template <class F>
void fill_with(Tensor& t, F f) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (auto& x : v) x = static_cast<float>(f());
  t.copy_from_plain(v.data());
}
}  // namespace

void fill_constant(Tensor& t, float value) {
  fill_with(t, [&] { return value; });
}

void fill_uniform(Tensor& t, Rng& rng, double low, double high) {
  fill_with(t, [&] { return low + (high - low) * rng.uniform(); });
}

void fill_normal(Tensor& t, Rng& rng, double mean, double std) {
  fill_with(t, [&] { return mean + std * rng.normal(); });
}

void kaiming_normal_fan_out(Tensor& weight, Rng& rng) {
  const auto& s = weight.shape();
  double fan_out = static_cast<double>(s[0]);
  for (size_t i = 2; i < s.size(); ++i) fan_out *= static_cast<double>(s[i]);
  fill_normal(weight, rng, 0.0, std::sqrt(2.0 / fan_out));
}

void linear_default_init(Tensor& weight, Tensor& bias, Rng& rng) {
  // kaiming_uniform_(a=sqrt(5)) gives bound sqrt(6/((1+5)*fan_in)) = 1/sqrt(fan_in).
  double bound = 1.0 / std::sqrt(static_cast<double>(weight.dim(1)));
  fill_uniform(weight, rng, -bound, bound);
  fill_uniform(bias, rng, -bound, bound);
}

}  // namespace kiln::layers
