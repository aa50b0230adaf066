// SPDX-License-Identifier: MIT
// ddpm/core/vmath.hpp — the few element functions that policies use, for V = float, double, or a
// SIMD batch. Policies call detail::VMath<V>::f(...); backend/cpu/simd.hpp specialises VMath for
// xsimd batches. A class template (not overloads) so that specialisations declared after the
// policies are still found when a policy is instantiated.
#pragma once

#include <concepts>

#include "ddpm/config.hpp"

namespace ddpm::detail {

template <class V>
struct VMath;

template <std::floating_point V>
struct VMath<V> {
  DDPM_HOST_DEVICE static V abs(V x) { return x < V(0) ? -x : x; }
  DDPM_HOST_DEVICE static V min(V a, V b) { return b < a ? b : a; }
  DDPM_HOST_DEVICE static V max(V a, V b) { return a < b ? b : a; }
  DDPM_HOST_DEVICE static V clamp(V x, V lo, V hi) { return min(max(x, lo), hi); }
  /// -1, 0 or +1 (0 at 0, as torch.sign and the L1 loss gradient).
  DDPM_HOST_DEVICE static V sign(V x) { return V(x > V(0)) - V(x < V(0)); }
};

}  // namespace ddpm::detail
