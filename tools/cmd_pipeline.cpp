// `kiln pipeline --local`: the reference notebook's flow on one machine, as SageMaker's local mode
// runs it, with no AWS account: 1 data, 2 train through the training-container contract (a child
// `kiln train` on a temporary /opt/ml tree with SDK-style hyperparameters), 3 package
// model.tar.gz and unpack it for serving, 4 deploy (`kiln serve` on a free local port), 5 predict
// 4 test images as the SDK's NumpySerializer sends them, 6 stop the server and clean up (also on
// failure or Ctrl-C).
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/data/download.h"
#include "kiln/data/synth.h"
#include "kiln/data/transforms.h"
#include "kiln/io/gzip.h"
#include "kiln/io/npy.h"
#include "kiln/io/tar.h"
#include "kiln/models/argmax.h"
#include "kiln/models/model_dir.h"
#include "tools/args.h"
#include "tools/command.h"
#include "tools/process.h"

namespace {

namespace fs = std::filesystem;
using kiln::cli::Args;
using kiln::cli::Child;

volatile sig_atomic_t g_interrupted = 0;
extern "C" void on_pipeline_signal(int sig) { g_interrupted = sig; }

void check_interrupted() {
  if (g_interrupted) throw kiln::Error("interrupted by the user (Ctrl-C): cleaning up");
}

void step(int n, const std::string& what) {
  std::printf("\n[%d/6] %s\n", n, what.c_str());
  std::fflush(stdout);
}

// Temporary work folder, removed when the pipeline ends (unless --keep).
struct WorkDir {
  fs::path path;
  bool keep = false;
  ~WorkDir() {
    if (path.empty()) return;
    if (keep) {
      std::printf("kept %s\n", path.c_str());
      return;
    }
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "kiln-pipeline-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) kiln::fail("creating a work folder", "a temporary directory", std::strerror(errno));
  return tmpl;
}

// The SageMaker Python SDK JSON-encodes every hyperparameter value: 4 -> "4", "x" -> "\"x\"".
std::string sdk_encode(const std::string& value, bool is_string) {
  return is_string ? nlohmann::json(value).dump() : value;
}

// model/ -> model.tar.gz as SageMaker packs /opt/ml/model (files at the archive's top level).
std::string package_model(const fs::path& model_dir) {
  std::vector<kiln::io::TarEntry> entries;
  for (const auto& e : fs::recursive_directory_iterator(model_dir)) {
    std::string rel = fs::relative(e.path(), model_dir).generic_string();
    if (e.is_directory()) entries.push_back({rel, true, {}});
    else if (e.is_regular_file()) entries.push_back({rel, false, kiln::read_file(e.path())});
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return kiln::io::gzip(kiln::io::encode_tar(entries));
}

// model.tar.gz -> dir, as SageMaker unpacks it into /opt/ml/model; refuses paths leaving dir.
void unpack_model(const std::string& targz, const fs::path& dir) {
  std::string tar = kiln::io::gunzip(targz, "model.tar.gz", size_t{4} << 30);
  for (const auto& e : kiln::io::parse_tar(tar, "model.tar.gz")) {
    fs::path rel = fs::path(e.name).lexically_normal();
    if (rel.is_absolute() || rel.empty() || *rel.begin() == "..")
      kiln::fail("model.tar.gz entry " + e.name, "a relative path inside the archive", "a path leaving it");
    if (e.is_dir) fs::create_directories(dir / rel);
    else {
      fs::create_directories((dir / rel).parent_path());
      kiln::write_file_atomic(dir / rel, e.data);
    }
  }
}

int run_pipeline(const std::vector<std::string>& argv) {
  Args a("kiln pipeline", "The reference notebook's flow on this machine: data, train (SageMaker training\n"
                          "container contract), package model.tar.gz, deploy (kiln serve), predict 4 test images, delete.\n"
                          "Defaults are shortened to finish in a few minutes on 2 cores; --full uses the reference settings.");
  a.flag("--local", "run locally (the only mode; SageMaker itself: see docs/aws.md)");
  a.option("--data", "DIR", "CIFAR-100 folder (default: ./data, downloaded there if absent)");
  a.flag("--synthetic", "use `kiln synth` data without trying CIFAR-100");
  a.flag("--full", "the reference settings: resnet34, 4 epochs, batch 128, lr 2e-4, 5,000 validation, full test");
  a.option("--pretrained", "imagenet|none|FILE",
           "start from these weights (default: imagenet with --full, as the reference's create_model(); none otherwise)");
  a.option("--arch", "NAME", "override the architecture");
  a.option("--epochs", "N", "override epochs");
  a.option("--max-steps", "N", "override the step cap (0 = none)");
  a.option("--batch-size", "N", "override the batch size");
  a.option("--lr", "LR", "override the learning rate");
  a.option("--val-size", "N|P%", "override the validation size");
  a.option("--test-size", "N|all", "override how many test images are scored");
  a.option("--threads", "N", "compute threads for training and serving (0 = all cores)", "0");
  a.option("--work-dir", "DIR", "where /opt/ml, model.tar.gz and the serving model go (default: a temp folder)");
  a.flag("--keep", "keep the work folder");
  if (!a.parse(argv)) return 0;
  if (!a.flag_set("--local"))
    throw kiln::Error("kiln pipeline: only --local is implemented", "run `kiln pipeline --local`");

  struct sigaction sa {};
  sa.sa_handler = on_pipeline_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct RestoreSignals {
    ~RestoreSignals() {
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
    }
  } restore_signals;

  WorkDir work;
  work.keep = a.flag_set("--keep");
  if (a.has("--work-dir")) {
    work.path = a.get("--work-dir");
    fs::create_directories(work.path);
    work.keep = true;
  } else {
    work.path = make_temp_dir();
  }
  const fs::path self = kiln::cli::self_exe();
  const std::string threads = a.get("--threads");

  // 1. Data.
  step(1, "data");
  fs::path data_dir;
  bool synthetic = false;
  if (a.has("--data")) {
    data_dir = a.get("--data");
  } else if (!a.flag_set("--synthetic") && !kiln::data::find_cifar100("data").empty()) {
    data_dir = "data";
  } else if (!a.flag_set("--synthetic")) {
    kiln::data::DownloadConfig dl;
    dl.dir = "data";
    dl.timeout_s = 15;
    try {
      data_dir = kiln::data::download_cifar100(dl);
    } catch (const kiln::Error& e) {
      std::printf("CIFAR-100 not found and the download failed (%s): using SYNTHETIC data from `kiln synth` instead\n",
                  e.what());
    }
  }
  check_interrupted();
  if (data_dir.empty()) {
    data_dir = work.path / "synthetic-data";
    kiln::data::write_synthetic(data_dir, {.classes = 100, .train = 5000, .test = 1000, .seed = 0});
    if (a.flag_set("--synthetic")) std::printf("using SYNTHETIC data from `kiln synth` (--synthetic)\n");
  }
  kiln::data::Cifar100 ds = kiln::data::load_cifar100(data_dir);
  synthetic = ds.synthetic;
  std::printf("data: %s (%s)%s\n", fs::absolute(data_dir).c_str(), ds.format.c_str(),
              synthetic ? " -- SYNTHETIC, not CIFAR-100" : "");

  // 2. Train through the container contract.
  step(2, "train: SageMaker training container contract on a local /opt/ml tree");
  struct Setting { const char* name; std::string value; bool is_string; };
  std::vector<Setting> hp;
  if (a.flag_set("--full")) {
    hp = {{"arch", "resnet34", true}, {"epochs", "4", false}, {"batch-size", "128", false},
          {"lr", "0.0002", false}, {"val-size", "5000", false}};
    std::printf("settings: the reference's (--full): resnet34, 4 epochs, batch 128, lr 2e-4, 5,000 validation "
                "images, all test images at batch 4, torchvision's ImageNet weights\n");
  } else {
    hp = {{"arch", "resnet18", true}, {"epochs", "1", false}, {"max-steps", "40", false},
          {"batch-size", "32", false}, {"lr", "0.02", false}, {"val-size", "320", false},
          {"test-size", "200", false}};
    std::printf("settings SHORTENED to finish in a few minutes on 2 cores (--full for the reference's):\n"
                "  resnet18 (reference resnet34), 1 epoch capped at 40 steps of batch 32 (reference 4 epochs of\n"
                "  batch 128), lr 0.02 (reference 2e-4), 320 validation images (reference 5,000), the first 200\n"
                "  test images (reference all 10,000), no ImageNet-pretrained start unless --pretrained imagenet\n");
  }
  auto override_hp = [&](const char* opt, const char* name, bool is_string) {
    if (!a.has(opt)) return;
    bool replaced = false;
    for (auto& s : hp)
      if (s.name == std::string(name)) {
        s.value = a.get(opt);
        replaced = true;
      }
    if (!replaced) hp.push_back({name, a.get(opt), is_string});
  };
  override_hp("--arch", "arch", true);
  override_hp("--epochs", "epochs", false);
  override_hp("--max-steps", "max-steps", false);
  override_hp("--batch-size", "batch-size", false);
  override_hp("--lr", "lr", false);
  override_hp("--val-size", "val-size", true);
  override_hp("--test-size", "test-size", true);
  hp.push_back({"threads", threads, false});
  std::string pretrained = a.get_or("--pretrained", a.flag_set("--full") ? "imagenet" : "none");
  if (pretrained != "none")
    hp.push_back({"pretrained", pretrained == "imagenet" ? pretrained : fs::absolute(pretrained).string(), true});

  const fs::path opt_ml = work.path / "opt" / "ml";
  fs::create_directories(opt_ml / "input" / "config");
  fs::create_directories(opt_ml / "input" / "data");
  fs::create_directories(opt_ml / "model");
  fs::create_directories(opt_ml / "checkpoints");
  fs::create_directories(opt_ml / "output");
  nlohmann::ordered_json hpj = nlohmann::ordered_json::object();
  for (const auto& s : hp) hpj[s.name] = sdk_encode(s.value, s.is_string);
  kiln::write_file_atomic(opt_ml / "input/config/hyperparameters.json", hpj.dump(2) + "\n");
  kiln::write_file_atomic(opt_ml / "input/config/resourceconfig.json",
                          R"({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})" "\n");
  kiln::write_file_atomic(opt_ml / "input/config/inputdataconfig.json",
                          R"({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}})" "\n");
  fs::create_directory_symlink(fs::absolute(data_dir), opt_ml / "input" / "data" / "training");
  std::printf("hyperparameters.json: %s\n", hpj.dump().c_str());
  std::printf("$ KILN_OPT_ML=%s kiln train\n", opt_ml.c_str());
  {
    Child train = Child::spawn({self.string(), "train"}, {{"KILN_OPT_ML", opt_ml.string()}});
    int rc = -1;
    while ((rc = train.wait()) == -1) {
      // A signal: the child (same process group on a terminal) got it too and checkpoints; make
      // sure it also stops when the signal came only to us.
      if (g_interrupted) rc = train.stop(100);
      if (rc != -1) break;
    }
    check_interrupted();
    if (rc != 0) {
      std::string reason = fs::exists(opt_ml / "output/failure") ? kiln::read_file(opt_ml / "output/failure") : "";
      kiln::fail("training (kiln train in container mode)", "exit code 0", std::to_string(rc) +
                 (reason.empty() ? "" : "; /opt/ml/output/failure: " + reason));
    }
  }
  double test_acc = -1, test_loss = -1;
  if (fs::exists(opt_ml / "output/tensorboard/metrics.jsonl")) {
    std::string lines = kiln::read_file(opt_ml / "output/tensorboard/metrics.jsonl");
    size_t start = 0;
    while (start < lines.size()) {
      size_t end = lines.find('\n', start);
      auto j = nlohmann::json::parse(lines.substr(start, end - start), nullptr, false);
      if (j.is_object() && j.contains("test_acc")) {
        test_acc = j["test_acc"].get<double>();
        test_loss = j["test_loss"].get<double>();
      }
      start = end == std::string::npos ? lines.size() : end + 1;
    }
  }

  // 3. Package and unpack.
  step(3, "package model.tar.gz as SageMaker does, unpack it for serving");
  const fs::path tarball = work.path / "output" / "model.tar.gz";
  fs::create_directories(tarball.parent_path());
  std::string targz = package_model(opt_ml / "model");
  kiln::write_file_atomic(tarball, targz);
  const fs::path serving = work.path / "serving" / "opt" / "ml" / "model";
  fs::create_directories(serving);
  unpack_model(kiln::read_file(tarball), serving);
  std::printf("%s (%zu bytes) -> %s\n", tarball.c_str(), targz.size(), serving.c_str());
  kiln::models::LoadedModel model = kiln::models::load_model_dir(serving);
  check_interrupted();

  // 4. Deploy.
  step(4, "deploy: kiln serve on a free local port");
  const int port = kiln::cli::free_local_port();
  Child server = Child::spawn({self.string(), "serve", "--model-dir", serving.string(), "--port",
                               std::to_string(port), "--host", "127.0.0.1", "--threads", threads,
                               "--no-access-log"},
                              {}, work.path / "serve.log");
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  client.set_read_timeout(60);
  auto t0 = std::chrono::steady_clock::now();
  bool ready = false;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
    check_interrupted();
    if (!server.running())
      kiln::fail("kiln serve", "a running server", "it exited", "see " + (work.path / "serve.log").string());
    auto r = client.Get("/ping");
    if (r && r->status == 200) {
      ready = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!ready) kiln::fail("kiln serve /ping", "200 within 120 s", "no answer");
  std::printf("endpoint: http://127.0.0.1:%d (GET /ping 200 after %.1f s)\n", port,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  // 5. Predict: the test loader's first batch of 4, as predictor.predict(images.numpy()) sends it.
  step(5, "predict 4 test images (application/x-npy, as the SageMaker SDK sends them)");
  const int64_t n = std::min<int64_t>(4, ds.test.size());
  kiln::data::Normalization norm;
  norm.mean = model.config.mean;
  norm.std = model.config.std;
  kiln::data::Normalizer normalizer(norm);
  kiln::io::NamedArray images;
  images.name = "images";
  images.shape = {n, 3, 32, 32};
  images.bytes.resize(static_cast<size_t>(images.numel()) * 4);
  for (int64_t i = 0; i < n; ++i) normalizer.apply(ds.test.image(i), images.f32() + i * kiln::data::kImageBytes);
  httplib::Headers headers = {{"Accept", "application/x-npy"}};
  auto r = client.Post("/invocations", headers, kiln::io::encode_npy(images), "application/x-npy");
  if (!r) kiln::fail("POST /invocations", "an answer", "no answer (" + httplib::to_string(r.error()) + ")");
  if (r->status != 200) kiln::fail("POST /invocations", "status 200", std::to_string(r->status) + ": " + r->body);
  kiln::io::NamedArray out = kiln::io::parse_npy(r->body, "the /invocations answer");
  const int64_t classes = model.config.num_classes;
  if (out.dtype != kiln::io::DType::f32 || out.shape != std::vector<int64_t>{n, classes})
    kiln::fail("the /invocations answer", "float32 (" + std::to_string(n) + ", " + std::to_string(classes) + ")",
               std::string(kiln::io::dtype_name(out.dtype)) + " " + kiln::io::shape_str(out.shape));
  std::printf("%-5s %-20s %-20s %s\n", "image", "ground truth", "predicted", "log-prob");
  for (int64_t i = 0; i < n; ++i) {
    const float* lp = out.f32() + i * classes;
    const int64_t best = kiln::models::argmax(lp, classes);
    int64_t truth = ds.test.labels[static_cast<size_t>(i)];
    std::printf("%-5lld %-20s %-20s %.3f%s\n", static_cast<long long>(i),
                model.config.class_names[static_cast<size_t>(truth)].c_str(),
                model.config.class_names[static_cast<size_t>(best)].c_str(), lp[best], best == truth ? "  ok" : "");
  }
  if (test_acc >= 0)
    std::printf("test accuracy%s: %.2f%% (test_loss %.4f, from the training job's test at batch 4)\n",
                synthetic ? " on SYNTHETIC data" : "", 100 * test_acc, test_loss);

  // 6. Delete.
  step(6, "delete the endpoint: stop the server, clean up");
  int rc = server.stop(30);
  std::printf("kiln serve stopped (exit %d)%s\n", rc, work.keep ? "" : "; work folder removed");
  return 0;
}

}  // namespace

KILN_COMMAND("pipeline", "the reference notebook's flow locally: data, train, package, serve, predict, delete",
             run_pipeline);
