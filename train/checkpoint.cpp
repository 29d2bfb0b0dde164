// Training checkpoints (see checkpoint.h).
#include "kiln/train/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "kiln/core/error.h"
#include "kiln/io/safetensors.h"

namespace kiln::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModelPrefix = "model.";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kSettingPrefix = "setting.";

std::string hex_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%a", v);
  return buf;
}

double parse_hex_double(const std::string& s, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') fail(what, "a number", "'" + s + "'");
  return v;
}

int64_t parse_i64(const std::string& s, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) fail(what, "an integer", "'" + s.substr(0, 40) + "'");
  return v;
}

// checkpoint-0000000123.safetensors -> 123; -1 when the name does not match.
int64_t step_of(const fs::path& p) {
  std::string name = p.filename().string();
  const std::string pre = "checkpoint-", post = ".safetensors";
  if (name.size() <= pre.size() + post.size() || name.rfind(pre, 0) != 0 ||
      name.substr(name.size() - post.size()) != post)
    return -1;
  std::string digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
  if (digits.size() > 18) return -1;
  for (char c : digits)
    if (c < '0' || c > '9') return -1;
  return std::stoll(digits);
}

// <parent>/.<name>.kiln-staging: next to the checkpoint folder (same file system, so a rename
// moves a finished file in), but outside it (so nothing there is ever synced to S3).
fs::path staging_dir(const fs::path& dir) {
  fs::path d = dir.lexically_normal();
  if (d.filename().empty()) d = d.parent_path();
  return d.parent_path() / ("." + d.filename().string() + ".kiln-staging");
}

// AtomicFile's temporary files: <target>.tmp.<pid>.<random>
bool is_temp_name(const std::string& name) { return name.find(".tmp.") != std::string::npos; }

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int64_t s = step_of(e.path());
    if (s >= 0 && e.is_regular_file()) out.emplace_back(s, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

fs::path write_checkpoint(const fs::path& dir, const Checkpoint& ckpt, int keep) {
  fs::create_directories(dir);
  const TrainState& s = ckpt.state;
  io::Metadata meta;
  meta["format"] = "kiln-checkpoint";
  meta["version"] = "1";
  meta["epoch"] = std::to_string(s.epoch);
  meta["position"] = std::to_string(s.position);
  meta["global_step"] = std::to_string(s.global_step);
  meta["loader_seed"] = std::to_string(s.loader_seed);
  meta["best_val_loss"] = hex_double(s.best_val_loss);
  meta["bad_epochs"] = std::to_string(s.bad_epochs);
  meta["epoch_loss_sum"] = hex_double(s.epoch_loss_sum);
  meta["epoch_correct"] = std::to_string(s.epoch_correct);
  meta["epoch_count"] = std::to_string(s.epoch_count);
  for (const auto& [k, v] : s.settings) meta[kSettingPrefix + k] = v;

  io::StateDict all;
  all.reserve(ckpt.model.size() + ckpt.optimizer.size());
  for (const auto& a : ckpt.model) {
    all.push_back(a);
    all.back().name = kModelPrefix + a.name;
  }
  for (const auto& a : ckpt.optimizer) {
    all.push_back(a);
    all.back().name = kOptimizerPrefix + a.name;
  }
  char name[64];
  std::snprintf(name, sizeof(name), "checkpoint-%010" PRId64 ".safetensors", s.global_step);
  fs::path path = dir / name;
  // Written in the staging folder, then renamed in: the checkpoint folder only ever holds whole files.
  std::error_code ec;
  const fs::path stage = staging_dir(dir);
  fs::create_directories(stage, ec);
  bool staged = !ec;
  if (staged) {
    io::write_safetensors(stage / name, all, meta);
    fs::rename(stage / name, path, ec);
    if (ec) {  // another file system (EXDEV): write in place, through a temporary file there
      fs::remove(stage / name, ec);
      staged = false;
    } else {
      fsync_dir(dir);
    }
  }
  if (!staged) io::write_safetensors(path, all, meta);

  auto existing = list_checkpoints(dir);
  if (keep > 0 && static_cast<int64_t>(existing.size()) > keep) {
    for (size_t i = 0; i + keep < existing.size(); ++i) {
      std::error_code ec;
      if (existing[i].second != path) fs::remove(existing[i].second, ec);
    }
  }
  return path;
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

Checkpoint read_checkpoint(const fs::path& path) {
  io::Metadata meta;
  io::StateDict all = io::read_safetensors(path, &meta);
  const std::string what = path.string();
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end())
      fail(what + ": metadata \"" + key + "\"", "present (a kiln checkpoint)", "missing",
           "checkpoints are written by kiln train --checkpoint-dir");
    return it->second;
  };
  if (get("format") != "kiln-checkpoint")
    fail(what + ": metadata \"format\"", "kiln-checkpoint", "'" + get("format") + "'");
  if (get("version") != "1") fail(what + ": metadata \"version\"", "1", "'" + get("version") + "'");
  Checkpoint c;
  TrainState& s = c.state;
  s.epoch = parse_i64(get("epoch"), what + ": epoch");
  s.position = parse_i64(get("position"), what + ": position");
  s.global_step = parse_i64(get("global_step"), what + ": global_step");
  s.loader_seed = static_cast<uint64_t>(parse_i64(get("loader_seed"), what + ": loader_seed"));
  s.best_val_loss = parse_hex_double(get("best_val_loss"), what + ": best_val_loss");
  s.bad_epochs = parse_i64(get("bad_epochs"), what + ": bad_epochs");
  s.epoch_loss_sum = parse_hex_double(get("epoch_loss_sum"), what + ": epoch_loss_sum");
  s.epoch_correct = parse_i64(get("epoch_correct"), what + ": epoch_correct");
  s.epoch_count = parse_i64(get("epoch_count"), what + ": epoch_count");
  const std::string sp = kSettingPrefix;
  for (const auto& [k, v] : meta)
    if (k.rfind(sp, 0) == 0) s.settings[k.substr(sp.size())] = v;
  for (auto& a : all) {
    if (a.name.rfind(kModelPrefix, 0) == 0) {
      a.name = a.name.substr(std::string(kModelPrefix).size());
      c.model.push_back(std::move(a));
    } else if (a.name.rfind(kOptimizerPrefix, 0) == 0) {
      a.name = a.name.substr(std::string(kOptimizerPrefix).size());
      c.optimizer.push_back(std::move(a));
    } else {
      fail(what + ": tensor \"" + a.name + "\"", "a name starting with model. or optimizer.", "another name");
    }
  }
  return c;
}

