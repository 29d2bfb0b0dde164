// SIGTERM/SIGINT handling for training: the first signal only sets a flag that the training loop
// reads at each step boundary (then it checkpoints and exits); a second SIGINT ends the process
// at once. Handlers are async-signal-safe (they touch a lock-free atomic and nothing else).
#pragma once

namespace kiln::train {

void install_stop_handlers();
void remove_stop_handlers();  // restores the default actions
bool stop_requested();
int stop_signal();            // the signal received (0 if none)
void request_stop_for_test(int sig);
// Acts on a signal another process received (a data-parallel job stops every rank at the same step).
void request_stop(int sig);

}  // namespace kiln::train
