// SPDX-License-Identifier: MIT
// ddpm/diffusion/loss/l2.hpp — squared error (torch.nn.functional.mse_loss when mean-reduced).
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"

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
