// SPDX-License-Identifier: MIT
// ddpm/core/concepts.hpp — what a schedule, a prediction target and a loss must provide.
// Everything the library requires of a policy is listed here; what it fills in for optional
// members (min_snr_weight, SIMD versions of float-only element functions) is in
// ddpm/core/policy.hpp. docs/extending.md lists both, with complete programs (docs/extending/)
// that the test suite builds against the installed package with types that have exactly these
// members.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/tags.hpp"

namespace ddpm {

/// A variance schedule over T = num_steps() timesteps t = 0..T-1 (t = 0 is the least noisy).
/// It provides either beta(t) (the per-step variance) or alpha_bar(t) (the cumulative product
/// prod_{s<=t} (1 - beta(s))), or both; the library turns it into a ScheduleTable once, in double,
/// on the host (see diffusion/schedule/table.hpp). Schedules never run on a device.
template <class S>
concept Schedule =
    std::copyable<S> &&
    requires(const S& s) {
      { s.num_steps() } -> std::convertible_to<std::size_t>;
    } &&
    (requires(const S& s, std::size_t t) {
      { s.beta(t) } -> std::convertible_to<double>;
    } || requires(const S& s, std::size_t t) {
      { s.alpha_bar(t) } -> std::convertible_to<double>;
    });

/// What the network predicts. With a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t),
/// x_t = a x0 + s eps. All members are static element functions, written either for float or as
/// templates over the value type (then they run on SIMD batches directly; float-only ones run lane
/// by lane, see core/policy.hpp). For the CUDA backend they must be DDPM_HOST_DEVICE.
///   target(x0, eps, a, s)   the training target
///   x0(xt, out, a, s)       the clean image implied by the network output
///   eps(xt, out, a, s)      the noise implied by the network output
///   name                    a short name stored in checkpoints
/// Optional: static double min_snr_weight(snr, gamma) (else derived from x0(), core/policy.hpp).
template <class P>
concept Target = std::copyable<P> && requires(float x, float e, float a, float s) {
  { P::name } -> std::convertible_to<std::string_view>;
  { P::target(x, e, a, s) } -> std::convertible_to<float>;
  { P::x0(x, e, a, s) } -> std::convertible_to<float>;
  { P::eps(x, e, a, s) } -> std::convertible_to<float>;
};

/// An element loss of d = prediction - target, mean-reduced by the backend.
///   value(d)   the loss of one element
///   grad(d)    d value / d prediction
///   name()     a short name stored in checkpoints
/// value and grad may be float-only or templates over the value type, as for targets. Optional:
/// validate() (throws on bad parameters) and describe() (parameters, stored in checkpoints).
template <class L>
concept Loss = std::copyable<L> && requires(const L& l, float d) {
  { l.value(d) } -> std::convertible_to<float>;
  { l.grad(d) } -> std::convertible_to<float>;
  { l.name() } -> std::convertible_to<std::string_view>;
};

}  // namespace ddpm
