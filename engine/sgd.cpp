// SGD over three arenas (parameters, gradients, momentum) with identical layout: the step is
// one pass of kiln's own sgd_update kernel over the whole arena (see engine/sgd.h).
#include "kiln/engine/sgd.h"

#include <cstring>
#include <map>

#include "kiln/core/error.h"
#include "kiln/engine/kernels.h"
#include "kiln/engine/tensor_impl.h"

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
    KILN_ASSERT(p->storage_floats() * 4 == static_cast<int64_t>(p->bytes()), "odd parameter size");
    float* pdata = static_cast<float*>(a->params->ptr) + off;
    std::memcpy(pdata, p->data, p->bytes());
    p->storage = a->params;
    p->data = pdata;
    p->arena_slice = true;
    p->layout_locked = true;
    Tensor g = slice(a->grads, off, *p, params_[i].first + ".grad");
    materialize_zero_grad(*p);
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

namespace {

// A derived copy that is the parameter with each (b0 x b1) inner block transposed, e.g.
// OIhw16i16o -> OIhw16o16i (what oneDNN's conv backward-data wants). Outer blocks may be
// ordered differently (strides are per dimension), so any such pair qualifies.
struct BlockTranspose {
  const TensorImpl* param;
  TensorImpl::Derived* derived;
  int64_t blocks[4];       // outer block counts per dimension (padded / block size)
  int64_t src_stride[4], dst_stride[4];
  int64_t b_outer, b_inner;  // the parameter's inner blocks: [b_outer][b_inner]
};

bool plan_block_transpose(const TensorImpl& p, TensorImpl::Derived& d, BlockTranspose& bt) {
  const auto& a = p.md.data;
  const auto& b = d.md.data;
  if (a.ndims != 4 || b.ndims != 4 || a.format_kind != dnnl_blocked ||
      b.format_kind != dnnl_blocked)
    return false;
  const auto& ab = a.format_desc.blocking;
  const auto& bb = b.format_desc.blocking;
  if (ab.inner_nblks != 2 || bb.inner_nblks != 2) return false;
  if (ab.inner_idxs[0] != bb.inner_idxs[1] || ab.inner_idxs[1] != bb.inner_idxs[0] ||
      ab.inner_blks[0] != bb.inner_blks[1] || ab.inner_blks[1] != bb.inner_blks[0])
    return false;
  int64_t blk[4] = {1, 1, 1, 1};
  blk[ab.inner_idxs[0]] = ab.inner_blks[0];
  blk[ab.inner_idxs[1]] = ab.inner_blks[1];
  for (int i = 0; i < 4; ++i) {
    if (a.padded_dims[i] != b.padded_dims[i] || a.padded_dims[i] % blk[i] != 0) return false;
    bt.blocks[i] = a.padded_dims[i] / blk[i];
    bt.src_stride[i] = ab.strides[i];
    bt.dst_stride[i] = bb.strides[i];
  }
  bt.param = &p;
  bt.derived = &d;
  bt.b_outer = ab.inner_blks[0];
  bt.b_inner = ab.inner_blks[1];
  return true;
}

}  // namespace

void Sgd::step() {
  if (!arena_) build_arena();
  Arena& a = *arena_;
  const kernels::Table& k = kernels::table();
  float lr = static_cast<float>(cfg_.lr), mom = static_cast<float>(cfg_.momentum);
  float wd = static_cast<float>(cfg_.weight_decay);
  bool first = !a.momentum_valid;
  auto* P = static_cast<float*>(a.params->ptr);
  auto* G = static_cast<const float*>(a.grads->ptr);
  auto* M = static_cast<float*>(a.momentum->ptr);
  for (auto& [name, p] : params_) materialize_zero_grad(*p.impl());

  // Parameters whose derived copies are block transposes get the fused update: each block is
  // updated and written transposed while it is in cache. The others are updated in runs of
  // contiguous arena slices: one vectorized pass.
  int64_t run_begin = 0;
  auto flush = [&](int64_t end) {
    if (end > run_begin) k.sgd_update(P + run_begin, G + run_begin, M + run_begin, end - run_begin,
                                      lr, mom, wd, first);
  };
  std::vector<BlockTranspose> plans;
  for (size_t i = 0; i < params_.size(); ++i) {
    TensorImpl* p = params_[i].second.impl();
    ++p->version;
    plans.clear();
    for (auto& d : p->derived) {
      BlockTranspose bt;
      if (plan_block_transpose(*p, d, bt)) plans.push_back(bt);
    }
    int64_t off = a.offsets[i];
    if (plans.empty()) continue;  // stays in the current run
    flush(off);
    const BlockTranspose& b0 = plans[0];
    int64_t nb = b0.blocks[0] * b0.blocks[1] * b0.blocks[2] * b0.blocks[3];
    int64_t bsize = b0.b_outer * b0.b_inner;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nb; ++blk) {
      int64_t c3 = blk % b0.blocks[3], r = blk / b0.blocks[3];
      int64_t c2 = r % b0.blocks[2];
      r /= b0.blocks[2];
      int64_t c1 = r % b0.blocks[1], c0 = r / b0.blocks[1];
      int64_t src = c0 * b0.src_stride[0] + c1 * b0.src_stride[1] + c2 * b0.src_stride[2] +
                    c3 * b0.src_stride[3];
      k.sgd_update(P + off + src, G + off + src, M + off + src, bsize, lr, mom, wd, first);
      const float* s = P + off + src;
      for (const BlockTranspose& bt : plans) {
        int64_t dst = c0 * bt.dst_stride[0] + c1 * bt.dst_stride[1] + c2 * bt.dst_stride[2] +
                      c3 * bt.dst_stride[3];
        float* d = bt.derived->copy.impl()->data + dst;
        for (int64_t x = 0; x < bt.b_outer; ++x)
          for (int64_t y = 0; y < bt.b_inner; ++y) d[y * bt.b_outer + x] = s[x * bt.b_inner + y];
      }
    }
    for (const BlockTranspose& bt : plans) bt.derived->version = p->version;
    run_begin = off + (p->storage_floats() + 15) / 16 * 16;
  }
  flush(a.total);
  a.momentum_valid = true;
  ++steps_;
}

// Lazy: gradients are only flagged as zero. Every op's backward then overwrites a flagged
// gradient instead of adding to it, so a training step never pays for an 85 MB memset; a
// gradient that no op wrote is zeroed by grad() or by step() (materialise_zero_grads).
void Sgd::zero_grad() {
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
