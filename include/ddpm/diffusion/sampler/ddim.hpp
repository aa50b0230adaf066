// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/ddim.hpp — DDIM (Song et al. 2021).
#pragma once

#include <cstddef>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/sampler/timesteps.hpp"

namespace ddpm::sampler {

/// DDIM over tau = round(linspace(0, T-1, steps)) descending; eta = 0 is deterministic, eta = 1
/// has the variance of the respaced ancestral sampler.
///   x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
///   sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
struct Ddim {
  std::size_t steps = 50;
  double eta = 0.0;
  Spacing spacing = Spacing::linspace;  ///< linspace is the default and the reference

  [[nodiscard]] std::string describe() const {
    return detail::cat("ddim(steps=", steps, ",eta=", eta,
                       spacing == Spacing::linspace ? "" : ",spacing=",
                       spacing == Spacing::linspace ? "" : spacing_name(spacing), ")");
  }
};

}  // namespace ddpm::sampler
