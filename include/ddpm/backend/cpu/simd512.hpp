// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/simd512.hpp — the element kernels of the AVX-512 kernel level (isa.hpp):
// SiLU and its derivative on 16 lanes, and the GroupNorm(+SiLU) loops built on them.
//
// Each function computes, lane by lane, exactly the operations of the AVX2 code in simd.hpp as
// GCC compiles it, so the results are bitwise the same at both levels. Two places need care:
// GCC contracts `1 + y * 2^n` in sigmoid (exp's last product feeding the denominator) and
// `acc + g * xhat` in the GroupNorm sums into fused multiply-adds, so those are spelled as fmas
// here. The AVX2 approximate reciprocal (12 bits, refined by one Newton step) has no 16-lane
// equivalent with the same bits (rcp14 is more precise), so it runs on the two 8-lane halves.
// The tests compare both levels bitwise (tests/backend/cpu/test_ops.cpp); a compiler that
// contracted differently would show there.
#pragma once

#include <cstddef>

#include "ddpm/backend/cpu/isa.hpp"
#include "ddpm/backend/cpu/simd.hpp"

#if DDPM_CPU_HAVE_AVX512_KERNELS
#include <immintrin.h>

namespace ddpm::detail::cpu::avx512 {

#define DDPM_AVX512_INLINE DDPM_TARGET_AVX512 __attribute__((always_inline)) inline
// The all-lanes-masked forms: GCC 12's plain forms pass an undefined vector and warn "may be used
// uninitialized" under -Wall once inlined (a false positive, GCC bug 105593).
#define DDPM_M512_MAX(a, b) _mm512_mask_max_ps((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_M512_MIN(a, b) _mm512_mask_min_ps((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_M512_LOW(v) \
  _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), __mmask8(0xF), _mm512_castps_pd(v), 0))
#define DDPM_M512_HIGH(v) \
  _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), __mmask8(0xF), _mm512_castps_pd(v), 1))

// (results through references: returning __m512 from a function changes the ABI warning-wise in
// AVX2 translation units)

/// sigmoid(x) = 1 / (1 + e^-x), per lane as simd.hpp's sigmoid(exp(-x)) compiled by GCC.
DDPM_AVX512_INLINE void sigmoid(__m512 x, __m512& out) {
  // -x: flip the sign bit (xsimd's neg)
  __m512 nx = _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(std::int32_t(0x80000000u))));
  nx = DDPM_M512_MIN(DDPM_M512_MAX(nx, _mm512_set1_ps(-87.3365447504f)), _mm512_set1_ps(88.3762626647949f));
  const __m512 magic = _mm512_set1_ps(12582912.0f + 127.0f);
  const __m512 t = _mm512_fmadd_ps(nx, _mm512_set1_ps(1.44269504088896341f), magic);
  const __m512 fx = _mm512_sub_ps(t, magic);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), nx);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i ti = _mm512_castps_si512(t);
  const __m512 pow2 = _mm512_castsi512_ps(_mm512_mask_slli_epi32(ti, __mmask16(0xFFFF), ti, 23));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 d = _mm512_fmadd_ps(y, pow2, one);  // 1 + e^-x (contracted, as GCC does at AVX2)
  // the AVX2 reciprocal on each half, then sigmoid_reciprocal's Newton step and exact 1/1
  const __m256 lo = _mm256_rcp_ps(DDPM_M512_LOW(d));
  const __m256 hi = _mm256_rcp_ps(DDPM_M512_HIGH(d));
  const __m512d dd = _mm512_castps_pd(d);  // (any value: both halves are replaced)
  const __m512d with_lo = _mm512_mask_insertf64x4(dd, __mmask8(0xFF), dd, _mm256_castps_pd(lo), 0);
  const __m512 rc = _mm512_castpd_ps(
      _mm512_mask_insertf64x4(with_lo, __mmask8(0xFF), with_lo, _mm256_castps_pd(hi), 1));
  const __m512 newton = _mm512_mul_ps(rc, _mm512_fnmadd_ps(d, rc, _mm512_set1_ps(2.0f)));
  out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, one, _CMP_EQ_OQ), newton, one);
}

