// kiln's tensor: a shared handle to fp32 storage (64-byte aligned) plus a shape, a name and a
// memory layout. The layout is either plain C order (NCHW, row-major) or one of oneDNN's
// blocked layouts (nChw16c, nChw8c, OIhw16i16o, ...) chosen by the convolution; the shape is
// always the logical one (N, C, H, W). Copying a Tensor copies the handle, not the data.
// The layout itself lives in the engine-internal engine/tensor_impl.h (oneDNN memory::desc).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln {

struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl);

  static Tensor zeros(std::vector<int64_t> shape, std::string name = {});
  static Tensor from_plain(std::vector<int64_t> shape, const float* src, std::string name = {});

  bool defined() const { return impl_ != nullptr; }
  const std::vector<int64_t>& shape() const;
  int64_t dim(int i) const;             // shape()[i]; negative counts from the end
  int64_t numel() const;
  const std::string& name() const;
  void set_name(std::string name);

  bool is_plain() const;                    // C-order (NCHW / row-major) layout?
  void copy_to_plain(float* dst) const;     // reorders if blocked; dst has numel() floats
  std::vector<float> to_plain_vector() const;
  void copy_from_plain(const float* src);   // src is C order; stored in this tensor's layout
  const float* plain_data() const;          // asserts is_plain()
  float* plain_data_mutable();              // asserts is_plain()
  float item() const;                       // scalar / single-element tensors (the loss)
  std::string layout_str() const;           // "nchw", "nChw16c", "OIhw16i16o", ...

  // Autograd. Parameters are leaves with requires_grad; results of ops on them require grad
  // while grad mode is on (not inside NoGrad). grad() is in the same layout as *this.
  bool requires_grad() const;
  void set_requires_grad(bool on);
  bool has_grad() const;
  const Tensor& grad() const;               // asserts has_grad()
  // Runs the tape in reverse from this scalar (d self = 1), accumulating into the leaves'
  // grads, then frees the graph.
  void backward() const;
  // The same from a non-scalar: d self = grad_output (same shape, any layout).
  void backward(const Tensor& grad_output) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Called by backward() on this thread as soon as a leaf's gradient is final: every tape node
// that read the leaf has run its backward rule. Parameters become ready in reverse order of
// their last use, while backward goes on: a data-parallel trainer starts reducing a layer's
// gradients here (in buckets) while the layers below are still differentiating. An empty
// function removes the hook. The hook must not run ops that record on this thread's tape.
using GradReadyHook = std::function<void(const Tensor& leaf)>;
void set_grad_ready_hook(GradReadyHook hook);

// RAII: while alive on this thread, ops record no tape (inference).
struct NoGrad {
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};
bool grad_enabled();

// Counters the tests use to prove the fast path is taken.
struct EngineStats {
  int64_t reorders = 0;             // reorders done inside ops (not import/export/to_plain)
  int64_t primitives_created = 0;   // oneDNN primitives built (cache misses)
  int64_t ref_impls = 0;            // primitives whose implementation name starts with "ref"
  int64_t small_convs = 0;          // conv2d calls on the small-map path (padding skipped)
};
EngineStats engine_stats();
void reset_engine_stats();
// Implementation names ("jit:avx512_common", ...) of every primitive created so far, by op.
std::vector<std::string> primitive_impl_names();

}  // namespace kiln
