// SPDX-License-Identifier: MIT
// ddpm/diffusion/loss/huber.hpp — Huber loss (torch.nn.functional.huber_loss).
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"
#include "ddpm/core/vmath.hpp"

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
