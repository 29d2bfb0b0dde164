// Progress, metric lines, metrics.jsonl and TensorBoard scalars (see metrics_log.h).
#include "kiln/train/metrics_log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kiln/core/error.h"
#include "kiln/train/tensorboard.h"

namespace kiln::train {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  return buf;
}

}  // namespace

std::string epoch_metric_line(const EpochMetrics& m) {
  std::string s = "epoch=" + std::to_string(m.epoch) + " train_loss=" + fmt("%.4f", m.train_loss) +
                  " train_acc=" + fmt("%.4f", m.train_acc);
  if (m.val_loss) s += " val_loss=" + fmt("%.4f", *m.val_loss) + " val_acc=" + fmt("%.4f", *m.val_acc);
  return s;
}

std::string test_metric_line(double test_loss, double test_acc) {
  return "test_loss=" + fmt("%.4f", test_loss) + " test_acc=" + fmt("%.4f", test_acc);
}

MetricsLog::MetricsLog(const std::filesystem::path& log_dir, bool force_plain) {
  tty_ = !force_plain && isatty(STDERR_FILENO);
  if (!log_dir.empty()) {
    std::filesystem::create_directories(log_dir);
    jsonl_path_ = log_dir / "metrics.jsonl";
    tb_ = std::make_unique<TensorBoardWriter>(log_dir);
  }
}

MetricsLog::~MetricsLog() { clear_bar(); }

void MetricsLog::clear_bar() {
  if (bar_drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    bar_drawn_ = false;
  }
}

void MetricsLog::note(const std::string& line) {
  clear_bar();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void MetricsLog::jsonl(const std::string& json_object) {
  if (jsonl_path_.empty()) return;
  std::FILE* f = std::fopen(jsonl_path_.c_str(), "ab");
  if (!f) fail("metrics log " + jsonl_path_.string(), "a writable file", "an error opening it");
  std::fprintf(f, "%s\n", json_object.c_str());
  std::fclose(f);
}

void MetricsLog::start_epoch(int64_t epoch, int64_t epochs, int64_t steps_in_epoch, int64_t first_step) {
  epoch_ = epoch;
  epochs_ = epochs;
  steps_ = steps_in_epoch;
  first_step_ = first_step;
  images_ = 0;
  epoch_start_ = last_print_ = std::chrono::steady_clock::now();
}

void MetricsLog::step(int64_t step_in_epoch, int64_t images, double running_loss, double running_acc,
                      double loss, double lr, int64_t global_step) {
  images_ += images;
  if (tb_) {
    tb_->scalar("train_loss_step", static_cast<float>(loss), global_step);
    tb_->scalar("lr", static_cast<float>(lr), global_step);
  }
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - epoch_start_).count();
  double since_print = std::chrono::duration<double>(now - last_print_).count();
  int64_t done = step_in_epoch - first_step_;  // steps run by this process in this epoch
  double ips = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0;
  double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(steps_ - step_in_epoch) : NAN;
  if (tty_) {
    if (since_print < 0.2 && step_in_epoch != steps_) return;
    last_print_ = now;
    const int width = 24;
    int filled = steps_ > 0 ? static_cast<int>(width * step_in_epoch / steps_) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld  %.0f img/s  loss %.4f  acc %.4f  eta %s",
                 static_cast<long long>(epoch_), static_cast<long long>(epochs_), bar.c_str(),
                 static_cast<long long>(step_in_epoch), static_cast<long long>(steps_), ips,
                 running_loss, running_acc, duration(eta).c_str());
    std::fflush(stderr);
    bar_drawn_ = true;
    return;
  }
  int64_t every = std::max<int64_t>(1, steps_ / 10);
  if (step_in_epoch % every != 0 && step_in_epoch != steps_ && since_print < 30) return;
  last_print_ = now;
  std::printf("epoch %lld/%lld step %lld/%lld  %.0f img/s  loss %.4f  acc %.4f  eta %s\n",
              static_cast<long long>(epoch_), static_cast<long long>(epochs_),
              static_cast<long long>(step_in_epoch), static_cast<long long>(steps_), ips, running_loss,
              running_acc, duration(eta).c_str());
  std::fflush(stdout);
}

void MetricsLog::end_epoch(const EpochMetrics& m, int64_t global_step) {
  note(epoch_metric_line(m));
  nlohmann::json j;
  j["epoch"] = m.epoch;
  j["step"] = global_step;
  j["train_loss"] = m.train_loss;
  j["train_acc"] = m.train_acc;
  if (m.val_loss) {
    j["val_loss"] = *m.val_loss;
    j["val_acc"] = *m.val_acc;
  }
  j["lr"] = m.lr;
  j["seconds"] = m.seconds;
  j["images_per_s"] = m.images_per_s;
  jsonl(j.dump());
  if (tb_) {
    tb_->scalar("train_loss", static_cast<float>(m.train_loss), m.epoch);
    tb_->scalar("train_acc", static_cast<float>(m.train_acc), m.epoch);
    if (m.val_loss) {
      tb_->scalar("val_loss", static_cast<float>(*m.val_loss), m.epoch);
      tb_->scalar("val_acc", static_cast<float>(*m.val_acc), m.epoch);
    }
    tb_->flush();
  }
}

void MetricsLog::test(double test_loss, double test_acc, int64_t global_step) {
  note(test_metric_line(test_loss, test_acc));
  nlohmann::json j;
  j["step"] = global_step;
  j["test_loss"] = test_loss;
  j["test_acc"] = test_acc;
  jsonl(j.dump());
  if (tb_) {
    tb_->scalar("test_loss", static_cast<float>(test_loss), global_step);
    tb_->scalar("test_acc", static_cast<float>(test_acc), global_step);
    tb_->flush();
  }
}

}  // namespace kiln::train