/// silu(x) = x sigmoid(x)
DDPM_AVX512_INLINE void silu(__m512 x, __m512& out) {
  __m512 s;
  sigmoid(x, s);
  out = _mm512_mul_ps(x, s);
}

/// silu'(z) = s (1 + z (1 - s))
DDPM_AVX512_INLINE void silu_grad(__m512 z, __m512& out) {
  __m512 s;
  sigmoid(z, s);
  const __m512 one = _mm512_set1_ps(1.0f);
  out = _mm512_mul_ps(s, _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one));
}

/// y[i] = f(fma(x[i] - mu, scale, shift)), f = SiLU or identity, for the whole 16-lane chunks of
/// [0, n); returns the count done (a multiple of 16): the caller finishes the rest at 8 lanes.
DDPM_TARGET_AVX512 inline std::size_t group_norm_map(const float* x, float* y, std::size_t n,
                                                     float mu, float scale, float shift, bool act) {
  const __m512 muv = _mm512_set1_ps(mu), sc = _mm512_set1_ps(scale), bt = _mm512_set1_ps(shift);
  std::size_t i = 0;
  if (act) {
    for (; i + 16 <= n; i += 16) {
      const __m512 z = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), muv), sc, bt);
      __m512 o;
      silu(z, o);
      _mm512_storeu_ps(y + i, o);
    }
  } else {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), muv), sc, bt));
  }
  return i;
}

/// The pass over x and dy of group_norm_backward with SiLU, for the 16-lane chunks of [b, e):
/// xhat = (x - mu) rstd, g = dy silu'(gamma xhat + beta) (stored at gbuf when not null);
/// sum_g += g and sum_gx += g xhat in the AVX2 order: per chunk the low 8 lanes, then the high 8,
/// into the 8-lane accumulators. Returns where it stopped (b plus a multiple of 16).
DDPM_TARGET_AVX512 inline std::size_t group_norm_silu_grad(const float* x, const float* dy,
                                                          float* gbuf, std::size_t b, std::size_t e,
                                                          float mu, float rstd, float gamma,
                                                          float beta, __m256& sum_g,
                                                          __m256& sum_gx) {
  const __m512 muv = _mm512_set1_ps(mu), rv = _mm512_set1_ps(rstd), gm = _mm512_set1_ps(gamma),
               bt = _mm512_set1_ps(beta);
  __m256 sg = sum_g, sgx = sum_gx;
  std::size_t i = b;
  for (; i + 16 <= e; i += 16) {
    const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), muv), rv);
    __m512 sd;
    silu_grad(_mm512_fmadd_ps(gm, xhat, bt), sd);
    const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(dy + i), sd);
    if (gbuf) _mm512_storeu_ps(gbuf + i, g);
    const __m256 g_lo = DDPM_M512_LOW(g);
    const __m256 g_hi = DDPM_M512_HIGH(g);
    const __m256 x_lo = DDPM_M512_LOW(xhat);
    const __m256 x_hi = DDPM_M512_HIGH(xhat);
    sg = _mm256_add_ps(_mm256_add_ps(sg, g_lo), g_hi);
    sgx = _mm256_fmadd_ps(g_hi, x_hi, _mm256_fmadd_ps(g_lo, x_lo, sgx));
  }
  sum_g = sg;
  sum_gx = sgx;
  return i;
}

#undef DDPM_AVX512_INLINE
#undef DDPM_M512_MAX
#undef DDPM_M512_MIN
#undef DDPM_M512_LOW
#undef DDPM_M512_HIGH

}  // namespace ddpm::detail::cpu::avx512

#endif  // DDPM_CPU_HAVE_AVX512_KERNELS
