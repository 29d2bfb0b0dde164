// SIGTERM/SIGINT -> a flag read at step boundaries (see stop_signal.h).
#include "kiln/train/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace kiln::train {

namespace {
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  int previous = g_signal.exchange(sig);
  if (previous != 0 && sig == SIGINT) _exit(130);  // second Ctrl-C: the user means it
}
}  // namespace

void install_stop_handlers() {
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

void remove_stop_handlers() {
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
}

bool stop_requested() { return g_signal.load() != 0; }
int stop_signal() { return g_signal.load(); }
void request_stop_for_test(int sig) { g_signal.store(sig); }
void request_stop(int sig) { g_signal.store(sig); }

}  // namespace kiln::train
