// Module registration, traversal in PyTorch's order, and strict state-dict loading.
#include "kiln/layers/module.h"

#include <cstring>
#include <map>
#include <set>

#include "kiln/core/error.h"

namespace kiln::layers {

std::string StateDictMismatch::message() const {
  std::string msg;
  auto add = [&](const char* what, const std::vector<std::string>& items) {
    for (const auto& s : items) msg += std::string("\n  ") + what + s;
  };
  add("missing key ", missing);
  add("unexpected key ", unexpected);
  add("shape mismatch ", wrong_shape);
  return msg;
}

void Module::register_parameter(std::string name, Tensor& t) {
  t.set_requires_grad(true);
  params_.push_back({std::move(name), &t, nullptr, true});
}
void Module::register_buffer(std::string name, Tensor& t) {
  buffers_.push_back({std::move(name), &t, nullptr, false});
}
void Module::register_counter(std::string name, int64_t& c) {
  buffers_.push_back({std::move(name), nullptr, &c, false});
}
void Module::register_module(std::string name, Module& m) {
  children_.emplace_back(std::move(name), &m);
}

void Module::flatten(const std::string& prefix, std::vector<FlatEntry>& out) const {
  for (const auto& e : params_) out.push_back({prefix + e.name, &e});
  for (const auto& e : buffers_) out.push_back({prefix + e.name, &e});
  for (const auto& [name, child] : children_) child->flatten(prefix + name + ".", out);
}

NamedTensors Module::named_parameters() const {
  std::vector<FlatEntry> all;
  flatten("", all);
  NamedTensors out;
  for (const auto& f : all)
    if (f.entry->is_param) out.emplace_back(f.name, *f.entry->tensor);
  return out;
}

NamedTensors Module::named_buffers() const {
  std::vector<FlatEntry> all;
  flatten("", all);
  NamedTensors out;
  for (const auto& f : all)
    if (!f.entry->is_param && f.entry->tensor) out.emplace_back(f.name, *f.entry->tensor);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

io::StateDict Module::state_dict() const {
  std::vector<FlatEntry> all;
  flatten("", all);
  io::StateDict sd;
  for (const auto& f : all) {
    io::NamedArray arr;
    arr.name = f.name;
    if (f.entry->tensor) {
      const Tensor& t = *f.entry->tensor;
      arr.dtype = io::DType::f32;
      arr.shape = t.shape();
      arr.bytes.resize(static_cast<size_t>(t.numel()) * sizeof(float));
      t.copy_to_plain(reinterpret_cast<float*>(arr.bytes.data()));
    } else {
      arr.dtype = io::DType::i64;
      arr.shape = {};
      arr.bytes.resize(sizeof(int64_t));
      std::memcpy(arr.bytes.data(), f.entry->counter, sizeof(int64_t));
    }
    sd.push_back(std::move(arr));
  }
  return sd;
}

namespace {
std::vector<int64_t> entry_shape(const std::vector<int64_t>& s) { return s; }
}  // namespace

StateDictMismatch Module::check_state_dict(const io::StateDict& sd) const {
  std::vector<FlatEntry> all;
  flatten("", all);
  std::map<std::string, const io::NamedArray*> by_name;
  for (const auto& arr : sd) by_name[arr.name] = &arr;
  std::set<std::string> known;
  StateDictMismatch mm;
  for (const auto& f : all) {
    known.insert(f.name);
    std::vector<int64_t> expected =
        f.entry->tensor ? entry_shape(f.entry->tensor->shape()) : std::vector<int64_t>{};
    auto it = by_name.find(f.name);
    if (it == by_name.end()) {
      mm.missing.push_back(f.name + " (expected " + io::shape_str(expected) + ")");
      continue;
    }
    const io::NamedArray& arr = *it->second;
    if (arr.shape != expected) {
      mm.wrong_shape.push_back(f.name + ": expected " + io::shape_str(expected) + ", found " +
                               io::shape_str(arr.shape));
      mm.wrong_shape_keys.push_back(f.name);
    } else if (f.entry->tensor && arr.dtype != io::DType::f32) {
      mm.wrong_shape.push_back(f.name + ": expected float32, found " +
                               io::dtype_name(arr.dtype));
      mm.wrong_shape_keys.push_back(f.name);
    } else if (f.entry->counter && arr.dtype != io::DType::i64) {
      mm.wrong_shape.push_back(f.name + ": expected int64, found " + io::dtype_name(arr.dtype));
      mm.wrong_shape_keys.push_back(f.name);
    }
  }
  for (const auto& arr : sd)
    if (!known.count(arr.name)) mm.unexpected.push_back(arr.name);
  return mm;
}

void Module::load_state_dict(const io::StateDict& sd) {
  StateDictMismatch mm = check_state_dict(sd);
  if (!mm.empty())
    throw FormatError(
        "state dict does not fit this " + std::string(type_name()) + ":" + mm.message(),
        "check --arch and --num-classes against the weights file");
  load_state_dict_except(sd, {});
}

void Module::load_state_dict_except(const io::StateDict& sd,
                                    const std::vector<std::string>& skip) {
  std::vector<FlatEntry> all;
  flatten("", all);
  std::map<std::string, const io::NamedArray*> by_name;
  for (const auto& arr : sd) by_name[arr.name] = &arr;
  std::set<std::string> skipped(skip.begin(), skip.end());
  for (const auto& f : all) {
    if (skipped.count(f.name)) continue;
    auto it = by_name.find(f.name);
    if (it == by_name.end()) fail_format("state dict", "key " + f.name, "nothing");
    const io::NamedArray& arr = *it->second;
    if (f.entry->tensor) {
      Tensor& t = *f.entry->tensor;
      if (arr.shape != t.shape() || arr.dtype != io::DType::f32)
        fail("state dict " + f.name, "float32 " + io::shape_str(t.shape()),
             std::string(io::dtype_name(arr.dtype)) + " " + io::shape_str(arr.shape));
      t.copy_from_plain(arr.f32());
    } else {
      if (arr.dtype != io::DType::i64 || arr.bytes.size() != sizeof(int64_t))
        fail("state dict " + f.name, "an int64 scalar", io::dtype_name(arr.dtype));
      std::memcpy(f.entry->counter, arr.bytes.data(), sizeof(int64_t));
    }
  }
}

}  // namespace kiln::layers
