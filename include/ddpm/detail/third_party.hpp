// SPDX-License-Identifier: MIT
// ddpm/detail/third_party.hpp — version shims for the third-party libraries, in one place.
// Debian 12 ships xsimd 8.1; upstream renamed hadd -> reduce_add in 9.0.0.
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

}  // namespace ddpm::detail
