// SPDX-License-Identifier: MIT
// ddpm/diffusion/schedule/sigmoid.hpp — sigmoid beta schedule (as in GeoDiff, Xu et al. 2022).
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::schedule {

/// beta(t) = beta_start + (beta_end - beta_start) sigmoid(x_t), x_t = linspace(-range, range, T).
/// Slow at both ends, fast in the middle.
struct Sigmoid {
  std::size_t steps = 1000;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  double range = 6.0;

  [[nodiscard]] std::size_t num_steps() const noexcept { return steps; }
  [[nodiscard]] double beta(std::size_t t) const noexcept {
    const double u = steps == 1 ? 0.0 : double(t) / double(steps - 1);
    const double x = -range + 2.0 * range * u;
    return beta_start + (beta_end - beta_start) / (1.0 + std::exp(-x));
  }
  void validate() const {
    detail::require(steps >= 1, "schedule::Sigmoid::steps", "must be >= 1, got ", steps);
    detail::require(beta_start > 0 && beta_start < 1, "schedule::Sigmoid::beta_start",
                    "must be in (0, 1), got ", beta_start);
    detail::require(beta_end > 0 && beta_end < 1, "schedule::Sigmoid::beta_end",
                    "must be in (0, 1), got ", beta_end);
    detail::require(range > 0 && std::isfinite(range), "schedule::Sigmoid::range",
                    "must be > 0, got ", range);
  }
  [[nodiscard]] std::string describe() const {
    return detail::cat("sigmoid(beta_start=", beta_start, ",beta_end=", beta_end, ",range=", range,
                       ")");
  }
};
static_assert(Schedule<Sigmoid>);

}  // namespace ddpm::schedule
