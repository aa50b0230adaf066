// SPDX-License-Identifier: MIT
// ddpm/diffusion/schedule/linear.hpp — linear beta schedule (Ho et al. 2020).
#pragma once

#include <cstddef>
#include <string>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::schedule {

/// beta(t) = beta_start + (beta_end - beta_start) t / (T - 1), t = 0..T-1 (numpy.linspace).
/// The end points are those of Ho et al. for T = 1000 and are kept for any T, as the reference does.
struct Linear {
  std::size_t steps = 1000;
  double beta_start = 1e-4;
  double beta_end = 0.02;

  [[nodiscard]] std::size_t num_steps() const noexcept { return steps; }
  [[nodiscard]] double beta(std::size_t t) const noexcept {
    if (steps == 1) return beta_start;
    return beta_start + (beta_end - beta_start) * double(t) / double(steps - 1);
  }
  /// Throws std::invalid_argument naming the bad parameter.
  void validate() const {
    detail::require(steps >= 1, "schedule::Linear::steps", "must be >= 1, got ", steps);
    detail::require(beta_start > 0 && beta_start < 1, "schedule::Linear::beta_start",
                    "must be in (0, 1), got ", beta_start);
    detail::require(beta_end > 0 && beta_end < 1, "schedule::Linear::beta_end",
                    "must be in (0, 1), got ", beta_end);
  }
  [[nodiscard]] std::string describe() const {
    return detail::cat("linear(beta_start=", beta_start, ",beta_end=", beta_end, ")");
  }
};
static_assert(Schedule<Linear>);

}  // namespace ddpm::schedule
