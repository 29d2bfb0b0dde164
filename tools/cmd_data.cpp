// The data commands: `kiln synth` (a learnable synthetic dataset in CIFAR-100's binary layout),
// `kiln data` (what --data DIR holds), `kiln data shard` (the training records in parts, for
// SageMaker's ShardedByS3Key) and `kiln download cifar100`.
#include <cstdio>
#include <cstdlib>
#include <map>

#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/download.h"
#include "kiln/data/parts.h"
#include "kiln/data/pretrained.h"
#include "kiln/data/synth.h"
#include "tools/args.h"
#include "tools/command.h"

namespace {

using kiln::cli::Args;

int run_synth(const std::vector<std::string>& argv) {
  Args a("kiln synth",
         "Write a synthetic dataset in CIFAR-100's binary layout (train.bin, test.bin,\n"
         "fine_label_names.txt) whose classes are learnable: a class-dependent shape and colour\n"
         "plus noise. A SYNTHETIC marker file says it is not CIFAR-100; every reader reports it.");
  a.option("--dir", "DIR", "output directory (created)");
  a.option("--classes", "N", "number of classes, 1..100", "100");
  a.option("--train", "N", "training images", "5000");
  a.option("--test", "M", "test images", "1000");
  a.option("--seed", "S", "random seed", "0");
  if (!a.parse(argv)) return 0;
  if (!a.has("--dir")) kiln::fail("kiln synth", "--dir DIR", "no --dir");
  kiln::data::SynthConfig cfg;
  cfg.classes = a.get_int("--classes");
  cfg.train = a.get_int("--train");
  cfg.test = a.get_int("--test");
  cfg.seed = static_cast<uint64_t>(a.get_int("--seed"));
  kiln::data::write_synthetic(a.get("--dir"), cfg);
  std::printf("wrote synthetic dataset to %s: %lld train, %lld test images, %lld classes (SYNTHETIC, not CIFAR-100)\n",
              a.get("--dir").c_str(), static_cast<long long>(cfg.train),
              static_cast<long long>(cfg.test), static_cast<long long>(cfg.classes));
  return 0;
}

int run_shard(const std::vector<std::string>& argv) {
  Args a("kiln data shard",
         "Split the training records of the dataset under --data DIR into N parts for a SageMaker job\n"
         "whose training channel is ShardedByS3Key (each host receives some of the parts):\n"
         "OUT/training/train-KKKKK-of-NNNNN.bin (contiguous runs of 3074-byte records, in order) and\n"
         "OUT/test/ (test.bin, fine_label_names.txt: the FullyReplicated `test` channel). Locally:\n"
         "kiln train --data OUT/training --test-data OUT/test. See docs/data.md.");
  a.option("--data", "DIR", "dataset directory (any form `kiln data` reads)", "data");
  a.option("--parts", "N", "number of parts (at least the number of instances)");
  a.option("--out", "OUT", "output folder (must not exist; written whole or not at all)");
  if (!a.parse(argv)) return 0;
  if (!a.has("--parts")) kiln::fail("kiln data shard", "--parts N", "no --parts");
  if (!a.has("--out")) kiln::fail("kiln data shard", "--out OUT", "no --out");
  const auto c = kiln::data::load_cifar100(a.get("--data"));
  const auto rep = kiln::data::write_train_parts(c, a.get_int("--parts"), a.get("--out"));
  std::printf("wrote %zu parts of %lld training records to %s (", rep.part_records.size(),
              static_cast<long long>(c.train.size()), rep.training.string().c_str());
  for (size_t k = 0; k < rep.part_records.size() && k < 8; ++k)
    std::printf("%s%lld", k ? ", " : "", static_cast<long long>(rep.part_records[k]));
  std::printf("%s records)\nwrote %lld test records and the class names to %s\n",
              rep.part_records.size() > 8 ? ", ..." : "", static_cast<long long>(c.test.size()),
              rep.test.string().c_str());
  return 0;
}

int run_data(const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0] == "shard") return run_shard({argv.begin() + 1, argv.end()});
  Args a("kiln data", "Read the CIFAR-100 dataset under --data DIR and describe it.\n"
                      "`kiln data shard --help`: split its training records into parts (ShardedByS3Key).");
  a.option("--data", "DIR", "dataset directory (see docs/data.md for the search order)", "data");
  a.option("--test-data", "DIR", "class names and test half for a folder of training parts");
  if (!a.parse(argv)) return 0;
  std::vector<std::string> names;
  if (a.has("--test-data")) names = kiln::data::load_cifar100(a.get("--test-data")).test.class_names;
  const auto c = kiln::data::load_cifar100(a.get("--data"), names);
  std::printf("dataset: %s\nformat: %s\nsynthetic: %s\n", c.root.string().c_str(), c.format.c_str(),
              c.synthetic ? "yes (made by kiln synth, NOT CIFAR-100)" : "no");
  std::printf("classes: %lld\ntrain: %lld images\ntest: %lld images\n",
              static_cast<long long>(c.train.num_classes()), static_cast<long long>(c.train.size()),
              static_cast<long long>(c.test.size()));
  std::map<int64_t, int64_t> counts;
  for (int64_t l : c.train.labels) ++counts[l];
  std::printf("first classes:");
  for (int64_t i = 0; i < std::min<int64_t>(5, c.train.num_classes()); ++i)
    std::printf(" %s(%lld)", c.train.class_names[static_cast<size_t>(i)].c_str(),
                static_cast<long long>(counts[i]));
  std::printf("\n");
  return 0;
}

}  // namespace

