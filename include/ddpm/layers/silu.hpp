// SPDX-License-Identifier: MIT
// ddpm/layers/silu.hpp — the SiLU activation x sigmoid(x), out of place.
#pragma once

#include <concepts>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// SiLU (swish): y = x sigmoid(x). Out of place only (backward needs the input x, so an in-place
/// form would have to keep a copy anyway). No parameters, no state.
/// Where SiLU follows a GroupNorm, the blocks use GroupNorm's fused form instead.
template <std::floating_point T, class B>
class Silu {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  Silu() = default;
  explicit Silu(const B& backend) : backend_(backend) {}

  /// y = x sigmoid(x); any shape; y must not alias x.
  void forward(ConstView<T> x, View<T> y) const {
    DDPM_REQUIRE(x.size() == y.size(), "Silu::forward", "x has ", x.size(), " elements, y ", y.size());
    ops::template silu_forward<T>(backend_, x, y);
  }
  /// dx (+)= dy silu'(x) (accumulated if `acc`).
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) const {
    DDPM_REQUIRE(x.size() == dy.size() && x.size() == dx.size(), "Silu::backward", "sizes differ");
    ops::template silu_backward<T>(backend_, x, dy, dx, acc);
  }

  template <class V>
  void visit_parameters(V&&) const {}

 private:
  B backend_{};
};

}  // namespace ddpm::nn
