// SPDX-License-Identifier: MIT
// ddpm/layers/upsample.hpp — nearest-neighbour x2 upsampling followed by a 3x3 convolution.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Upsample(C): y = Conv3x3(nearest_x2(x)), C -> C channels (PyTorch: F.interpolate(scale 2,
/// "nearest") then Conv2d(C, C, 3, padding 1)). Parameter names "conv.weight", "conv.bias".
///
/// The upsampled tensor (N, C, 2H, 2W) lives in a caller-provided scratch buffer and is
/// recomputed in backward(); the layer keeps nothing.
template <std::floating_point T, class B>
class Upsample {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  Upsample(std::size_t channels, const B& backend, ParamInit& init)
      : backend_(backend), conv_(channels, channels, ConvGeometry{3, 1, 1}, backend, init) {}

  [[nodiscard]] std::size_t channels() const noexcept { return conv_.in_channels(); }
  /// (N, C, 2H, 2W): the shape of the output and of both scratch buffers.
  [[nodiscard]] static Shape output_shape(const Shape& x) {
    return Shape{x.n(), x.c(), 2 * x.h(), 2 * x.w()};
  }

  /// y = conv(upsample2x(x)).      x: (N, C, H, W)   y, up: (N, C, 2H, 2W); up is overwritten.
  void forward(ConstView<T> x, View<T> y, View<T> up) const {
    ddpm::detail::require_shape(up.shape(), output_shape(x.shape()), "Upsample::forward scratch");
    ops::template upsample2x_forward<T>(backend_, x, up);
    conv_.forward(up, y);
  }

  /// @post dx (+)= d loss / d x (accumulated if `acc`); conv parameter gradients +=.
  ///       up and dup (N, C, 2H, 2W) are overwritten.
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc, View<T> up, View<T> dup) {
    ddpm::detail::require_shape(up.shape(), output_shape(x.shape()), "Upsample::backward scratch");
    ddpm::detail::require_shape(dup.shape(), output_shape(x.shape()), "Upsample::backward scratch");
    ddpm::detail::require_shape(dx.shape(), x.shape(), "Upsample::backward dx");
    ops::template upsample2x_forward<T>(backend_, x, up);
    conv_.backward(up, dy, dup, false);
    ops::template upsample2x_backward<T>(backend_, dup, dx, acc);
  }

  template <class V>
  void visit_parameters(V&& v) {
    ddpm::detail::visit_prefixed(conv_, "conv", v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    ddpm::detail::visit_prefixed(conv_, "conv", v);
  }

 private:
  B backend_;
  Conv2d<T, B> conv_;
};

}  // namespace ddpm::nn
