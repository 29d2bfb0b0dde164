// A kiln::serve::Server in a process of its own, with the tests' deterministic predictor instead
// of a model, so the hostile-client tests can measure the server's memory (its RSS alone) and
// kill it. usage: serve_stub [--budget-mb MB] [--max-connections N] [--header-timeout-ms MS]
// [--request-timeout-ms MS] [--max-batch B] [--batch-delay-ms MS]; prints "port N" when
// listening, serves until SIGTERM.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "helpers.h"

int main(int argc, char** argv) {
  kiln::serve::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.access_log = nullptr;
  int delay_ms = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (k == "--budget-mb") o.memory_budget_bytes = static_cast<size_t>(v) << 20;
    else if (k == "--max-connections") o.max_connections = static_cast<size_t>(v);
    else if (k == "--header-timeout-ms") o.header_timeout_ms = static_cast<int>(v);
    else if (k == "--request-timeout-ms") o.request_timeout_ms = static_cast<int>(v);
    else if (k == "--max-batch") o.max_batch = v;
    else if (k == "--batch-delay-ms") delay_ms = static_cast<int>(v);
    else {
      std::fprintf(stderr, "serve_stub: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const sigset_t signals = kiln::serve::block_stop_signals();
  kiln::serve::Server server(o);
  std::printf("port %d\n", server.bind());
  std::fflush(stdout);
  server.start(kiln::test::test_loader(std::chrono::milliseconds(delay_ms)));
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server.stop();
  });
  server.run();
  waiter.join();
  return 0;
}
