// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/timesteps.hpp — timestep spacings shared by the samplers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
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

/// How S sampling steps are placed on the T training timesteps (names as in diffusers'
/// `timestep_spacing` and k-diffusion):
///  - linspace: round(linspace(0, T-1, S)) — from T-1 down to 0 (the DDPM/DDIM respacing);
///  - leading:  0, T/S, 2 T/S, ... (integer T/S) — never reaches T-1;
///  - trailing: round(T - i T/S) - 1 — starts at T-1, ends at T/S - 1 (Lin et al. 2024);
///  - karras:   sigma_i = (smax^(1/rho) + i/(S-1) (smin^(1/rho) - smax^(1/rho)))^rho in the
///    variance-exploding sigma = sqrt((1 - abar) / abar) (Karras et al. 2022, eq. 5), between the
///    sigmas of t = 0 and t = T-1, each mapped to the training timestep nearest in log sigma (the
///    network was trained on integer t only). Neighbouring sigmas that land on the same timestep
///    are merged, so a large S on a small T can give fewer than S steps.
enum class Spacing { linspace, leading, trailing, karras };

[[nodiscard]] inline const char* spacing_name(Spacing s) {
  switch (s) {
    case Spacing::linspace: return "linspace";
    case Spacing::leading: return "leading";
    case Spacing::trailing: return "trailing";
    case Spacing::karras: return "karras";
  }
  return "?";
}

/// Spacing by name; throws std::invalid_argument naming the choices.
[[nodiscard]] inline Spacing parse_spacing(std::string_view name) {
  for (Spacing s : {Spacing::linspace, Spacing::leading, Spacing::trailing, Spacing::karras})
    if (name == spacing_name(s)) return s;
  detail::require(false, "timestep spacing", "unknown spacing '", std::string(name),
                  "' (choose linspace, leading, trailing or karras)");
  return Spacing::linspace;
}

/// The model timesteps of S sampling steps over a table's alpha_bar (double, size T), descending
/// and distinct: step k goes from timesteps[k] to timesteps[k + 1], the last one to x_0 (abar = 1).
/// Throws std::invalid_argument unless 1 <= S <= T, or if rho <= 0 (karras).
[[nodiscard]] inline std::vector<std::int32_t> plan_timesteps(const std::vector<double>& abar,
                                                              std::size_t S, Spacing spacing,
                                                              double rho = 7.0) {
  const std::size_t T = abar.size();
  detail::require(S >= 1 && S <= T, "sampler steps", "must be in [1, T = ", T, "], got ", S);
  std::vector<std::int32_t> ts;
  ts.reserve(S);
  auto push = [&](std::int64_t v) {
    v = std::clamp<std::int64_t>(v, 0, std::int64_t(T) - 1);
    if (ts.empty() || ts.back() != std::int32_t(v)) ts.push_back(std::int32_t(v));
  };
  switch (spacing) {
    case Spacing::linspace: {
      const auto up = spaced_timesteps(T, S);
      ts.assign(up.rbegin(), up.rend());
      break;
    }
    case Spacing::leading: {
      const std::size_t stride = T / S;
      for (std::size_t i = S; i-- > 0;) push(std::int64_t(i * stride));
      break;
    }
    case Spacing::trailing: {
      const double stride = double(T) / double(S);
      for (std::size_t i = 0; i < S; ++i)
        push(std::int64_t(std::nearbyint(double(T) - double(i) * stride)) - 1);
      break;
    }
    case Spacing::karras: {
      detail::require(rho > 0 && std::isfinite(rho), "karras rho", "must be > 0, got ", rho);
      std::vector<double> log_sigma(T);
      for (std::size_t t = 0; t < T; ++t) log_sigma[t] = 0.5 * std::log((1.0 - abar[t]) / abar[t]);
      const double smin = std::exp(log_sigma.front()), smax = std::exp(log_sigma.back());
      const double a = std::pow(smax, 1.0 / rho), b = std::pow(smin, 1.0 / rho);
      for (std::size_t i = 0; i < S; ++i) {
        const double u = S == 1 ? 0.0 : double(i) / double(S - 1);
        const double ls = rho * std::log(a + u * (b - a));
        // nearest timestep in log sigma (log_sigma increases with t)
        const auto it = std::lower_bound(log_sigma.begin(), log_sigma.end(), ls);
        std::size_t t = std::size_t(it - log_sigma.begin());
        if (t >= T) t = T - 1;
        if (t > 0 && std::abs(log_sigma[t - 1] - ls) <= std::abs(log_sigma[t] - ls)) --t;
        push(std::int64_t(t));
      }
      break;
    }
  }
  return ts;
}

}  // namespace ddpm::sampler
