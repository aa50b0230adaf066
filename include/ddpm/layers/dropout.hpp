// SPDX-License-Identifier: MIT
// ddpm/layers/dropout.hpp — inverted dropout whose mask is a pure function of (rng, stream, index).
#pragma once

#include <concepts>
#include <cstdint>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Dropout(p), PyTorch's inverted form: y = x keep / (1 - p). Element i is kept when
/// rng.uniform(stream, i) >= p, so the mask is never stored: backward() regenerates it from the
/// same (rng, stream). No parameters, no state.
template <std::floating_point T, class B>
class Dropout {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  Dropout(double p, const B& backend) : backend_(backend), p_(p) {
    DDPM_REQUIRE(p >= 0.0 && p < 1.0, "Dropout", "p = ", p, " must be in [0, 1)");
  }
  [[nodiscard]] double p() const noexcept { return p_; }

  /// y = x keep / (1 - p); y must not alias x.
  void forward(ConstView<T> x, View<T> y, Rng rng, std::uint64_t stream) const {
    DDPM_REQUIRE(x.size() == y.size(), "Dropout::forward", "sizes differ");
    ops::template dropout_forward<T>(backend_, x, y, p_, rng, stream);
  }
  /// @pre  (rng, stream) are those of the forward() whose output gradient is dy.
  /// @post dx (+)= dy keep / (1 - p) (accumulated if `acc`).
  void backward(ConstView<T> dy, View<T> dx, Rng rng, std::uint64_t stream, bool acc) const {
    DDPM_REQUIRE(dy.size() == dx.size(), "Dropout::backward", "sizes differ");
    ops::template dropout_backward<T>(backend_, dy, dx, p_, rng, stream, acc);
  }

  template <class V>
  void visit_parameters(V&&) const {}

 private:
  B backend_;
  double p_;
};

}  // namespace ddpm::nn
