// SPDX-License-Identifier: MIT
// ddpm/core/losses.hpp — the built-in element losses (loss::L1, L2, Huber): element functions the
// backends run inside their loss kernels, so they live below both the diffusion layer and the
// backends. ddpm/diffusion/loss/*.hpp include this header.
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"
#include "ddpm/core/vmath.hpp"

// ---- absolute error (torch.nn.functional.l1_loss when mean-reduced)
namespace ddpm::loss {

/// value(d) = |d|,  grad(d) = sign(d) (0 at 0, as PyTorch).
struct L1 {
  [[nodiscard]] static constexpr std::string_view name() noexcept { return "l1"; }
  template <class V>
  DDPM_HOST_DEVICE V value(V d) const { return detail::VMath<V>::abs(d); }
  template <class V>
  DDPM_HOST_DEVICE V grad(V d) const { return detail::VMath<V>::sign(d); }
  void validate() const {}
};
static_assert(Loss<L1>);

}  // namespace ddpm::loss

// ---- squared error (torch.nn.functional.mse_loss when mean-reduced)
namespace ddpm::loss {

/// value(d) = d^2,  grad(d) = 2 d,  d = prediction - target.
struct L2 {
  [[nodiscard]] static constexpr std::string_view name() noexcept { return "l2"; }
  template <class V>
  DDPM_HOST_DEVICE V value(V d) const { return d * d; }
  template <class V>
  DDPM_HOST_DEVICE V grad(V d) const { return d + d; }
  void validate() const {}
};
static_assert(Loss<L2>);

}  // namespace ddpm::loss

// ---- Huber loss (torch.nn.functional.huber_loss)
namespace ddpm::loss {

/// value(d) = d^2 / 2 for |d| <= delta, delta (|d| - delta / 2) beyond;  grad(d) = clamp(d, -delta, delta).
/// Written branch-free as q = min(|d|, delta): value = q^2 / 2 + delta (|d| - q).
struct Huber {
  float delta = 1.0f;

  [[nodiscard]] static constexpr std::string_view name() noexcept { return "huber"; }
  template <class V>
  DDPM_HOST_DEVICE V value(V d) const {
    using M = detail::VMath<V>;
    const V a = M::abs(d);
    const V q = M::min(a, V(delta));
    return V(0.5f) * q * q + V(delta) * (a - q);
  }
  template <class V>
  DDPM_HOST_DEVICE V grad(V d) const {
    return detail::VMath<V>::clamp(d, V(-delta), V(delta));
  }
  [[nodiscard]] std::string describe() const { return detail::cat("huber(delta=", delta, ")"); }
  /// Throws std::invalid_argument unless delta > 0 and finite.
  void validate() const {
    detail::require(delta > 0.0f && std::isfinite(delta), "loss::Huber::delta",
                    "must be > 0 and finite, got ", delta);
  }
};
static_assert(Loss<Huber>);

}  // namespace ddpm::loss
