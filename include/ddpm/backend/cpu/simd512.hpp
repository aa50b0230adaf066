// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/simd512.hpp — the element kernels of the AVX-512 kernel level (isa.hpp):
// SiLU and its derivative on 16 lanes, the GroupNorm(+SiLU) loops built on them, and dropout's
// Philox keep masks.
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
#include <cstdint>

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

// ------------------------------------------------------------------ dropout
// The all-lanes-masked forms, for GCC bug 105593 as above.
#define DDPM_I512_UNPACKLO32(a, b) _mm512_mask_unpacklo_epi32((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_I512_UNPACKHI32(a, b) _mm512_mask_unpackhi_epi32((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_I512_UNPACKLO64(a, b) _mm512_mask_unpacklo_epi64((a), __mmask8(0xFF), (a), (b))
#define DDPM_I512_UNPACKHI64(a, b) _mm512_mask_unpackhi_epi64((a), __mmask8(0xFF), (a), (b))
#define DDPM_I512_LANES(a, b, imm) \
  _mm512_mask_shuffle_i32x4((a), __mmask16(0xFFFF), (a), (b), (imm))
#define DDPM_I512_SHUFFLE32(a, imm) _mm512_mask_shuffle_epi32((a), __mmask16(0xFFFF), (a), (imm))
#define DDPM_I512_MULU(a, b) _mm512_mask_mul_epu32((a), __mmask8(0xFF), (a), (b))
#define DDPM_I512_SRL64(a, n) _mm512_mask_srli_epi64((a), __mmask8(0xFF), (a), (n))
#define DDPM_I512_SRL32(a, n) _mm512_mask_srli_epi32((a), __mmask16(0xFFFF), (a), (n))
#define DDPM_I512_HIGH256(a, b) _mm512_mask_inserti64x4((a), __mmask8(0xFF), (a), (b), 1)

/// Philox4x32-10 of the 16 consecutive blocks 8 g .. 8 g + 15 of a stream (the groups g and g + 1
/// of simd.hpp's philox_keep_masks), for G such pairs at once (independent chains), as dropout keep
/// masks in element order: keep[4 j + q] covers elements 64 j + 16 q .. 64 j + 16 q + 15 of the
/// pairs' 64 j elements. The integer arithmetic is the AVX2 kernel's, so the masks are identical.
template <int G>
DDPM_AVX512_INLINE void philox_keep_masks(const Rng& rng, std::uint64_t stream, std::uint64_t g0,
                                          std::uint32_t threshold, __mmask16 keep[4 * G]) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  __m512i c0[G], c1[G], c2[G], c3[G];
  for (int j = 0; j < G; ++j) {
    // lanes 0..7: blocks of group g0 + 2 j, lanes 8..15: of group g0 + 2 j + 1 (each 8 g: the
    // lane index never carries out of the low word)
    const std::uint64_t lo = (g0 + 2 * std::uint64_t(j)) * 8, hi = lo + 8;
    const auto word = [](std::uint64_t v) { return std::int32_t(std::uint32_t(v)); };
    const __m512i low = DDPM_I512_HIGH256(_mm512_set1_epi32(word(lo)), _mm256_set1_epi32(word(hi)));
    const __m512i high =
        DDPM_I512_HIGH256(_mm512_set1_epi32(word(lo >> 32)), _mm256_set1_epi32(word(hi >> 32)));
    c0[j] = _mm512_add_epi32(low, lane);
    c1[j] = high;
    c2[j] = _mm512_set1_epi32(std::int32_t(std::uint32_t(stream)));
    c3[j] = _mm512_set1_epi32(std::int32_t(std::uint32_t(stream >> 32)));
  }
  __m512i k0 = _mm512_set1_epi32(std::int32_t(std::uint32_t(rng.seed)));
  __m512i k1 = _mm512_set1_epi32(std::int32_t(std::uint32_t(rng.seed >> 32)));
  const __m512i m0 = _mm512_set1_epi32(std::int32_t(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(std::int32_t(0xCD9E8D57u));
  const __m512i w0 = _mm512_set1_epi32(std::int32_t(0x9E3779B9u));
  const __m512i w1 = _mm512_set1_epi32(std::int32_t(0xBB67AE85u));
  constexpr __mmask16 odd = 0xAAAA;
#pragma GCC unroll 10
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 = _mm512_add_epi32(k0, w0);
      k1 = _mm512_add_epi32(k1, w1);
    }
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) {
      // 32x32 -> 64-bit products of the even lanes, then of the odd lanes (shifted down)
      const __m512i e0 = DDPM_I512_MULU(c0[j], m0);
      const __m512i o0 = DDPM_I512_MULU(DDPM_I512_SRL64(c0[j], 32), m0);
      const __m512i e1 = DDPM_I512_MULU(c2[j], m1);
      const __m512i o1 = DDPM_I512_MULU(DDPM_I512_SRL64(c2[j], 32), m1);
      const __m512i hi0 = _mm512_mask_blend_epi32(odd, DDPM_I512_SHUFFLE32(e0, _MM_PERM_DDBB), o0);
      const __m512i lo0 = _mm512_mask_blend_epi32(odd, e0, DDPM_I512_SHUFFLE32(o0, _MM_PERM_CCAA));
      const __m512i hi1 = _mm512_mask_blend_epi32(odd, DDPM_I512_SHUFFLE32(e1, _MM_PERM_DDBB), o1);
      const __m512i lo1 = _mm512_mask_blend_epi32(odd, e1, DDPM_I512_SHUFFLE32(o1, _MM_PERM_CCAA));
      c0[j] = _mm512_xor_si512(_mm512_xor_si512(hi1, c1[j]), k0);
      c1[j] = lo1;
      c2[j] = _mm512_xor_si512(_mm512_xor_si512(hi0, c3[j]), k1);
      c3[j] = lo0;
    }
  }
  // word w of block l -> element 4 l + w: a 4x4 transpose inside each 128-bit lane (lane k of
  // u_b = block 4 k + b), then a 4x4 transpose of the lanes; keep <=> (word >> 8) >= threshold.
  const __m512i tm1 = _mm512_set1_epi32(std::int32_t(threshold) - 1);
  for (int j = 0; j < G; ++j) {
    const __m512i t0 = DDPM_I512_UNPACKLO32(c0[j], c1[j]), t1 = DDPM_I512_UNPACKHI32(c0[j], c1[j]);
    const __m512i t2 = DDPM_I512_UNPACKLO32(c2[j], c3[j]), t3 = DDPM_I512_UNPACKHI32(c2[j], c3[j]);
    const __m512i u0 = DDPM_I512_UNPACKLO64(t0, t2), u1 = DDPM_I512_UNPACKHI64(t0, t2);
    const __m512i u2 = DDPM_I512_UNPACKLO64(t1, t3), u3 = DDPM_I512_UNPACKHI64(t1, t3);
    const __m512i a = DDPM_I512_LANES(u0, u1, 0x44), b = DDPM_I512_LANES(u2, u3, 0x44);
    const __m512i c = DDPM_I512_LANES(u0, u1, 0xEE), d = DDPM_I512_LANES(u2, u3, 0xEE);
    const __m512i v[4] = {DDPM_I512_LANES(a, b, 0x88), DDPM_I512_LANES(a, b, 0xDD),
                          DDPM_I512_LANES(c, d, 0x88), DDPM_I512_LANES(c, d, 0xDD)};
    for (int q = 0; q < 4; ++q)
      keep[4 * j + q] = _mm512_cmpgt_epi32_mask(DDPM_I512_SRL32(v[q], 8), tm1);
  }
}

