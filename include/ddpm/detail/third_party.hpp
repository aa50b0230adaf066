// SPDX-License-Identifier: MIT
// ddpm/detail/third_party.hpp — version shims for the third-party libraries, in one place.
// Debian 12 ships xsimd 8.1; upstream renamed hadd -> reduce_add in 9.0.0 and made bitwise_cast
// take the element type instead of the batch type.
#pragma once

#include <xsimd/xsimd.hpp>

namespace ddpm::detail {

/// Horizontal sum of the lanes of an xsimd batch (xsimd::hadd before 9.0, reduce_add after).
template <class B>
inline auto reduce_add(const B& b) {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(b);
#else
  return xsimd::hadd(b);
#endif
}

/// The bits of batch b reinterpreted as a batch of To (xsimd 8: bitwise_cast<batch<To, A>>,
/// later versions: bitwise_cast<To>).
template <class To, class From, class A>
inline xsimd::batch<To, A> bitwise_cast(const xsimd::batch<From, A>& b) {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::bitwise_cast<To>(b);
#else
  return xsimd::bitwise_cast<xsimd::batch<To, A>>(b);
#endif
}

}  // namespace ddpm::detail
