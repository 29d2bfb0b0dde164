// The fast path is the default path: a steady-state training step of a ResNet does no reorder
// (the input batch and fc boundary included: the stem conv reads NCHW, the avg-pool writes the
// head plain), creates no primitive, and no primitive uses a oneDNN `ref:` implementation.
#include <doctest/doctest.h>

#include <cstdio>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "engine/tensor.h"
#include "models/classifier.h"

using namespace kiln;

TEST_CASE("steady-state resnet18 training step: no reorder, no new primitive, no ref impl") {
  models::Classifier clf({"resnet18", 10}, 1);
  const int64_t n = 4;
  std::vector<float> images(static_cast<size_t>(n * 3 * 32 * 32));
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>((i * 7919) % 255) / 255.0f - 0.5f;
  std::vector<int64_t> labels = {1, 3, 5, 7};
  clf.train_step(images.data(), labels.data(), n);  // warm-up: layouts chosen, arenas built
  clf.train_step(images.data(), labels.data(), n);
  reset_engine_stats();
  auto r = clf.train_step(images.data(), labels.data(), n);
  EngineStats s = engine_stats();
  CHECK(r.count == n);
  // NOTE: with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), its jit backward-weights
  // kernels reject 3x3 convs on 1x1/2x2 maps (layer4 at 32x32) and the plain gemm path runs
  // there, with reorders around it. The training target (c5, AVX-512) has none.
  bool avx512 = dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core;
  if (avx512) {
    CHECK_MESSAGE(s.reorders == 0, "reorders in a steady-state step: ", s.reorders);
  } else {
    MESSAGE("oneDNN below AVX-512: ", s.reorders, " reorders in a steady-state step (expected)");
  }
  CHECK_MESSAGE(s.primitives_created == 0, "primitives created in a steady-state step: ",
                s.primitives_created);
  int refs = 0;
  for (const auto& name : primitive_impl_names()) {
    if (name.find(": ref") != std::string::npos) {
      ++refs;
      MESSAGE("reference implementation on the hot path: ", name);
    }
  }
  CHECK(refs == 0);
  // Activations and conv weights are blocked, not plain.
  auto params = clf.net().named_parameters();
  CHECK(params[0].first == "conv1.weight");
  MESSAGE("conv1.weight layout: ", params[0].second.layout_str());
  MESSAGE("layer1.0.conv1.weight layout: ", params[3].second.layout_str());
  CHECK_FALSE(params[3].second.is_plain());
}
