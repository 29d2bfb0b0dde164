// kiln: the command-line program. Subcommands register themselves (tools/command.h); this file
// only dispatches and turns exceptions into one clear message and a non-zero exit code.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/engine/cpu.h"
#include "tools/command.h"

namespace kiln::cli {

static std::vector<Command>& table() {
  static std::vector<Command> t;
  return t;
}

bool register_command(const Command& cmd) {
  table().push_back(cmd);
  return true;
}

const std::vector<Command>& commands() { return table(); }

}  // namespace kiln::cli

static void print_help() {
  auto cmds = kiln::cli::commands();
  std::sort(cmds.begin(), cmds.end(),
            [](const auto& a, const auto& b) { return std::string(a.name) < b.name; });
  std::printf("usage: kiln <command> [options]\n\nkiln trains and serves ResNets on CPUs.\n\ncommands:\n");
  for (const auto& c : cmds) std::printf("  %-12s %s\n", c.name, c.summary);
  std::printf("\n`kiln <command> --help` shows a command's options.\n");
}

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  std::string name = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  kiln::set_num_threads(0);  // one per physical core we may run on (or OMP_NUM_THREADS); --threads overrides
  for (const auto& c : kiln::cli::commands()) {
    if (name != c.name) continue;
    try {
      return c.run(rest);
    } catch (const kiln::Error& e) {
      std::fprintf(stderr, "kiln %s: error: %s\n", c.name, e.full_message().c_str());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kiln %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "kiln: unknown command '%s'\n\n", name.c_str());
  print_help();
  return 2;
}
