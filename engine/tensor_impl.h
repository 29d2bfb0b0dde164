// Engine-internal view of a tensor: shape, name, oneDNN memory descriptor (the layout) and
// storage, plus autograd state. Storage is 64-byte aligned and comes from a size-keyed pool
// (engine/storage.h), so a steady-state step reuses the buffers of the previous one instead of
// calling malloc. A tensor may view part of a larger storage (a parameter arena slice).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/engine/storage.h"
#include "kiln/engine/tensor.h"

namespace kiln {

struct FoldedBn;  // engine/ops_conv.cpp

struct TensorImpl {
  std::vector<int64_t> shape;
  std::string name;
  dnnl::memory::desc md;             // layout; md.get_size() bytes at data
  std::shared_ptr<Storage> storage;  // owner of the bytes (may be shared: views, arenas)
  float* data = nullptr;

  bool requires_grad = false;
  bool is_leaf = true;          // parameters and inputs; op results are not
  bool layout_locked = false;   // parameters in an SGD arena keep their layout
  bool grad_zero = false;       // grad counts as zeros (its bytes may be stale): the next op
                                // writing it overwrites instead of adding
  bool arena_slice = false;     // storage is an SGD arena shared with other slices
  int32_t pending_uses = 0;     // leaves: tape nodes still to run backward that read this tensor
  Tensor grad;

  // The same values in other layouts (e.g. the weights a conv's backward-data primitive wants,
  // oneDNN's transposed OIhw16o16i): kept across steps, refreshed when `version` moves on.
  // SGD refreshes the block-transposed ones itself, fused with its update (engine/sgd.cpp).
  uint64_t version = 0;  // bumped whenever the values change (SGD, loading, running statistics)
  struct Derived {
    dnnl::memory::desc md;
    Tensor copy;
    uint64_t version;
    // 0: the same tensor in layout md (cached_layout). Otherwise a matrix made from it whose
    // content md alone does not determine (the small-map path's M, which depends on the
    // activation layout and the geometry): its maker's key.
    uint64_t form = 0;
  };
  std::vector<Derived> derived;
  // Inference only: this convolution weight with the batch norm that follows it folded in, in
  // the layouts the convolutions asked for (ops::conv2d_bn). Rebuilt when any of the five
  // tensors it came from changes version.
  std::shared_ptr<FoldedBn> folded_bn;

  size_t bytes() const { return md.get_size(); }
  int64_t storage_floats() const { return static_cast<int64_t>(md.get_size() / sizeof(float)); }
};

dnnl::memory::dims to_dims(const std::vector<int64_t>& shape);
dnnl::memory::desc plain_md(const std::vector<int64_t>& shape);  // C-order f32
bool is_plain_md(const dnnl::memory::desc& md, const std::vector<int64_t>& shape);
std::string md_str(const dnnl::memory::desc& md);                // "nChw16c", "abcd", ...

// A new tensor with uninitialised pooled storage in layout md.
Tensor make_tensor(std::vector<int64_t> shape, const dnnl::memory::desc& md, std::string name);
// Same storage, new shape (plain layouts only): flatten and friends.
Tensor make_view(const Tensor& src, std::vector<int64_t> shape, std::string name);
// Moves t's data into layout md (a real reorder into new storage); grad follows if present.
void relayout(const Tensor& t, const dnnl::memory::desc& md);
// A copy of t in layout md (t itself unchanged). Counts as an in-op reorder.
Tensor reordered(const Tensor& t, const dnnl::memory::desc& md);

// A gradient flagged zero (Sgd::zero_grad is lazy) but never written gets its zeros now.
void materialize_zero_grad(TensorImpl& t);

// t's values in layout md: t itself, or its cached derived copy (refreshed by a counted
// reorder only when stale).
Tensor cached_layout(const Tensor& t, const dnnl::memory::desc& md);

dnnl::memory as_memory(const Tensor& t);  // oneDNN memory object over t's storage

}  // namespace kiln
