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

TEST_CASE("steady-state resnet18 inference: batch norm folded, no reorder, no new primitive, no ref impl") {
  // Batch 1 (what kiln serve sees most) and 16 (2x2 maps on the small-map path).
  int64_t n = 0;
  SUBCASE("batch 1") { n = 1; }
  SUBCASE("batch 16") { n = 16; }
  models::Classifier clf({"resnet18", 10}, 1);
  std::vector<float> images(static_cast<size_t>(n * 3 * 32 * 32));
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<float>((i * 7919) % 255) / 255.0f - 0.5f;
  std::vector<float> out(static_cast<size_t>(n * 10));
  const size_t known = primitive_impl_names().size();  // other tests' primitives (training)
  clf.predict_log_probs(images.data(), n, out.data());  // warm-up: primitives, folded weights
  reset_engine_stats();
  clf.predict_log_probs(images.data(), n, out.data());
  EngineStats s = engine_stats();
  // The input batch arrives NCHW and the stem convolution reads it in its own layout: the one
  // reorder of an inference step.
  CHECK_MESSAGE(s.reorders <= 1, "reorders in a steady-state inference step: ", s.reorders);
  CHECK_MESSAGE(s.primitives_created == 0, "primitives created in a steady-state inference step: ",
                s.primitives_created);
  CHECK(s.small_convs == (n >= 16 ? 7 : 4));
  int refs = 0, bnorms = 0;
  const auto names = primitive_impl_names();
  for (size_t i = known; i < names.size(); ++i) {
    if (names[i].find(": ref") != std::string::npos) {
      ++refs;
      MESSAGE("reference implementation: ", names[i]);
    }
    if (names[i].rfind("bnorm", 0) == 0) ++bnorms;
  }
  CHECK(names.size() > known);
  CHECK(refs == 0);
  // Inference never builds a batch-norm primitive: every BN is folded into its convolution.
  CHECK(bnorms == 0);
}
