// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/ancestral.hpp — DDPM ancestral sampling, optionally respaced.
#pragma once

#include <cstddef>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/sampler/timesteps.hpp"

namespace ddpm::sampler {

/// DDPM ancestral sampler (Ho et al. 2020, Algorithm 2).
///  steps = 0 (or T): all T steps. steps = S < T: respaced (Nichol & Dhariwal 2021, sec. 4) over
///  tau = round(linspace(0, T-1, S)); each step goes from tau_i to the previous *respaced* step
///  tau_{i-1} with beta'_i = 1 - abar(tau_i) / abar(tau_{i-1}) recomputed from alpha_bar.
///  Other spacings (trailing, leading, karras) place the S steps differently; linspace is the
///  default and the reference.
struct Ancestral {
  enum class Variance {
    fixed_small,  ///< posterior variance beta'_t (1 - abar_prev) / (1 - abar_t)  (the reference)
    fixed_large,  ///< beta'_t
  };
  std::size_t steps = 0;
  Variance variance = Variance::fixed_small;
  Spacing spacing = Spacing::linspace;

  [[nodiscard]] std::string describe() const {
    return detail::cat("ancestral(steps=", steps, ",variance=",
                       variance == Variance::fixed_small ? "small" : "large", ")");
  }
};

}  // namespace ddpm::sampler
