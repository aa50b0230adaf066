// SPDX-License-Identifier: MIT
// ddpm/layers/linear.hpp — fully connected layer y = x W^T + b (PyTorch Linear).
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Linear(in, out) with bias. Keeps no activations: backward() takes the forward input again.
template <std::floating_point T, class B>
class Linear {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  /// Weight (out, in) and bias (out) drawn U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's default).
  Linear(std::size_t in, std::size_t out, const B& backend, ParamInit& init)
      : backend_(backend), in_(in), out_(out), weight_(Shape{out, in}), bias_(Shape{out}) {
    const double bound = default_init_bound(in);
    init.uniform(weight_, bound);
    init.uniform(bias_, bound);
  }

  [[nodiscard]] std::size_t in_features() const noexcept { return in_; }
  [[nodiscard]] std::size_t out_features() const noexcept { return out_; }

  /// y = x W^T + b.                                      x: (N, in)   y: (N, out), not aliasing x
  void forward(ConstView<T> x, View<T> y) const {
    check(x.shape(), y.shape(), "Linear::forward");
    ops::template linear_forward<T>(backend_, x, weight_.value.cview(), bias_.value.cview(), y);
  }

  /// @pre  x is the input of the forward() whose output gradient is dy.
  /// @post dx (+)= dy W (accumulated if `acc`; skipped if dx is empty);
  ///       weight.grad += dy^T x;  bias.grad += sum over rows of dy.
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) {
    check(x.shape(), dy.shape(), "Linear::backward");
    if (!dx.empty()) ddpm::detail::require_shape(dx.shape(), x.shape(), "Linear::backward dx");
    ops::template linear_backward<T>(backend_, x, weight_.value.cview(), dy, dx, weight_.grad.view(),
                                     bias_.grad.view(), acc);
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

 private:
  void check(const Shape& x, const Shape& y, std::string_view what) const {
    DDPM_REQUIRE(x.rank == 2 && x[1] == in_, what, "expected input (N, ", in_, "), got ", x.str());
    ddpm::detail::require_shape(y, Shape{x[0], out_}, what);
  }

  B backend_;
  std::size_t in_, out_;
  Parameter<T, B> weight_;
  Parameter<T, B> bias_;
};

}  // namespace ddpm::nn
