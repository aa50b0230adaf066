// SPDX-License-Identifier: MIT
// ddpm/layers/downsample.hpp — stride-2 3x3 convolution halving the spatial size.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/params.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Downsample(C): y = Conv2d(C, C, 3, stride 2, padding 1)(x). Parameter names "conv.weight",
/// "conv.bias". Keeps nothing; backward() takes the forward input again.
template <std::floating_point T, class B>
class Downsample {
 public:
  using value_type = T;
  using backend_type = B;

  Downsample(std::size_t channels, const B& backend, ParamInit& init)
      : conv_(channels, channels, ConvGeometry{3, 2, 1}, backend, init) {}

  [[nodiscard]] std::size_t channels() const noexcept { return conv_.in_channels(); }
  /// (N, C, ceil(H/2), ceil(W/2)).
  [[nodiscard]] Shape output_shape(const Shape& x) const { return conv_.output_shape(x); }

  /// x: (N, C, H, W) -> y: (N, C, ceil(H/2), ceil(W/2)).
  void forward(ConstView<T> x, View<T> y) const { conv_.forward(x, y); }
  /// @post dx (+)= d loss / d x (accumulated if `acc`; skipped if empty); parameter grads +=.
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) { conv_.backward(x, dy, dx, acc); }

  template <class V>
  void visit_parameters(V&& v) {
    ddpm::detail::visit_prefixed(conv_, "conv", v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    ddpm::detail::visit_prefixed(conv_, "conv", v);
  }

 private:
  Conv2d<T, B> conv_;
};

}  // namespace ddpm::nn
