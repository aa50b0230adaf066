// SPDX-License-Identifier: MIT
// ddpm/core/targets.hpp — the built-in prediction targets (target::Epsilon, X0, V): element
// functions of the network output that the diffusion layer and every backend (SIMD loops, CUDA
// kernels) call, so they live below both. ddpm/diffusion/target/*.hpp include this header.
#pragma once

#include <string_view>

#include "ddpm/config.hpp"
#include "ddpm/core/concepts.hpp"

// ---- the network predicts the noise (Ho et al. 2020)
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

// ---- the network predicts the clean image
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

// ---- v-prediction (Salimans & Ho 2022): v = a eps - s x0
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