std::vector<fs::path> clean_checkpoint_dir(const fs::path& dir) {
  std::vector<fs::path> removed;
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind("checkpoint-", 0) == 0 && is_temp_name(name) && fs::remove(e.path(), ec)) removed.push_back(e.path());
    }
  const fs::path stage = staging_dir(dir);
  if (fs::is_directory(stage, ec))
    for (const auto& e : fs::directory_iterator(stage, ec))
      if (e.path().filename().string().rfind("checkpoint-", 0) == 0 && fs::remove(e.path(), ec)) removed.push_back(e.path());
  return removed;
}

std::map<std::string, std::string> hyperparameter_settings(const TrainOptions& opt) {
  std::map<std::string, std::string> s = {{"lr", exact(opt.lr)},
                                          {"momentum", exact(opt.momentum)},
                                          {"weight-decay", exact(opt.weight_decay)},
                                          {"lr-schedule", opt.lr_schedule},
                                          {"batch-size", std::to_string(opt.batch_size)}};
  if (opt.lr_schedule.rfind("onecycle", 0) == 0) {  // its shape depends on the run's length
    s["max-lr"] = exact(opt.max_lr);
    s["epochs"] = std::to_string(opt.epochs);
    s["max-steps"] = std::to_string(opt.max_steps);
  }
  return s;
}

void check_resume_settings(const fs::path& from, const std::map<std::string, std::string>& saved,
                           const std::map<std::string, std::string>& current, bool override_hyperparameters,
                           std::vector<std::string>& notes) {
  TrainOptions none;
  none.lr_schedule = "onecycle";  // every key hyperparameter_settings() can give
  const std::map<std::string, std::string> hyper = hyperparameter_settings(none);
  std::string fixed, changed;
  for (const auto& [k, v] : current) {
    auto it = saved.find(k);
    if (it == saved.end() || it->second == v) continue;
    std::string d = k + " " + it->second + " (checkpoint) vs " + v + " (this run)";
    std::string& list = hyper.count(k) ? changed : fixed;
    list += (list.empty() ? "" : "; ") + d;
  }
  if (!fixed.empty())
    throw Error(from.string() + ": saved with other settings: " + fixed,
                "resume with the same settings, or use another --checkpoint-dir");
  if (changed.empty()) return;
  if (!override_hyperparameters)
    throw Error(from.string() + ": its optimizer state and schedule were saved with other hyperparameters: " + changed,
                "resume with the checkpoint's values, add --resume-override to continue from it with this run's "
                "values, or use another --checkpoint-dir to start afresh");
  notes.push_back("resume: --resume-override: continuing " + from.filename().string() + " with " + changed);
}

std::optional<ResumePoint> load_resume_point(const fs::path& dir, const std::map<std::string, std::string>& current,
                                             const std::function<void(const Checkpoint&)>& fits,
                                             std::vector<std::string>& notes) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  std::string reasons;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const fs::path& path = it->second;
    try {
      Checkpoint c = read_checkpoint(path);
      for (const char* k : {"arch", "num-classes"}) {  // a checkpoint of another model
        auto saved = c.state.settings.find(k);
        auto cur = current.find(k);
        if (saved != c.state.settings.end() && cur != current.end() && saved->second != cur->second)
          fail(path.string() + ": setting " + k, cur->second + " (this run's)", saved->second);
      }
      if (fits) fits(c);
      if (it != all.rbegin())
        notes.push_back("resume: falling back to " + path.filename().string() + ", the newest checkpoint that reads");
      return ResumePoint{path, std::move(c)};
    } catch (const kiln::Error& e) {
      notes.push_back("resume: passing over " + path.string() + ": " + e.what());
      reasons += std::string(reasons.empty() ? "" : "; ") + path.filename().string() + ": " + e.what();
    }
  }
  throw Error("resume: none of the " + std::to_string(all.size()) + " checkpoints in " + dir.string() +
                  " is usable (" + reasons + ")",
              "move them away or use another --checkpoint-dir to start afresh");
}

}  // namespace kiln::train
