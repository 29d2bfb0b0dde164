// nn.Conv2d on ops::conv2d (see layers/conv2d.h). Initialised by the owning model.
#include "kiln/layers/conv2d.h"

#include "kiln/core/error.h"
#include "kiln/engine/ops.h"

namespace kiln::layers {

namespace {
const Conv2dOptions& checked(const Conv2dOptions& o) {
  auto positive = [](const char* name, int64_t v) {
    if (v < 1)
      fail_argument(std::string("Conv2dOptions ") + name, "a positive value", std::to_string(v));
  };
  positive("in_channels", o.in_channels());
  positive("out_channels", o.out_channels());
  positive("kernel_size", o.kernel_size());
  positive("stride", o.stride());
  if (o.padding() < 0)
    fail_argument("Conv2dOptions padding", "0 or more", std::to_string(o.padding()));
  return o;
}
}  // namespace

Conv2d::Conv2d(const Conv2dOptions& o) : options(checked(o)) {
  weight = Tensor::zeros({o.out_channels(), o.in_channels(), o.kernel_size(), o.kernel_size()},
                         "weight");
  register_parameter("weight", weight);
  if (o.bias()) {
    bias = Tensor::zeros({o.out_channels()}, "bias");
    register_parameter("bias", bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  return ops::conv2d(x, weight, bias, options.stride(), options.padding());
}

}  // namespace kiln::layers
