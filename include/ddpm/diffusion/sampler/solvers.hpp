// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/solvers.hpp — the fast samplers as policy values: DPM-Solver++ 2M (ODE
// and SDE), Euler and Heun (Karras et al.), UniPC-bh2. The arithmetic lives in sample.hpp.
#pragma once

#include <cstddef>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/sampler/timesteps.hpp"

namespace ddpm::sampler {

// Default spacings: linspace for the multistep solvers (diffusers' default too); karras for Euler
// and Heun, as in Karras et al. Measured with the closed-form denoiser of a 4-point data set
// (tests/diffusion/sampler): with 8-10 steps, trailing ends at t = T/S - 1, still noisy for the
// linear schedule, and lands up to 1.5 away from the data; karras on the cosine schedule (T =
// 1000) puts several sigmas on t = 999, 998, 997..., which merge, so 10 steps become 7.

/// DPM-Solver++ 2M (Lu et al. 2022, "DPM-Solver++", Alg. 2): a second-order multistep solver of
/// the probability-flow ODE in lambda = log(alpha / sigma) on the data prediction x0, one network
/// evaluation per step; the first step and the last (to x_0) are first order. `sde` selects the
/// SDE variant (diffusers' "sde-dpmsolver++", midpoint), which adds fresh noise each step.
///   ODE: x' = (s'/s) x + a' (1 - e^-h) [(1 + 1/2r) x0_k - (1/2r) x0_{k-1}]
///   SDE: x' = (s'/s) e^-h x + a' (1 - e^-2h) [(1 + 1/2r) x0_k - (1/2r) x0_{k-1}] + s' sqrt(1 - e^-2h) z
/// with h = lambda' - lambda, r = h_{k-1} / h, a = sqrt(abar), s = sqrt(1 - abar).
struct DpmSolverPP {
  std::size_t steps = 20;
  bool sde = false;
  Spacing spacing = Spacing::linspace;
  double rho = 7.0;  ///< karras spacing only

  [[nodiscard]] std::string describe() const {
    return detail::cat(sde ? "dpmpp-2m-sde" : "dpmpp-2m", "(steps=", steps, ",spacing=",
                       spacing_name(spacing), ")");
  }
};

/// Euler on the probability-flow ODE in Karras' sigma = s / a (Karras et al. 2022, Alg. 1 without
/// churn): dx/dsigma = eps_hat, written back to the variance-preserving x. One network evaluation
/// per step; in exact arithmetic this is DDIM(eta = 0) on the same timesteps.
struct Euler {
  std::size_t steps = 20;
  Spacing spacing = Spacing::karras;
  double rho = 7.0;

  [[nodiscard]] std::string describe() const {
    return detail::cat("euler(steps=", steps, ",spacing=", spacing_name(spacing), ")");
  }
};

/// Heun's second-order method on the same ODE (Karras et al. 2022, Alg. 1): an Euler step, a
/// second evaluation at its end, the average slope; the last step (to sigma = 0) is Euler. Two
/// network evaluations per step except the last: 2 steps - 1 in all.
struct Heun {
  std::size_t steps = 10;
  Spacing spacing = Spacing::karras;
  double rho = 7.0;

  [[nodiscard]] std::string describe() const {
    return detail::cat("heun(steps=", steps, ",spacing=", spacing_name(spacing), ")");
  }
};

/// UniPC (Zhao et al. 2023) with the B(h) = e^h - 1 variant "bh2", order 2, data prediction, as
/// diffusers' UniPCMultistepScheduler(solver_order=2, solver_type="bh2", predict_x0=True): the
/// predictor UniP-2 (the DPM-Solver++ 2M step) and the corrector UniC, which reuses the network
/// evaluation at the new point to correct it (no extra evaluation): one per step. The last step
/// (to x_0) is first order. `corrector = false` leaves UniP-2 alone (equal to DPM-Solver++ 2M).
struct UniPC {
  std::size_t steps = 10;
  Spacing spacing = Spacing::linspace;
  double rho = 7.0;
  bool corrector = true;

  [[nodiscard]] std::string describe() const {
    return detail::cat("unipc(steps=", steps, ",spacing=", spacing_name(spacing),
                       corrector ? "" : ",no-corrector", ")");
  }
};

}  // namespace ddpm::sampler
