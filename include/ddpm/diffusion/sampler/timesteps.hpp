// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/timesteps.hpp — timestep spacing shared by the samplers.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "ddpm/core/assert.hpp"

namespace ddpm::sampler {

/// round(linspace(0, T-1, S)) with duplicates removed, ascending, computed as numpy does
/// (start + i * step, last point exactly T-1, rounding half to even).
/// Throws std::invalid_argument unless 1 <= S <= T.
inline std::vector<std::int32_t> spaced_timesteps(std::size_t T, std::size_t S) {
  detail::require(S >= 1 && S <= T, "sampler steps", "must be in [1, T = ", T, "], got ", S);
  std::vector<std::int32_t> ts;
  ts.reserve(S);
  const double step = S == 1 ? 0.0 : double(T - 1) / double(S - 1);
  for (std::size_t i = 0; i < S; ++i) {
    const double x = (i + 1 == S && S > 1) ? double(T - 1) : double(i) * step;
    const auto v = static_cast<std::int32_t>(std::nearbyint(x));  // default rounding: to even
    if (ts.empty() || ts.back() != v) ts.push_back(v);
  }
  return ts;
}

}  // namespace ddpm::sampler
