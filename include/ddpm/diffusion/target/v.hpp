// SPDX-License-Identifier: MIT
// ddpm/diffusion/target/v.hpp — v-prediction (Salimans & Ho 2022): v = a eps - s x0.
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::target {

/// out = v = a eps - s x0.  Since a^2 + s^2 = 1:  x0 = a x_t - s v,  eps = s x_t + a v.
struct V {
  static constexpr std::string_view name = "v";
  template <class W>
  DDPM_HOST_DEVICE static W target(W x0_, W eps_, W a, W s) { return a * eps_ - s * x0_; }
  template <class W>
  DDPM_HOST_DEVICE static W x0(W xt, W out, W a, W s) { return a * xt - s * out; }
  template <class W>
  DDPM_HOST_DEVICE static W eps(W xt, W out, W a, W s) { return s * xt + a * out; }
  /// min-SNR-gamma weight: min(snr, gamma) / (snr + 1).
  static double min_snr_weight(double snr, double gamma) {
    return (snr < gamma ? snr : gamma) / (snr + 1.0);
  }
};
static_assert(Target<V>);

}  // namespace ddpm::target
