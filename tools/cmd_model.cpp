// `kiln predict`: y = log_softmax(resnet(x)) in eval mode, from torchvision weights (.pth or
// .safetensors, or a kiln model directory) and an NPY batch; `kiln summary`: every layer of a
// ResNet with its output shape and parameter count, like Lightning's ModelSummary.
// Input x is float32 (N,3,S,S) C-order NPY, already normalized; output y is float32 (N,classes).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "kiln/engine/ops.h"
#include "kiln/engine/tensor.h"
#include "kiln/io/npy.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/resnet.h"
#include "tools/args.h"
#include "tools/command.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

// Applies --threads and --isa (shared by predict, summary and bench).
void apply_engine_options(const Args& a) {
  if (a.has("--isa")) force_isa(parse_isa(a.get("--isa")));
  if (a.has("--threads")) {
    int64_t t = a.get_int("--threads");
    if (t < 0 || t > 4096) fail("--threads", "a thread count in [0, 4096] (0 = all cores)", std::to_string(t));
    set_num_threads(static_cast<int>(t));
  }
}

int run_predict(const std::vector<std::string>& argv) {
  Args a("kiln predict",
         "Log-probabilities y = log_softmax(resnet(x)) in eval mode, as torchvision computes them.\n"
         "x: float32 (N,3,S,S) C-order NPY, already normalized; y: float32 (N,classes) NPY.");
  a.option("--weights", "FILE", "torchvision state_dict: .pth (torch.save) or .safetensors");
  a.option("--model-dir", "DIR", "a kiln model directory (config.json + model.safetensors/.pth) instead of --weights");
  a.option("--input", "X.npy", "input batch");
  a.option("--output", "Y.npy", "where to write the log-probabilities (atomic)");
  a.option("--arch", "NAME", "resnet18 | resnet34 | resnet50 (default: from the model dir, else "
                             "detected from the weights' keys)");
  a.option("--num-classes", "N", "classes (default: from the weights' fc; a different value "
                                 "re-initialises fc like nn.Linear and says so)");
  a.option("--batch-size", "B", "images per forward pass", "128");
  a.option("--threads", "N", "OpenMP threads for kiln and oneDNN (0 = all cores)");
  a.option("--isa", "ISA", "cap kiln's kernels (and oneDNN's) at scalar | avx2 | avx512");
  if (!a.parse(argv)) return 0;
  apply_engine_options(a);
  if (!a.has("--input") || !a.has("--output"))
    throw Error("kiln predict needs --input X.npy and --output Y.npy", "see kiln predict --help");
  if (a.has("--weights") == a.has("--model-dir"))
    throw Error("kiln predict needs exactly one of --weights FILE and --model-dir DIR",
                "see kiln predict --help");

  if (a.given("--num-classes") && a.get_int("--num-classes") < 1)
    fail("--num-classes", "a positive count", a.get("--num-classes"));
  int64_t batch = a.get_int("--batch-size");
  if (batch < 1) fail("--batch-size", "a positive count", std::to_string(batch));

  // Built without random initialisation and loaded in one call: every weight comes from the
  // file. Only a --num-classes that differs from the weights' re-initialises fc (seeded, like
  // nn.Linear), and says so.
  models::LoadResNetOptions lo;
  if (a.has("--arch")) lo.arch(a.get("--arch"));
  if (a.given("--num-classes")) lo.num_classes(a.get_int("--num-classes")).reinit_head(true);
  const fs::path path = a.has("--model-dir") ? a.get("--model-dir") : a.get("--weights");
  models::LoadedResNet m = models::load_resnet(path, lo);
  models::ResNet& net = *m.net;
  const std::string arch = m.config.arch, source = m.weights_file.string();
  const int64_t classes = m.config.num_classes;
  const int64_t image_size = a.has("--model-dir") ? m.config.image_size : 0;

  io::NamedArray x = io::read_npy(a.get("--input"));
  const std::string in = a.get("--input");
  if (x.dtype != io::DType::f32)
    fail(in, "dtype float32 ('<f4')", io::dtype_name(x.dtype), "save with x.astype(np.float32)");
  if (x.shape.size() != 4 || x.shape[1] != 3 || x.shape[2] != x.shape[3] || x.shape[0] < 1)
    fail(in, "shape (N, 3, S, S) with N >= 1", io::shape_str(x.shape),
         "images are NCHW, RGB, square (CIFAR: 32x32), already normalized");
  if (image_size && x.shape[2] != image_size)
    fail(in, "images of " + std::to_string(image_size) + "x" + std::to_string(image_size) +
             " (the model directory's image_size)", io::shape_str(x.shape));
  if (x.shape[2] < 8)
    fail(in, "images of at least 8x8 (the stem and max-pool divide by 4)", io::shape_str(x.shape));

  if (!m.note.empty()) std::fprintf(stderr, "kiln predict: %s\n", m.note.c_str());
  net.eval();
  NoGrad no_grad;

  const int64_t n = x.shape[0], s = x.shape[2], per_image = 3 * s * s;
  io::NamedArray y;
  y.name = "log_probs";
  y.dtype = io::DType::f32;
  y.shape = {n, classes};
  y.bytes.resize(static_cast<size_t>(n * classes) * sizeof(float));
  for (int64_t i = 0; i < n; i += batch) {
    int64_t b = std::min(batch, n - i);
    Tensor xb = Tensor::from_plain({b, 3, s, s}, x.f32() + i * per_image, "input");
    ops::log_softmax(net.forward(xb)).copy_to_plain(y.f32() + i * classes);
  }
  io::write_npy(a.get("--output"), y);
  std::fprintf(stderr, "kiln predict: %s (%s, %lld classes) on %lld images of %lldx%lld -> %s\n",
               source.c_str(), arch.c_str(), static_cast<long long>(classes),
               static_cast<long long>(n), static_cast<long long>(s), static_cast<long long>(s),
               a.get("--output").c_str());
  return 0;
}

