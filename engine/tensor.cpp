// Tensor handle, layouts and conversions (see engine/tensor.h, engine/tensor_impl.h).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kiln/core/error.h"
#include "kiln/engine/autograd.h"
#include "kiln/engine/dnnl_ctx.h"
#include "kiln/engine/tensor_impl.h"
#include "kiln/io/array.h"

namespace kiln {

using dnnl::memory;

namespace {
thread_local bool t_grad_enabled = true;

memory::format_tag plain_tag(size_t ndims) {
  switch (ndims) {
    case 0:
    case 1: return memory::format_tag::a;
    case 2: return memory::format_tag::ab;
    case 3: return memory::format_tag::abc;
    case 4: return memory::format_tag::abcd;
    case 5: return memory::format_tag::abcde;
  }
  KILN_ASSERT(false, "tensors have at most 5 dimensions");
  return memory::format_tag::undef;
}

}  // namespace

memory::dims to_dims(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1};  // a scalar is stored as one element
  return memory::dims(shape.begin(), shape.end());
}

memory::desc plain_md(const std::vector<int64_t>& shape) {
  return memory::desc(to_dims(shape), memory::data_type::f32, plain_tag(shape.size()));
}

bool is_plain_md(const memory::desc& md, const std::vector<int64_t>& shape) {
  return md == plain_md(shape);
}

std::string md_str(const memory::desc& md) {
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked) return "other";
  const auto& b = d.format_desc.blocking;
  int nd = d.ndims;
  // Outer dims sorted by stride (largest first), as letters; blocked dims in capitals.
  std::vector<int> order(nd);
  for (int i = 0; i < nd; ++i) order[i] = i;
  for (int i = 0; i < nd; ++i)
    for (int j = i + 1; j < nd; ++j)
      if (b.strides[order[j]] > b.strides[order[i]]) std::swap(order[i], order[j]);
  bool blocked[DNNL_MAX_NDIMS] = {};
  for (int i = 0; i < b.inner_nblks; ++i) blocked[b.inner_idxs[i]] = true;
  std::string s;
  for (int i : order) s += static_cast<char>((blocked[i] ? 'A' : 'a') + i);
  for (int i = 0; i < b.inner_nblks; ++i)
    s += std::to_string(b.inner_blks[i]) + static_cast<char>('a' + b.inner_idxs[i]);
  return s;
}

Tensor make_tensor(std::vector<int64_t> shape, const memory::desc& md, std::string name) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = std::move(shape);
  impl->name = std::move(name);
  impl->md = md;
  impl->storage = alloc_storage(md.get_size());
  impl->data = static_cast<float*>(impl->storage->ptr);
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& src, std::vector<int64_t> shape, std::string name) {
  KILN_ASSERT(src.is_plain(), "views need a plain layout: " + src.name());
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = std::move(shape);
  impl->name = std::move(name);
  impl->md = plain_md(impl->shape);
  KILN_ASSERT(impl->md.get_size() == src.impl()->md.get_size(), "view changes the size");
  impl->storage = src.impl()->storage;
  impl->data = src.impl()->data;
  return Tensor(std::move(impl));
}

memory as_memory(const Tensor& t) {
  return memory(t.impl()->md, cpu_engine(), t.impl()->data);
}

static void reorder_into(const Tensor& src, const Tensor& dst) {
  run_reorder(as_memory(src), as_memory(dst));
}

Tensor reordered(const Tensor& t, const memory::desc& md) {
  static const bool log = std::getenv("KILN_LOG_REORDERS") != nullptr;
  if (log)
    std::fprintf(stderr, "kiln: reorder %s %s -> %s\n", t.name().c_str(),
                 md_str(t.impl()->md).c_str(), md_str(md).c_str());
  Tensor out = make_tensor(t.shape(), md, t.name());
  reorder_into(t, out);
  count_reorder();
  return out;
}

Tensor cached_layout(const Tensor& t, const memory::desc& md) {
  TensorImpl* impl = t.impl();
  if (impl->md == md) return t;
  for (auto& d : impl->derived) {
    if (d.md != md || d.form != 0) continue;
    if (d.version != impl->version) {
      reorder_into(t, d.copy);
      count_reorder();
      d.version = impl->version;
    }
    return d.copy;
  }
  impl->derived.push_back({md, reordered(t, md), impl->version});
  return impl->derived.back().copy;
}

