// The fast path is the default path: a steady-state training step of a ResNet does no reorder
// (the input batch and fc boundary included: the stem conv reads NCHW, the avg-pool writes the
// head plain), creates no primitive, and no primitive uses a oneDNN `ref:` implementation.
#include <doctest/doctest.h>

#include <cstdio>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/engine/tensor.h"
#include "kiln/models/classifier.h"

using namespace kiln;

TEST_CASE("steady-state resnet18 training step: no reorder, no new primitive, no ref impl") {
  // Training takes the small-map path at every batch size (inference only from batch 16 on
  // 2x2 maps): a small batch and the usual one.
  int64_t n = 0;
  SUBCASE("batch 4") { n = 4; }
  SUBCASE("batch 16") { n = 16; }
  models::Classifier clf({"resnet18", 10}, 1);
  std::vector<float> images(static_cast<size_t>(n * 3 * 32 * 32));
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>((i * 7919) % 255) / 255.0f - 0.5f;
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = (i * 3) % 10;
  clf.train_step(images.data(), labels.data(), n);  // warm-up: layouts chosen, arenas built
  clf.train_step(images.data(), labels.data(), n);
  reset_engine_stats();
  auto r = clf.train_step(images.data(), labels.data(), n);
  EngineStats s = engine_stats();
  CHECK(r.count == n);
  // The 3x3 convs on layer3's 2x2 maps (3) and layer4's 1x1 maps (3), and the stride-2 one
  // between them, skip their zero padding by default: the fast path is the default path.
  CHECK(s.small_convs == 7);
  // On AVX2 too (ONEDNN_MAX_CPU_ISA=AVX2, what the c4 serving machines run): oneDNN's jit
  // backward-weights kernels reject 3x3 convs on 1x1/2x2 maps, which used to put its gemm path and
  // reorders there; those convs now take the small-map path.
  CHECK_MESSAGE(s.reorders == 0, "reorders in a steady-state step: ", s.reorders);
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
