// Weight-file commands: `kiln import` (.pth -> .safetensors), `kiln export` (.safetensors ->
// .pth, loadable by torch.load(weights_only=True)) and `kiln inspect` (names, dtypes, shapes).
// Input formats are recognised by content; outputs are written atomically.
#include <cstdio>
#include <filesystem>

#include "kiln/core/error.h"
#include "kiln/io/weights.h"
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

int run_export(const std::vector<std::string>& argv) {
  return convert(argv, "export",
                 "Write weights as a torch.save-compatible .pth (torch.load(path, weights_only=True)).\n"
                 "example: kiln export model.safetensors --output model.pth",
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
KILN_COMMAND("export", "write weights as a torch.save .pth", run_export);
KILN_COMMAND("inspect", "list the tensors of a .pth/.safetensors/.npy file", run_inspect);