void relayout(const Tensor& t, const memory::desc& md) {
  TensorImpl* impl = t.impl();
  if (impl->md == md) return;
  KILN_ASSERT(!impl->layout_locked, "layout of " + impl->name + " is locked (arena)");
  Tensor moved = make_tensor(impl->shape, md, impl->name);
  reorder_into(t, moved);
  impl->md = md;
  impl->storage = moved.impl()->storage;
  impl->data = moved.impl()->data;
  impl->derived.clear();
  if (impl->grad.defined()) relayout(impl->grad, md);
}

// ---- Tensor ----

Tensor::Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

Tensor Tensor::zeros(std::vector<int64_t> shape, std::string name) {
  memory::desc md = plain_md(shape);
  Tensor t = make_tensor(std::move(shape), md, std::move(name));
  std::memset(t.impl()->data, 0, md.get_size());
  return t;
}

Tensor Tensor::from_plain(std::vector<int64_t> shape, const float* src, std::string name) {
  memory::desc md = plain_md(shape);
  Tensor t = make_tensor(std::move(shape), md, std::move(name));
  std::memcpy(t.impl()->data, src, md.get_size());
  return t;
}

const std::vector<int64_t>& Tensor::shape() const { return impl_->shape; }

int64_t Tensor::dim(int i) const {
  int n = static_cast<int>(impl_->shape.size());
  if (i < 0) i += n;
  KILN_ASSERT(i >= 0 && i < n, "dimension index out of range for " + impl_->name);
  return impl_->shape[static_cast<size_t>(i)];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : impl_->shape) n *= d;
  return n;
}

const std::string& Tensor::name() const { return impl_->name; }
void Tensor::set_name(std::string name) { impl_->name = std::move(name); }

bool Tensor::is_plain() const { return is_plain_md(impl_->md, impl_->shape); }

void Tensor::copy_to_plain(float* dst) const {
  if (is_plain()) {
    std::memcpy(dst, impl_->data, static_cast<size_t>(numel()) * sizeof(float));
    return;
  }
  memory out(plain_md(impl_->shape), cpu_engine(), dst);
  run_reorder(as_memory(*this), out);
}

std::vector<float> Tensor::to_plain_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  copy_to_plain(v.data());
  return v;
}

void Tensor::copy_from_plain(const float* src) {
  ++impl_->version;
  if (is_plain()) {
    std::memcpy(impl_->data, src, static_cast<size_t>(numel()) * sizeof(float));
    return;
  }
  memory in(plain_md(impl_->shape), cpu_engine(), const_cast<float*>(src));
  run_reorder(in, as_memory(*this));
}

const float* Tensor::plain_data() const {
  KILN_ASSERT(is_plain(), impl_->name + " is in layout " + md_str(impl_->md) + ", not plain");
  return impl_->data;
}

float* Tensor::plain_data_mutable() {
  ++impl_->version;
  KILN_ASSERT(is_plain(), impl_->name + " is in layout " + md_str(impl_->md) + ", not plain");
  return impl_->data;
}

float Tensor::item() const {
  KILN_ASSERT(numel() == 1, "item() needs a single-element tensor, " + impl_->name + " has " +
                                io::shape_str(impl_->shape));
  return impl_->data[0];
}

std::string Tensor::layout_str() const { return md_str(impl_->md); }

bool Tensor::requires_grad() const { return impl_->requires_grad; }
void Tensor::set_requires_grad(bool on) { impl_->requires_grad = on; }
bool Tensor::has_grad() const { return impl_->grad.defined(); }

const Tensor& Tensor::grad() const {
  KILN_ASSERT(impl_->grad.defined(), "no gradient for " + impl_->name);
  materialize_zero_grad(*impl_);
  return impl_->grad;
}

void materialize_zero_grad(TensorImpl& t) {
  if (!t.grad_zero || !t.grad.defined()) return;
  std::memset(t.grad.impl()->data, 0, t.grad.impl()->bytes());
  t.grad_zero = false;
}

// ---- NoGrad ----

NoGrad::NoGrad() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGrad::~NoGrad() { t_grad_enabled = previous_; }
bool grad_enabled() { return t_grad_enabled; }

}  // namespace kiln
