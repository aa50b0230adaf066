// SPDX-License-Identifier: MIT
// ddpm/diffusion/schedule/table.hpp — the coefficient tables of a schedule, computed once on the
// host in double and stored in T (float by default). Backends copy what they need to the device.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm {

/// All per-timestep coefficients, index t = 0..T-1 (Ho et al. 2020 notation, 0-based):
///   x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
///   q(x_{t-1} | x_t, x0) = N(coef1_t x0 + coef2_t x_t, posterior_variance_t)
template <std::floating_point T = float>
struct ScheduleTable {
  std::size_t steps = 0;
  // Double-precision masters (samplers that respace the schedule use these).
  std::vector<double> beta_f64, alpha_bar_f64;
  // Stored precision.
  std::vector<T> beta, alpha, alpha_bar, alpha_bar_prev;
  std::vector<T> sqrt_alpha_bar, sqrt_one_minus_alpha_bar;
  std::vector<T> sqrt_recip_alpha_bar, sqrt_recipm1_alpha_bar;
  std::vector<T> posterior_variance;      ///< beta_t (1 - abar_{t-1}) / (1 - abar_t); 0 at t = 0
  std::vector<T> posterior_log_variance;  ///< log of it, t = 0 entry replaced by t = 1's
  std::vector<T> posterior_mean_coef1;    ///< beta_t sqrt(abar_{t-1}) / (1 - abar_t)   (x0)
  std::vector<T> posterior_mean_coef2;    ///< (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) (x_t)
  std::vector<T> snr;                     ///< abar_t / (1 - abar_t)

  [[nodiscard]] std::size_t size() const noexcept { return steps; }
};

namespace detail {

template <class S>
void validate_schedule(const S& s) {
  if constexpr (requires { s.validate(); }) s.validate();
}

/// Betas (double) of any Schedule, validated: T >= 1 and every beta in (0, 1).
template <Schedule S>
std::vector<double> schedule_betas(const S& s) {
  validate_schedule(s);
  const std::size_t n = static_cast<std::size_t>(s.num_steps());
  require(n >= 1, "schedule: num_steps() (T)", "must be >= 1, got ", n);
  require(n <= 100000, "schedule: num_steps() (T)", "must be <= 100000, got ", n);
  std::vector<double> beta(n);
  if constexpr (requires(std::size_t t) { s.beta(t); }) {
    for (std::size_t t = 0; t < n; ++t) beta[t] = static_cast<double>(s.beta(t));
  } else {
    // alpha_bar only: beta_t = 1 - abar_t / abar_{t-1}, clipped at 0.999 like the cosine schedule.
    double prev = 1.0;
    for (std::size_t t = 0; t < n; ++t) {
      const double ab = static_cast<double>(s.alpha_bar(t));
      require(ab > 0.0 && ab <= 1.0, "schedule: alpha_bar(t)", "alpha_bar(", t, ") = ", ab,
              " is outside (0, 1]");
      require(ab < prev || (t == 0 && ab < 1.0), "schedule: alpha_bar(t)",
              "must be strictly decreasing and below 1, but alpha_bar(", t, ") = ", ab,
              " after ", prev);
      beta[t] = 1.0 - ab / prev;
      if (beta[t] > 0.999) beta[t] = 0.999;
      prev = ab;
    }
  }
  for (std::size_t t = 0; t < n; ++t)
    require(beta[t] > 0.0 && beta[t] < 1.0, "schedule: beta(t)", "beta(", t, ") = ", beta[t],
            " is outside (0, 1)");
  return beta;
}

}  // namespace detail

/// Builds the table of a schedule. Throws std::invalid_argument naming the problem for T = 0,
/// a beta outside (0, 1) (NaN included) or an alpha_bar that is not decreasing.
template <std::floating_point T = float, Schedule S>
ScheduleTable<T> make_table(const S& s) {
  const std::vector<double> beta = detail::schedule_betas(s);
  const std::size_t n = beta.size();
  ScheduleTable<T> tab;
  tab.steps = n;
  tab.beta_f64 = beta;
  tab.alpha_bar_f64.resize(n);
  auto resize_all = [n](auto&... v) { (v.resize(n), ...); };
  resize_all(tab.beta, tab.alpha, tab.alpha_bar, tab.alpha_bar_prev, tab.sqrt_alpha_bar,
             tab.sqrt_one_minus_alpha_bar, tab.sqrt_recip_alpha_bar, tab.sqrt_recipm1_alpha_bar,
             tab.posterior_variance, tab.posterior_log_variance, tab.posterior_mean_coef1,
             tab.posterior_mean_coef2, tab.snr);
  std::vector<double> pv(n);
  double abar = 1.0;
  for (std::size_t t = 0; t < n; ++t) {
    const double b = beta[t], a = 1.0 - b;
    const double prev = abar;
    abar *= a;
    tab.alpha_bar_f64[t] = abar;
    pv[t] = b * (1.0 - prev) / (1.0 - abar);
    tab.beta[t] = T(b);
    tab.alpha[t] = T(a);
    tab.alpha_bar[t] = T(abar);
    tab.alpha_bar_prev[t] = T(prev);
    tab.sqrt_alpha_bar[t] = T(std::sqrt(abar));
    tab.sqrt_one_minus_alpha_bar[t] = T(std::sqrt(1.0 - abar));
    tab.sqrt_recip_alpha_bar[t] = T(std::sqrt(1.0 / abar));
    tab.sqrt_recipm1_alpha_bar[t] = T(std::sqrt(1.0 / abar - 1.0));
    tab.posterior_variance[t] = T(pv[t]);
    tab.posterior_mean_coef1[t] = T(b * std::sqrt(prev) / (1.0 - abar));
    tab.posterior_mean_coef2[t] = T((1.0 - prev) * std::sqrt(a) / (1.0 - abar));
    tab.snr[t] = T(abar / (1.0 - abar));
  }
  for (std::size_t t = 0; t < n; ++t) {
    // log(0) at t = 0 is replaced by the t = 1 value (as in the DDPM code); T = 1 uses beta_0.
    const double v = t > 0 ? pv[t] : (n > 1 ? pv[1] : beta[0]);
    tab.posterior_log_variance[t] = T(std::log(v));
  }
  return tab;
}

}  // namespace ddpm
