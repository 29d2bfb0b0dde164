// What `kiln train` shows and records while it runs:
//  - a progress bar on stderr when stderr is a terminal (epoch, step/total, img/s, running loss
//    and accuracy, ETA); otherwise a plain progress line every ~10% of an epoch or 30 s;
//  - one metric line per epoch on stdout for SageMaker's MetricDefinitions regexes, e.g.
//      epoch=1 train_loss=4.1234 train_acc=0.0812 val_loss=3.9012 val_acc=0.1100
//    and at the end `test_loss=3.8765 test_acc=0.1234` (progress lines never contain `name=`);
//  - with a log dir: metrics.jsonl (one JSON object per line) and TensorBoard event files.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace kiln::train {

class TensorBoardWriter;

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0;
  std::optional<double> val_loss, val_acc;
  double lr = 0;
  double seconds = 0;       // wall time of the epoch's training steps (this process)
  double images_per_s = 0;
};

// The scrapeable lines, exposed for tests and docs.
std::string epoch_metric_line(const EpochMetrics& m);
std::string test_metric_line(double test_loss, double test_acc);

class MetricsLog {
 public:
  // log_dir empty: no files. force_plain: never draw a bar (tests).
  MetricsLog(const std::filesystem::path& log_dir, bool force_plain = false);
  ~MetricsLog();

  void start_epoch(int64_t epoch, int64_t epochs, int64_t steps_in_epoch, int64_t first_step);
  // After each training step: running (epoch-so-far) loss/acc, the step within the epoch (1-based).
  void step(int64_t step_in_epoch, int64_t images, double running_loss, double running_acc,
            double loss, double lr, int64_t global_step);
  void end_epoch(const EpochMetrics& m, int64_t global_step);
  void test(double test_loss, double test_acc, int64_t global_step);
  void note(const std::string& line);  // a plain line on stdout (clears the bar first)

 private:
  void clear_bar();
  void jsonl(const std::string& json_object);
  bool tty_ = false;
  bool bar_drawn_ = false;
  std::filesystem::path jsonl_path_;
  std::unique_ptr<TensorBoardWriter> tb_;
  int64_t epoch_ = 0, epochs_ = 0, steps_ = 0, first_step_ = 0, images_ = 0;
  std::chrono::steady_clock::time_point epoch_start_, last_print_;
};

}  // namespace kiln::train
