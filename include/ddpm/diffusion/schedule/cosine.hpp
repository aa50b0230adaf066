// SPDX-License-Identifier: MIT
// ddpm/diffusion/schedule/cosine.hpp — cosine schedule (Nichol & Dhariwal 2021, eq. 17).
#pragma once

#include <cmath>
#include <cstddef>
#include <numbers>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::schedule {

/// f(u) = cos^2(((u + s) / (1 + s)) pi/2),  beta(t) = clip(1 - f((t+1)/T) / f(t/T), min_beta, max_beta)
/// for t = 0..T-1; alpha_bar is the cumulative product of the clipped betas (as the reference).
struct Cosine {
  std::size_t steps = 1000;
  double s = 0.008;
  double min_beta = 0.0;    ///< lower clip bound
  double max_beta = 0.999;  ///< upper clip bound (keeps beta < 1 near t = T-1)

  [[nodiscard]] std::size_t num_steps() const noexcept { return steps; }
  [[nodiscard]] double f(double u) const noexcept {
    const double c = std::cos((u + s) / (1.0 + s) * std::numbers::pi / 2.0);
    return c * c;
  }
  [[nodiscard]] double beta(std::size_t t) const noexcept {
    const double b = 1.0 - f(double(t + 1) / double(steps)) / f(double(t) / double(steps));
    return b < min_beta ? min_beta : (b > max_beta ? max_beta : b);
  }
  void validate() const {
    detail::require(steps >= 1, "schedule::Cosine::steps", "must be >= 1, got ", steps);
    detail::require(s > 0 && std::isfinite(s), "schedule::Cosine::s", "must be > 0, got ", s);
    detail::require(max_beta > 0 && max_beta < 1, "schedule::Cosine::max_beta",
                    "must be in (0, 1), got ", max_beta);
    detail::require(min_beta >= 0 && min_beta < max_beta, "schedule::Cosine::min_beta",
                    "must be in [0, max_beta), got ", min_beta);
  }
  [[nodiscard]] std::string describe() const {
    return detail::cat("cosine(s=", s, ",min_beta=", min_beta, ",max_beta=", max_beta, ")");
  }
};
static_assert(Schedule<Cosine>);

}  // namespace ddpm::schedule
