// The `kiln` program is a table of subcommands. Each tools/cmd_*.cpp registers its own
// entries with KILN_COMMAND, so adding a command touches one file (plus tools/meson.build).
#pragma once

#include <string>
#include <vector>

namespace kiln::cli {

// argv holds the arguments after the subcommand name. Returns the process exit code.
using CommandFn = int (*)(const std::vector<std::string>& argv);

struct Command {
  const char* name;     // "train", "s3", "sagemaker", ...
  const char* summary;  // one line for `kiln --help`
  CommandFn run;
};

bool register_command(const Command& cmd);
const std::vector<Command>& commands();

}  // namespace kiln::cli

#define KILN_CONCAT_(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_(a, b)
#define KILN_COMMAND(name, summary, fn) \
  static const bool KILN_CONCAT(kiln_command_registered_, __LINE__) = \
      ::kiln::cli::register_command({name, summary, fn})
