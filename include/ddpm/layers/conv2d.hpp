// SPDX-License-Identifier: MIT
// ddpm/layers/conv2d.hpp — 2-D convolution with bias (PyTorch Conv2d: cross-correlation, square
// kernel, symmetric zero padding, weight (C_out, C_in, k, k)).
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Conv2d(in, out, kernel, stride, pad) with bias. Functional with parameters: it keeps no
/// activations; the caller passes the same x to backward() that it passed to forward().
template <std::floating_point T, class B>
class Conv2d {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  /// Weight (out, in, k, k) and bias (out) drawn U(-1/sqrt(in k^2), 1/sqrt(in k^2)) as PyTorch
  /// does, or zero when `zero_init` (the DDPM code's zero-initialised output convolutions).
  Conv2d(std::size_t in, std::size_t out, ConvGeometry geometry, const B& backend, ParamInit& init,
         bool zero_init = false)
      : backend_(backend),
        geometry_(geometry),
        in_(in),
        out_(out),
        weight_(Shape{out, in, geometry.kernel, geometry.kernel}),
        bias_(Shape{out}) {
    if (zero_init) {
      init.constant(weight_, 0.0);
      init.constant(bias_, 0.0);
    } else {
      const double bound = default_init_bound(in * geometry.kernel * geometry.kernel);
      init.uniform(weight_, bound);
      init.uniform(bias_, bound);
    }
  }

  [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
  [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
  [[nodiscard]] const ConvGeometry& geometry() const noexcept { return geometry_; }
  /// (N, out, Ho, Wo) for an input of shape (N, in, H, W).
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    return Shape{x.n(), out_, geometry_.out_size(x.h()), geometry_.out_size(x.w())};
  }

  /// y = conv(x, weight) + bias.                        x: (N, in, H, W)   y: (N, out, Ho, Wo)
  /// y must not alias x.
  void forward(ConstView<T> x, View<T> y) const {
    check(x.shape(), y.shape(), "Conv2d::forward");
    ops::template conv2d_forward<T>(backend_, x, weight_.value.cview(), bias_.value.cview(), y,
                                    geometry_);
  }

  /// @pre  x is the input of the forward() whose output gradient is dy.
  /// @post dx (+)= conv^T(dy, weight) (accumulated if `acc`, assigned otherwise; skipped if dx is
  ///       empty); weight.grad += corr(x, dy); bias.grad += sum of dy over N, H, W.
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) {
    check(x.shape(), dy.shape(), "Conv2d::backward");
    if (!dx.empty()) ddpm::detail::require_shape(dx.shape(), x.shape(), "Conv2d::backward dx");
    ops::template conv2d_backward<T>(backend_, x, weight_.value.cview(), dy, dx, weight_.grad.view(),
                                     bias_.grad.view(), geometry_, acc);
  }

  template <class V>
  void visit_parameters(V&& v) {
    v(std::string_view("weight"), weight_);
    v(std::string_view("bias"), bias_);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    v(std::string_view("weight"), weight_);
    v(std::string_view("bias"), bias_);
  }

  [[nodiscard]] Parameter<T, B>& weight() noexcept { return weight_; }
  [[nodiscard]] Parameter<T, B>& bias() noexcept { return bias_; }

 private:
  void check(const Shape& x, const Shape& y, std::string_view what) const {
    DDPM_REQUIRE(x.rank == 4 && x.c() == in_, what, "expected input (N, ", in_,
                    ", H, W), got ", x.str());
    ddpm::detail::require_shape(y, output_shape(x), what);
  }

  B backend_;
  ConvGeometry geometry_;
  std::size_t in_, out_;
  Parameter<T, B> weight_;
  Parameter<T, B> bias_;
};

}  // namespace ddpm::nn
