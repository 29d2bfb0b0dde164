// `kiln eval --model-dir DIR --data DIR [--batch-size 4]`: the trained model on the test half of
// a dataset (test transform only): test_loss, test_acc and per-class accuracy.
#include <algorithm>
#include <cstdio>

#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/loader.h"
#include "kiln/engine/cpu.h"
#include "kiln/models/classifier.h"
#include "kiln/models/model_dir.h"
#include "tools/args.h"
#include "tools/command.h"
#include "kiln/train/evaluate.h"
#include "kiln/train/metrics_log.h"

namespace {

int run_eval(const std::vector<std::string>& argv) {
  kiln::cli::Args a("kiln eval", "Evaluate a model directory on a dataset's test images.");
  a.option("--model-dir", "DIR", "written by kiln train (config.json + model.safetensors or model.pth)");
  a.option("--data", "DIR", "CIFAR-100 or `kiln synth` folder");
  a.option("--batch-size", "N", "evaluation batch size (the reference tests with 4)", "4");
  a.option("--limit", "N", "only the first N test images (0 = all)", "0");
  a.option("--threads", "N", "compute threads (0 = all cores)", "0");
  a.option("--isa", "NAME", "force kiln's kernels to scalar | avx2 | avx512");
  if (!a.parse(argv)) return 0;
  if (a.has("--isa")) kiln::force_isa(kiln::parse_isa(a.get("--isa")));
  if (a.get_int("--threads") > 0) kiln::set_num_threads(static_cast<int>(a.get_int("--threads")));
  // Built without random initialisation and loaded in one call: every weight comes from the
  // directory (a missing one is an error, never a random value).
  kiln::models::LoadedResNet m = kiln::models::load_resnet(a.get("--model-dir"));
  kiln::data::Cifar100 ds = kiln::data::load_cifar100(a.get("--data"));
  const int64_t classes = m.config.num_classes;
  if (ds.test.num_classes() != classes)
    kiln::fail("kiln eval: test set " + ds.test.source, std::to_string(classes) + " classes (the model's)",
               std::to_string(ds.test.num_classes()));
  if (m.config.dataset == "synthetic" && !ds.synthetic)
    std::fprintf(stderr, "note: this model was trained on SYNTHETIC data\n");

  kiln::models::Classifier clf(std::move(m.net));
  clf.set_image_size(m.config.image_size);

  int64_t n = ds.test.size();
  if (a.get_int("--limit") > 0) n = std::min(n, a.get_int("--limit"));
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  kiln::data::LoaderConfig cfg;
  cfg.batch_size = a.get_int("--batch-size");
  cfg.shuffle = false;
  cfg.augment = false;
  cfg.norm.mean = m.config.mean;
  cfg.norm.std = m.config.std;
  kiln::data::Loader loader(ds.test, idx, cfg);
  std::printf("model %s (%s, %lld classes%s) on %lld test images of %s%s\n", m.weights_file.string().c_str(),
              m.config.arch.c_str(), static_cast<long long>(classes),
              m.config.dataset == "synthetic" ? ", trained on SYNTHETIC data" : "", static_cast<long long>(n),
              ds.root.string().c_str(), ds.synthetic ? " (SYNTHETIC)" : "");
  kiln::train::EvalResult r = kiln::train::evaluate_loader(clf, loader, classes);
  std::printf("%s\n", kiln::train::test_metric_line(r.loss, r.acc).c_str());
  std::printf("per-class accuracy:\n");
  for (int64_t k = 0; k < classes; ++k) {
    auto total = r.class_total[static_cast<size_t>(k)];
    if (total == 0) continue;
    std::printf("  %3lld %-16s %6.2f%%  (%lld/%lld)\n", static_cast<long long>(k),
                m.config.class_names[static_cast<size_t>(k)].c_str(),
                100.0 * static_cast<double>(r.class_correct[static_cast<size_t>(k)]) / static_cast<double>(total),
                static_cast<long long>(r.class_correct[static_cast<size_t>(k)]), static_cast<long long>(total));
  }
  return 0;
}

}  // namespace

KILN_COMMAND("eval", "evaluate a trained model directory on a dataset's test images", run_eval);