/// dropout_span (simd.hpp) for the whole 64-element pairs of groups of [0, count): y (+)= keep ?
/// x s : 0 with the AVX2 kernel's keep bits and arithmetic (dropped lanes +0, as its and-mask).
/// Returns the count done (a multiple of 64); the caller does the rest from group g0 + done / 32.
DDPM_TARGET_AVX512 inline std::size_t dropout_head(const Rng& rng, std::uint64_t stream,
                                                  std::uint64_t g0, std::uint32_t threshold,
                                                  float s, const float* x, float* y,
                                                  std::size_t count, bool acc) {
  const __m512 vs = _mm512_set1_ps(s);
  auto apply = [&](const __mmask16* keep, int nvec, const float* xp, float* yp) DDPM_TARGET_AVX512 {
    for (int q = 0; q < nvec; ++q) {
      __m512 v = _mm512_maskz_mul_ps(keep[q], _mm512_loadu_ps(xp + 16 * q), vs);
      if (acc) v = _mm512_add_ps(_mm512_loadu_ps(yp + 16 * q), v);
      _mm512_storeu_ps(yp + 16 * q, v);
    }
  };
  std::size_t i = 0;
  std::uint64_t g = g0;
  for (; i + 128 <= count; i += 128, g += 4) {
    __mmask16 keep[8];
    philox_keep_masks<2>(rng, stream, g, threshold, keep);
    apply(keep, 8, x + i, y + i);
  }
  for (; i + 64 <= count; i += 64, g += 2) {
    __mmask16 keep[4];
    philox_keep_masks<1>(rng, stream, g, threshold, keep);
    apply(keep, 4, x + i, y + i);
  }
  return i;
}

#undef DDPM_I512_UNPACKLO32
#undef DDPM_I512_UNPACKHI32
#undef DDPM_I512_UNPACKLO64
#undef DDPM_I512_UNPACKHI64
#undef DDPM_I512_LANES
#undef DDPM_I512_SHUFFLE32
#undef DDPM_I512_MULU
#undef DDPM_I512_SRL64
#undef DDPM_I512_SRL32
#undef DDPM_I512_HIGH256
#undef DDPM_AVX512_INLINE
#undef DDPM_M512_MAX
#undef DDPM_M512_MIN
#undef DDPM_M512_LOW
#undef DDPM_M512_HIGH

}  // namespace ddpm::detail::cpu::avx512

#endif  // DDPM_CPU_HAVE_AVX512_KERNELS
