// SPDX-License-Identifier: MIT
// ddpm/layers/group_norm.hpp — GroupNorm (affine, eps 1e-5) with an optional fused SiLU.
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

/// GroupNorm(groups, channels), PyTorch semantics (biased variance, eps inside the square root),
/// optionally followed by SiLU in the same pass. Saved state: the per-(sample, group) mean and
/// 1/std of the last forward() (2 N G values); the normalised output itself is not kept, backward()
/// recomputes it from x, so a caller may write the output into a scratch buffer.
template <std::floating_point T, class B>
class GroupNorm {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  /// gamma = 1, beta = 0 (PyTorch's default).
  GroupNorm(std::size_t channels, std::size_t groups, const B& backend, ParamInit& init,
            double eps = 1e-5)
      : backend_(backend),
        channels_(channels),
        groups_(groups),
        eps_(eps),
        weight_(Shape{channels}),
        bias_(Shape{channels}) {
    DDPM_REQUIRE(groups > 0 && channels % groups == 0, "GroupNorm", groups,
                    " groups do not divide ", channels, " channels");
    init.constant(weight_, 1.0);
    init.constant(bias_, 0.0);
  }

  [[nodiscard]] std::size_t channels() const noexcept { return channels_; }
  [[nodiscard]] std::size_t groups() const noexcept { return groups_; }

  /// y = gamma (x - mean) / sqrt(var + eps) + beta over each (sample, group), then SiLU if `silu`.
  /// x, y: (N, C, H, W); y must not alias x. Saves mean and rstd (N, G) for backward().
  void forward(ConstView<T> x, View<T> y, bool silu) {
    check(x.shape(), "GroupNorm::forward");
    ddpm::detail::require_shape(y.shape(), x.shape(), "GroupNorm::forward y");
    mean_.resize(Shape{x.n(), groups_});
    rstd_.resize(Shape{x.n(), groups_});
    ops::template group_norm_forward<T>(backend_, x, weight_.value.cview(), bias_.value.cview(), y,
                                        mean_.view(), rstd_.view(), groups_, eps_, silu);
  }

  /// @pre  the last forward() of this layer was on the same x, with the same `silu`.
  /// @post dx (+)= d loss / d x (accumulated if `acc`; skipped if dx is empty);
  ///       weight.grad += sum(g xhat), bias.grad += sum(g), g = dy (times SiLU' if `silu`).
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool silu, bool acc) {
    check(x.shape(), "GroupNorm::backward");
    ddpm::detail::require_shape(dy.shape(), x.shape(), "GroupNorm::backward dy");
    DDPM_REQUIRE(mean_.size() == x.n() * groups_, "GroupNorm::backward",
                    "no forward() for this batch size");
    ops::template group_norm_backward<T>(backend_, x, weight_.value.cview(), bias_.value.cview(),
                                         mean_.cview(), rstd_.cview(), dy, dx, weight_.grad.view(),
                                         bias_.grad.view(), groups_, silu, acc);
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

  /// Frees the saved statistics.
  void release() noexcept {
    mean_.release();
    rstd_.release();
  }
  /// Bytes of saved state (mean and rstd).
  [[nodiscard]] std::size_t state_bytes() const noexcept {
    return (mean_.capacity() + rstd_.capacity()) * sizeof(T);
  }

 private:
  void check(const Shape& x, std::string_view what) const {
    DDPM_REQUIRE(x.rank == 4 && x.c() == channels_, what, "expected (N, ", channels_,
                    ", H, W), got ", x.str());
  }

  B backend_;
  std::size_t channels_, groups_;
  double eps_;
  Parameter<T, B> weight_;  // gamma
  Parameter<T, B> bias_;    // beta
  Tensor<T, B> mean_;       // (N, G) of the last forward
  Tensor<T, B> rstd_;       // (N, G)
};

}  // namespace ddpm::nn
