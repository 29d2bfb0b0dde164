// SGD over three arenas (parameters, gradients, momentum) with identical layout: the step is
// one pass of kiln's own sgd_update kernel over the whole arena (see engine/sgd.h).
#include "engine/sgd.h"

#include <cstring>
#include <map>

#include "core/error.h"
#include "engine/kernels.h"
#include "engine/tensor_impl.h"

namespace kiln {

struct Sgd::Arena {
  std::shared_ptr<Storage> params, grads, momentum;
  std::vector<int64_t> offsets;  // in floats, 64-byte aligned
  int64_t total = 0;             // floats
  bool momentum_valid = false;   // false until the first step (PyTorch: buf = g then)
};

namespace {

// A tensor over an arena slice, in layout md.
Tensor slice(const std::shared_ptr<Storage>& storage, int64_t offset, const TensorImpl& like,
             std::string name) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = like.shape;
  impl->name = std::move(name);
  impl->md = like.md;
  impl->storage = storage;
  impl->data = static_cast<float*>(storage->ptr) + offset;
  impl->arena_slice = true;
  impl->layout_locked = true;
  return Tensor(std::move(impl));
}

}  // namespace

Sgd::Sgd(NamedTensors params, SgdConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  for (auto& [name, p] : params_) KILN_ASSERT(p.defined(), "undefined parameter " + name);
}

Sgd::~Sgd() = default;

void Sgd::build_arena() {
  auto a = std::make_unique<Arena>();
  for (auto& [name, p] : params_) {
    a->offsets.push_back(a->total);
    a->total += (p.impl()->storage_floats() + 15) / 16 * 16;
  }
  size_t bytes = static_cast<size_t>(a->total) * sizeof(float);
  a->params = alloc_storage_zeroed(bytes);
  a->grads = alloc_storage_zeroed(bytes);
  a->momentum = alloc_storage_zeroed(bytes);
  for (auto& s : {a->params, a->grads, a->momentum}) s->pooled = false;
  for (size_t i = 0; i < params_.size(); ++i) {
    TensorImpl* p = params_[i].second.impl();
    int64_t off = a->offsets[i];
    float* pdata = static_cast<float*>(a->params->ptr) + off;
    std::memcpy(pdata, p->data, p->bytes());
    p->storage = a->params;
    p->data = pdata;
    p->arena_slice = true;
    p->layout_locked = true;
    Tensor g = slice(a->grads, off, *p, params_[i].first + ".grad");
    if (p->grad.defined()) {
      KILN_ASSERT(p->grad.impl()->md == p->md, "gradient layout differs from " + p->name);
      std::memcpy(g.impl()->data, p->grad.impl()->data, p->bytes());
    }
    p->grad = g;
    p->grad_zero = false;
  }
  arena_ = std::move(a);
  if (!pending_momentum_.empty()) {
    io::StateDict pending = std::move(pending_momentum_);
    pending_momentum_.clear();
    load_state_dict(pending);
  }
}

void Sgd::step() {
  if (!arena_) build_arena();
  Arena& a = *arena_;
  kernels::table().sgd_update(static_cast<float*>(a.params->ptr),
                              static_cast<const float*>(a.grads->ptr),
                              static_cast<float*>(a.momentum->ptr), a.total,
                              static_cast<float>(cfg_.lr), static_cast<float>(cfg_.momentum),
                              static_cast<float>(cfg_.weight_decay), !a.momentum_valid);
  a.momentum_valid = true;
  ++steps_;
}

void Sgd::zero_grad() {
  if (arena_) {
    std::memset(arena_->grads->ptr, 0, static_cast<size_t>(arena_->total) * sizeof(float));
  } else {
    for (auto& [name, p] : params_)
      if (p.has_grad()) std::memset(p.grad().impl()->data, 0, p.grad().impl()->bytes());
  }
  for (auto& [name, p] : params_)
    if (p.has_grad()) p.impl()->grad_zero = true;
}

io::StateDict Sgd::state_dict() const {
  io::StateDict sd;
  if (!arena_ || !arena_->momentum_valid) return sd;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    Tensor buf = slice(arena_->momentum, arena_->offsets[i], *p.impl(), name);
    io::NamedArray arr;
    arr.name = name + ".momentum_buffer";
    arr.dtype = io::DType::f32;
    arr.shape = p.shape();
    arr.bytes.resize(static_cast<size_t>(p.numel()) * sizeof(float));
    buf.copy_to_plain(reinterpret_cast<float*>(arr.bytes.data()));
    sd.push_back(std::move(arr));
  }
  return sd;
}

void Sgd::load_state_dict(const io::StateDict& sd) {
  std::map<std::string, const io::NamedArray*> by_name;
  for (const auto& arr : sd) by_name[arr.name] = &arr;
  for (const auto& [name, p] : params_) {
    auto it = by_name.find(name + ".momentum_buffer");
    if (it == by_name.end())
      fail("optimizer state", "a momentum buffer " + name + ".momentum_buffer", "none",
           "the checkpoint was written for a different model");
    const io::NamedArray& arr = *it->second;
    if (arr.dtype != io::DType::f32 || arr.shape != p.shape())
      fail("optimizer state " + arr.name, "float32 " + io::shape_str(p.shape()),
           std::string(io::dtype_name(arr.dtype)) + " " + io::shape_str(arr.shape));
  }
  if (sd.size() != params_.size())
    fail("optimizer state", std::to_string(params_.size()) + " momentum buffers",
         std::to_string(sd.size()));
  if (!arena_) {
    pending_momentum_ = sd;
    return;
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    Tensor buf = slice(arena_->momentum, arena_->offsets[i], *p.impl(), name);
    buf.copy_from_plain(by_name[name + ".momentum_buffer"]->f32());
  }
  arena_->momentum_valid = true;
}

}  // namespace kiln
