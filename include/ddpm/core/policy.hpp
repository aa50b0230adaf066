// SPDX-License-Identifier: MIT
// ddpm/core/policy.hpp — how the backends call a prediction target and a loss: the one place that
// fills in what a policy may leave out (ddpm/core/concepts.hpp says what it must provide).
//
//  * Element functions written as templates over the value type (template <class V> V f(V...))
//    run as they are on float, double, SIMD batches and in CUDA kernels.
//  * Element functions written for float only run on a SIMD batch lane by lane (Lanes<V>, which
//    the CPU backend specialises for its xsimd batches), on double through float.
//  * A target without min_snr_weight(snr, gamma) gets the weight derived from its own x0():
//    min(snr, gamma) times (d x0 / d out)^2, i.e. min-SNR-gamma of the x0 error expressed in the
//    target's units (this gives the published weights for epsilon, x0 and v).
#pragma once

#include <cmath>
#include <concepts>
#include <type_traits>

#include "ddpm/config.hpp"

namespace ddpm::detail {

/// Lane-by-lane application of float functions to a SIMD value type V:
///   static V map(F f, V... args)   -> lane l of the result is f(args[l]...)
/// Backends with SIMD value types specialise it (backend/cpu/simd.hpp for xsimd batches).
template <class V>
struct Lanes;

/// True when the policy member can be called with V directly (a template over V, or V = float for
/// a float-only member).
template <class P, class V>
concept TargetTemplated = requires(V x, V e, V a, V s) {
  { P::template target<V>(x, e, a, s) } -> std::convertible_to<V>;
  { P::template x0<V>(x, e, a, s) } -> std::convertible_to<V>;
  { P::template eps<V>(x, e, a, s) } -> std::convertible_to<V>;
};
template <class L, class V>
concept LossTemplated = requires(const L& l, V d) {
  { l.template value<V>(d) } -> std::convertible_to<V>;
  { l.template grad<V>(d) } -> std::convertible_to<V>;
};

// The float-only fallbacks are lambdas over the policy's float members; the lane loop is Lanes<V>.
#define DDPM_POLICY_TARGET_FN(fn)                                                                  \
  template <class P, class V>                                                                      \
  DDPM_HOST_DEVICE V target_##fn(V x, V y, V a, V s) {                          \
    if constexpr (TargetTemplated<P, V>) {                                                         \
      return P::template fn<V>(x, y, a, s);                                                        \
    } else if constexpr (std::is_arithmetic_v<V>) {                                                \
      return V(P::fn(float(x), float(y), float(a), float(s)));                                     \
    } else {                                                                                       \
      return Lanes<V>::map(                                                                        \
          [](float x_, float y_, float a_, float s_) { return float(P::fn(x_, y_, a_, s_)); }, x,  \
          y, a, s);                                                                                \
    }                                                                                              \
  }
/// P::target(x0, eps, a, s): the training target.
DDPM_POLICY_TARGET_FN(target)
/// P::x0(xt, out, a, s): the clean image implied by the network output.
DDPM_POLICY_TARGET_FN(x0)
/// P::eps(xt, out, a, s): the noise implied by the network output.
DDPM_POLICY_TARGET_FN(eps)
#undef DDPM_POLICY_TARGET_FN

/// l.value(d): the element loss.
template <class L, class V>
DDPM_HOST_DEVICE V loss_value(const L& l, V d) {
  if constexpr (LossTemplated<L, V>) {
    return l.template value<V>(d);
  } else if constexpr (std::is_arithmetic_v<V>) {
    return V(l.value(float(d)));
  } else {
    return Lanes<V>::map([&l](float d_) { return float(l.value(d_)); }, d);
  }
}
/// l.grad(d): d value / d prediction.
template <class L, class V>
DDPM_HOST_DEVICE V loss_grad(const L& l, V d) {
  if constexpr (LossTemplated<L, V>) {
    return l.template grad<V>(d);
  } else if constexpr (std::is_arithmetic_v<V>) {
    return V(l.grad(float(d)));
  } else {
    return Lanes<V>::map([&l](float d_) { return float(l.grad(d_)); }, d);
  }
}

/// The min-SNR-gamma loss weight (Hang et al. 2023) of target P at signal-to-noise ratio snr > 0:
/// P::min_snr_weight(snr, gamma) when P has it, otherwise min(snr, gamma) c^2 with
/// c = d x0 / d out = x0(0, 1, a, s) - x0(0, 0, a, s) at a = sqrt(snr / (1 + snr)),
/// s = sqrt(1 / (1 + snr)) (exact when x0 is affine in the network output, as for every standard
/// parameterisation: epsilon gives min(snr, gamma) / snr, x0 min(snr, gamma), v min(snr, gamma) /
/// (snr + 1)).
template <class P>
double min_snr_weight(double snr, double gamma) {
  if constexpr (requires {
                  { P::min_snr_weight(snr, gamma) } -> std::convertible_to<double>;
                }) {
    return double(P::min_snr_weight(snr, gamma));
  } else {
    const double a = std::sqrt(snr / (1.0 + snr)), s = std::sqrt(1.0 / (1.0 + snr));
    const double c = target_x0<P, double>(0.0, 1.0, a, s) - target_x0<P, double>(0.0, 0.0, a, s);
    return (snr < gamma ? snr : gamma) * c * c;
  }
}

}  // namespace ddpm::detail
