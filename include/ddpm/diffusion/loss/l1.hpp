// SPDX-License-Identifier: MIT
// ddpm/diffusion/loss/l1.hpp — absolute error (torch.nn.functional.l1_loss when mean-reduced).
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"
#include "ddpm/core/vmath.hpp"

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
