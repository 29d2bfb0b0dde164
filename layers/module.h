// The Module base of kiln's layers, named as torchvision names them: parameters and buffers
// are registered in order, children too, so named_parameters()/state_dict() walk them in
// exactly PyTorch's order (own parameters, own buffers, then each child) with dotted names
// ("layer1.0.bn1.running_var"). state_dict()/load_state_dict() use plain (C-order) layout.
// Modules are neither copyable nor movable: registered entries point at their members.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kiln/engine/tensor.h"
#include "kiln/io/array.h"

namespace kiln::layers {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What a strict load found wrong; empty() means the state dict fits exactly.
struct StateDictMismatch {
  std::vector<std::string> missing;           // "layer3.2.bn2.weight (expected (256))"
  std::vector<std::string> unexpected;        // keys in the file the model does not have
  std::vector<std::string> wrong_shape;       // "fc.weight: expected (100, 512), found (1000, 512)"
  std::vector<std::string> wrong_shape_keys;  // "fc.weight"
  bool empty() const { return missing.empty() && unexpected.empty() && wrong_shape.empty(); }
  std::string message() const;                // every problem, one per line
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual const char* type_name() const = 0;  // "Conv2d", "BatchNorm2d", "ResNet", ...

  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;  // float buffers (running stats); int64 counters excluded
  // Direct children with their names, in registration order.
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }
  int64_t num_parameters() const;      // elements, recursively

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  io::StateDict state_dict() const;  // parameters, buffers and int64 counters, in torch order
  StateDictMismatch check_state_dict(const io::StateDict& sd) const;
  // Strict: throws kiln::FormatError naming every missing/unexpected key and shape mismatch.
  void load_state_dict(const io::StateDict& sd);
  // Loads every entry whose name is not in `skip` (shapes of loaded entries must match).
  void load_state_dict_except(const io::StateDict& sd, const std::vector<std::string>& skip);

 protected:
  void register_parameter(std::string name, Tensor& t);  // sets requires_grad
  void register_buffer(std::string name, Tensor& t);
  void register_counter(std::string name, int64_t& c);   // saved as an int64 scalar
  void register_module(std::string name, Module& m);

 private:
  struct Entry {
    std::string name;
    Tensor* tensor = nullptr;
    int64_t* counter = nullptr;
    bool is_param = false;
  };
  struct FlatEntry {
    std::string name;
    const Entry* entry;
  };
  void flatten(const std::string& prefix, std::vector<FlatEntry>& out) const;

  std::vector<Entry> params_, buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace kiln::layers
