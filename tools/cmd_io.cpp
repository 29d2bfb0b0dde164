// Weight-file commands: `kiln import` (.pth -> .safetensors), `kiln export` (.safetensors ->
// .pth, loadable by torch.load(weights_only=True); or any of them, or a model directory, -> an
// ONNX model, models/onnx.h) and `kiln inspect` (names, dtypes, shapes).
// Input formats are recognised by content; outputs are written atomically.
#include <cstdio>
#include <filesystem>

#include "kiln/core/error.h"
#include "kiln/io/weights.h"
#include "kiln/models/model_dir.h"
#include "kiln/models/onnx.h"
#include "tools/args.h"
#include "tools/command.h"

namespace {

namespace fs = std::filesystem;
using kiln::io::StateDict;

int64_t total_values(const StateDict& sd) {
  int64_t n = 0;
  for (const auto& a : sd) n += a.numel();
  return n;
}

int convert(const std::vector<std::string>& argv, const char* name, const char* description,
            const char* default_ext) {
  kiln::cli::Args a(std::string("kiln ") + name, description);
  a.positional("INPUT", "weights file (.pth, .safetensors or .npy; recognised by content)");
  a.option("--output", "FILE", std::string("output file; its extension picks the format (default: INPUT with ") +
                                   default_ext + ")");
  if (!a.parse(argv)) return 0;
  fs::path in = a.positionals().at(0);
  fs::path out = a.has("--output") ? fs::path(a.get("--output")) : fs::path(in).replace_extension(default_ext);
  if (!fs::is_regular_file(in))
    throw kiln::Error("cannot read " + in.string() + ": no such file", "check the INPUT path");
  if (fs::exists(out) && fs::equivalent(in, out))
    throw kiln::Error("--output " + out.string() + " is the input file", "choose another output name");
  auto fmt = kiln::io::weights_format_from_extension(out);  // fail before reading a large input
  StateDict sd = kiln::io::read_weights(in);
  kiln::io::write_weights(out, sd);
  std::printf("wrote %s (%s): %zu tensors, %lld values\n", out.string().c_str(),
              kiln::io::weights_format_name(fmt), sd.size(), static_cast<long long>(total_values(sd)));
  return 0;
}

int run_import(const std::vector<std::string>& argv) {
  return convert(argv, "import",
                 "Convert PyTorch weights (a torch.save .pth) to another format, safetensors by default.\n"
                 "example: kiln import resnet34.pth --output resnet34.safetensors",
                 ".safetensors");
}

// `kiln export SRC --output model.onnx`: SRC is a weights file or a model directory; the arch
// and classes come from config.json, else from the weights' keys and fc, else from the flags.
int export_onnx(const kiln::cli::Args& a, const fs::path& in, const fs::path& out) {
  fs::path dir = out.parent_path();
  if (!dir.empty() && !fs::is_directory(dir))
    throw kiln::Error("--output " + out.string() + ": directory " + dir.string() + " does not exist",
                      "create it first (kiln export does not create directories)");
  kiln::models::LoadResNetOptions lo;
  if (a.has("--arch")) lo.arch(a.get("--arch"));
  if (a.has("--num-classes")) lo.num_classes(a.get_int("--num-classes"));
  kiln::models::LoadedResNet m;
  try {
    m = kiln::models::load_resnet(in, lo);
  } catch (const kiln::FormatError& e) {
    throw kiln::Error(e.what(), "pass --arch resnet18|resnet34|resnet50 and --num-classes N to match the weights");
  }
  if (a.has("--image-size")) m.config.image_size = a.get_int("--image-size");
  kiln::models::OnnxExportOptions o;
  o.fold_bn = a.has("--fold-bn");
  o.fixed_size = a.has("--fixed-size");
  o.producer_version = KILN_VERSION;
  kiln::models::export_onnx(out, *m.net, m.config, o);
  std::printf("wrote %s (ONNX opset %lld): %s, %lld classes, batch norm %s\n", out.string().c_str(),
              static_cast<long long>(kiln::io::kOnnxOpset), m.config.arch.c_str(),
              static_cast<long long>(m.config.num_classes), o.fold_bn ? "folded" : "as nodes");
  return 0;
}

int run_export(const std::vector<std::string>& argv) {
  kiln::cli::Args a("kiln export",
                    "Write weights as a torch.save-compatible .pth (torch.load(path, weights_only=True)),\n"
                    "or a whole model as ONNX (eval mode, dynamic batch) when --output ends in .onnx.\n"
                    "example: kiln export model.safetensors --output model.pth\n"
                    "example: kiln export /tmp/model --output model.onnx");
  a.positional("INPUT", "weights file (.pth, .safetensors or .npy; recognised by content); for .onnx also a model directory");
  a.option("--output", "FILE", "output file; its extension picks the format (default: INPUT with .pth)");
  a.option("--arch", "NAME", ".onnx: resnet18 | resnet34 | resnet50 (default: config.json's, else told by the weights' keys)");
  a.option("--num-classes", "N", ".onnx: classes (default: config.json's, else the weights' fc)");
  a.option("--image-size", "S", ".onnx: the image size in the metadata (default: config.json's, else 32)");
  a.flag("--fold-bn", ".onnx: fold batch norm into the convolutions (default: BatchNormalization nodes)");
  a.flag("--fixed-size", ".onnx: fix H and W to the image size (default: symbolic)");
  if (!a.parse(argv)) return 0;
  fs::path in = a.positionals().at(0);
  if (a.has("--output") && fs::path(a.get("--output")).extension() == ".onnx")
    return export_onnx(a, in, a.get("--output"));
  for (const char* onnx_only : {"--arch", "--num-classes", "--image-size", "--fold-bn", "--fixed-size"})
    if (a.has(onnx_only))
      throw kiln::Error(std::string(onnx_only) + " applies to ONNX output only", "use --output FILE.onnx");
  return convert(argv, "export",
                 "Write weights as a torch.save-compatible .pth (torch.load(path, weights_only=True)).",
                 ".pth");
}

int run_inspect(const std::vector<std::string>& argv) {
  kiln::cli::Args a("kiln inspect", "List the tensors of a .pth, .safetensors or .npy file.\n"
                                    "example: kiln inspect resnet34.pth");
  a.positional("FILE", "weights file");
  if (!a.parse(argv)) return 0;
  fs::path in = a.positionals().at(0);
  auto fmt = kiln::io::detect_weights_format(in);
  StateDict sd = kiln::io::read_weights(in);
  size_t width = 4;
  for (const auto& t : sd) width = std::max(width, t.name.size());
  int64_t bytes = 0;
  for (const auto& t : sd) {
    std::printf("%-*s  %-8s  %s\n", static_cast<int>(width), t.name.c_str(), kiln::io::dtype_name(t.dtype),
                kiln::io::shape_str(t.shape).c_str());
    bytes += static_cast<int64_t>(t.bytes.size());
  }
  std::printf("%s: %s, %zu tensors, %lld values, %lld bytes\n", in.string().c_str(),
              kiln::io::weights_format_name(fmt), sd.size(), static_cast<long long>(total_values(sd)),
              static_cast<long long>(bytes));
  return 0;
}

}  // namespace

KILN_COMMAND("import", "convert a PyTorch .pth to .safetensors", run_import);
KILN_COMMAND("export", "write weights as a torch.save .pth, or a model as ONNX", run_export);
KILN_COMMAND("inspect", "list the tensors of a .pth/.safetensors/.npy file", run_inspect);
