// SPDX-License-Identifier: MIT
// ddpm/diffusion/target/x0.hpp — the network predicts the clean image.
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"

namespace ddpm::target {

/// out = x0.  eps = (x_t - a x0) / s.
struct X0 {
  static constexpr std::string_view name = "x0";
  template <class V>
  DDPM_HOST_DEVICE static V target(V x0_, V /*eps*/, V /*a*/, V /*s*/) { return x0_; }
  template <class V>
  DDPM_HOST_DEVICE static V x0(V /*xt*/, V out, V /*a*/, V /*s*/) { return out; }
  template <class V>
  DDPM_HOST_DEVICE static V eps(V xt, V out, V a, V s) { return (xt - a * out) / s; }
  /// min-SNR-gamma weight: min(snr, gamma).
  static double min_snr_weight(double snr, double gamma) { return snr < gamma ? snr : gamma; }
};
static_assert(Target<X0>);

}  // namespace ddpm::target