// "21,335,972"
std::string with_commas(int64_t v) {
  std::string d = std::to_string(v), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return out;
}

int run_summary(const std::vector<std::string>& argv) {
  Args a("kiln summary",
         "Every layer of a ResNet with its output shape (for a 1x3xSxS input) and parameter "
         "count, and the totals, like Lightning's ModelSummary.");
  a.option("--arch", "NAME", "resnet18 | resnet34 | resnet50", "resnet34");
  a.option("--num-classes", "N", "classes of the fc head", "100");
  a.option("--image-size", "S", "input height and width", "32");
  if (!a.parse(argv)) return 0;
  int64_t classes = a.get_int("--num-classes"), size = a.get_int("--image-size");
  if (classes < 1) fail("--num-classes", "a positive count", std::to_string(classes));
  if (size < 8) fail("--image-size", "at least 8", std::to_string(size));
  models::ResNet net({a.get("--arch"), classes}, 0);
  auto rows = net.summary(size);
  size_t wname = 4, wtype = 4;
  for (const auto& r : rows) {
    wname = std::max(wname, r.name.size());
    wtype = std::max(wtype, r.type.size());
  }
  auto shape = [](const std::vector<int64_t>& s) {
    if (s.empty() || (s.size() > 1 && s[1] == 0)) return std::string("-");
    return io::shape_str(s);
  };
  std::printf("    | %-*s | %-*s | %10s | %s\n", static_cast<int>(wname), "Name",
              static_cast<int>(wtype), "Type", "Params", "Out sizes");
  std::printf("%s\n", std::string(wname + wtype + 40, '-').c_str());
  int64_t index = 0;
  for (const auto& r : rows)
    std::printf("%-3lld | %-*s | %-*s | %10s | %s\n", static_cast<long long>(index++),
                static_cast<int>(wname), r.name.c_str(), static_cast<int>(wtype), r.type.c_str(),
                with_commas(r.params).c_str(), shape(r.out_shape).c_str());
  std::printf("%s\n", std::string(wname + wtype + 40, '-').c_str());
  int64_t total = net.num_parameters();
  std::printf("%s Trainable params\n0 Non-trainable params\n%s Total params\n"
              "%.3f Total estimated model params size (MB)\n",
              with_commas(total).c_str(), with_commas(total).c_str(),
              static_cast<double>(total) * 4.0 / 1e6);
  return 0;
}

}  // namespace
}  // namespace kiln::cli

KILN_COMMAND("predict", "log_softmax(resnet(x)) for an NPY batch, from .pth/.safetensors weights",
             kiln::cli::run_predict);
KILN_COMMAND("summary", "print a ResNet's layers, output shapes and parameter counts",
             kiln::cli::run_summary);
