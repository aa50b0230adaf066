// SPDX-License-Identifier: MIT
// ddpm/diffusion/target/epsilon.hpp — the network predicts the noise (Ho et al. 2020).
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::target {

/// out = eps.  x0 = (x_t - s eps) / a,  with a = sqrt(abar_t), s = sqrt(1 - abar_t).
struct Epsilon {
  static constexpr std::string_view name = "epsilon";
  template <class V>
  DDPM_HOST_DEVICE static V target(V /*x0*/, V eps, V /*a*/, V /*s*/) { return eps; }
  template <class V>
  DDPM_HOST_DEVICE static V x0(V xt, V out, V a, V s) { return (xt - s * out) / a; }
  template <class V>
  DDPM_HOST_DEVICE static V eps(V /*xt*/, V out, V /*a*/, V /*s*/) { return out; }
  /// min-SNR-gamma loss weight (Hang et al. 2023) for this target: min(snr, gamma) / snr.
  static double min_snr_weight(double snr, double gamma) {
    return (snr < gamma ? snr : gamma) / snr;
  }
};
static_assert(Target<Epsilon>);

}  // namespace ddpm::target