KILN_COMMAND("synth", "write a learnable synthetic dataset in CIFAR-100's binary layout", run_synth);
KILN_COMMAND("data", "describe the CIFAR-100 dataset found under --data DIR", run_data);

namespace {

int run_download(const std::vector<std::string>& argv) {
  Args a("kiln download",
         "Download CIFAR-100 (the python version, cifar-100-python.tar.gz) over verified HTTPS,\n"
         "check its MD5, and extract it to DIR/cifar-100-python atomically (a temporary folder\n"
         "renamed into place: never a half-written dataset). Environment: KILN_CA_BUNDLE (PEM file\n"
         "of trusted CAs instead of the system's), KILN_CIFAR100_MD5 (expected MD5, for test archives).\n"
         "ARCH-imagenet (resnet18-imagenet ... resnet152-imagenet): torchvision's ImageNet weights\n"
         "(what resnet34(pretrained=True) loads) from download.pytorch.org, checked against the SHA-256\n"
         "prefix in their file name, cached in $TORCH_HOME/hub/checkpoints (or --dir) as torch hub does.");
  a.positional("WHAT", "cifar100, or ARCH-imagenet (e.g. resnet34-imagenet)");
  a.option("--dir", "DIR", "directory to put cifar-100-python/ in", "data");
  a.option("--url", "URL", "where to fetch the archive from", kiln::data::kCifar100Url);
  a.option("--md5", "HEX", "expected MD5 of the archive (default: the published one)");
  a.option("--timeout", "S", "connect/read timeout in seconds", "30");
  a.flag("--force", "download again even if the dataset is already there");
  if (!a.parse(argv)) return 0;
  const std::string what = a.positionals()[0];
  const std::string suffix = "-imagenet";
  if (what.size() > suffix.size() && what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0) {
    kiln::data::PretrainedOptions po;
    if (a.given("--url")) po.url = a.get("--url");
    if (a.given("--dir")) po.cache_dir = a.get("--dir");
    po.timeout_s = static_cast<int>(a.get_int("--timeout"));
    const auto path = kiln::data::fetch_pretrained(what.substr(0, what.size() - suffix.size()), po);
    std::printf("%s\n", path.string().c_str());
    return 0;
  }
  if (what != "cifar100")
    kiln::fail("kiln download", "cifar100 or ARCH-imagenet (resnet18 ... resnet152)", "'" + what + "'");
  kiln::data::DownloadConfig cfg;
  cfg.dir = a.get("--dir");
  cfg.url = a.get("--url");
  const char* env_md5 = std::getenv("KILN_CIFAR100_MD5");
  if (a.has("--md5")) cfg.md5 = a.get("--md5");
  else if (env_md5 && *env_md5) cfg.md5 = env_md5;
  if (const char* ca = std::getenv("KILN_CA_BUNDLE"); ca && *ca) cfg.ca_bundle = ca;
  cfg.timeout_s = static_cast<int>(a.get_int("--timeout"));
  std::string format;
  const std::string have = kiln::data::find_cifar100(cfg.dir, &format);
  if (!have.empty() && !a.flag_set("--force")) {
    std::printf("CIFAR-100 is already in %s (%s version); --force downloads it again\n", have.c_str(),
                format.c_str());
    return 0;
  }
  std::fprintf(stderr, "downloading %s\n", cfg.url.c_str());
  const auto where = kiln::data::download_cifar100(cfg);
  std::printf("CIFAR-100 is ready in %s\n", where.string().c_str());
  return 0;
}

}  // namespace

KILN_COMMAND("download", "download CIFAR-100 or torchvision's ImageNet weights over verified HTTPS", run_download);
