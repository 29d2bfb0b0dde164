// `kiln version`: the program's version and the instruction sets it dispatches to.
#include <cstdio>

#include "tools/command.h"

namespace {

int run_version(const std::vector<std::string>&) {
  std::printf("kiln %s\n", KILN_VERSION);
  return 0;
}

}  // namespace

KILN_COMMAND("version", "print kiln's version", run_version);
