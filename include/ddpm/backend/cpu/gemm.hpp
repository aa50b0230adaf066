// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/gemm.hpp — single-precision GEMM for the CPU backend: a packed, cache-blocked
// (BLIS-style) driver around a 6x16 AVX2/FMA register-tile microkernel, with a portable scalar
// fallback when the translation unit is compiled without AVX2/FMA.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/isa.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DDPM_CPU_GEMM_AVX2 1
#else
#define DDPM_CPU_GEMM_AVX2 0
#endif

namespace ddpm::detail::cpu {

/// C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X^T when trans_x. Single thread.
/// op(A) is M x K (A is M x K with row stride lda, or K x M when trans_a); op(B) is K x N (B is K x N
/// with row stride ldb, or N x K when trans_b). beta == 0 means C is not read (may hold NaN).
/// Every element of C is computed by the same sequence of operations whatever the matrix sizes
/// around it, so any split of C into blocks (see the parallel overload) gives bitwise the same C.
/// Packing memory: a grow-only thread_local buffer (allocates only when a call needs more).
inline void sgemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                  float alpha, const float* A, std::size_t lda, const float* B, std::size_t ldb,
                  float beta, float* C, std::size_t ldc);

/// The same, parallel over blocks of C inside ctx's arena (no split over K, so C does not depend on
/// the thread count and equals the single-thread result bitwise). Packing memory comes from
/// ctx.thread_scratch(gemm::scratch_slot, ...). Do not call from inside a parallel region.
inline void sgemm(Context& ctx, bool trans_a, bool trans_b, std::size_t M, std::size_t N,
                  std::size_t K, float alpha, const float* A, std::size_t lda, const float* B,
                  std::size_t ldb, float beta, float* C, std::size_t ldc);

namespace gemm {

inline constexpr std::size_t mr = 6;     ///< microkernel rows (register tile)
inline constexpr std::size_t nr = 16;    ///< microkernel columns (two 8-float vectors)
inline constexpr std::size_t kc = 256;   ///< depth of one packed block (B micro-panel 16 KiB: L1)
inline constexpr std::size_t mc = 144;   ///< rows of one packed A block (144 KiB: L2)
inline constexpr std::size_t nc = 2048;  ///< columns of one packed B block (2 MiB: L3)
/// Context::thread_scratch slot used for packing buffers by the GEMM (callers of the kernels below
/// must not hold another buffer in this slot across the call).
inline constexpr std::size_t scratch_slot = 3;

[[nodiscard]] constexpr std::size_t round_up(std::size_t x, std::size_t m) noexcept {
  return (x + m - 1) / m * m;
}

/// Depth of the K blocks for a product of depth K: K split into ceil(K/kc) near-equal blocks
/// (a multiple of 4 except the last), so no block is much shorter than the others.
[[nodiscard]] constexpr std::size_t k_block(std::size_t K) noexcept {
  if (K <= kc) return K;
  const std::size_t blocks = (K + kc - 1) / kc;
  return round_up((K + blocks - 1) / blocks, 4);
}

/// Floats of packing memory needed by gemm_blocked for these sizes.
[[nodiscard]] inline std::size_t workspace_size(std::size_t M, std::size_t N,
                                                std::size_t K) noexcept {
  const std::size_t k = k_block(K);
  return round_up(std::min(M, mc), mr) * k + round_up(std::min(N, nc), nr) * k + 64;
}

/// The microkernel: acc[i][j] = sum_p a[p*ak + i] * b[p*bk + j] (p = 0..k-1, in order, fused
/// multiply-adds into one accumulator per element), then C(i,j) = alpha*acc + beta*C(i,j) for the
/// full 6x16 tile (beta == 0: C not read). Packed panels have ak = mr, bk = nr; other strides read
/// operands in place. `b` and bk must keep every row of B 32-byte aligned.
inline void micro_kernel_strided(std::size_t k, const float* a, std::size_t ak, const float* b,
                                 std::size_t bk, float* c, std::size_t ldc, float alpha,
                                 float beta) noexcept {
#if DDPM_CPU_GEMM_AVX2
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define DDPM_GEMM_STEP(P)                                  \
  {                                                        \
    const __m256 b0 = _mm256_load_ps(b + (P) * bk);        \
    const __m256 b1 = _mm256_load_ps(b + (P) * bk + 8);    \
    __m256 av = _mm256_broadcast_ss(a + (P) * ak + 0);     \
    c00 = _mm256_fmadd_ps(av, b0, c00);                    \
    c01 = _mm256_fmadd_ps(av, b1, c01);                    \
    av = _mm256_broadcast_ss(a + (P) * ak + 1);            \
    c10 = _mm256_fmadd_ps(av, b0, c10);                    \
    c11 = _mm256_fmadd_ps(av, b1, c11);                    \
    av = _mm256_broadcast_ss(a + (P) * ak + 2);            \
    c20 = _mm256_fmadd_ps(av, b0, c20);                    \
    c21 = _mm256_fmadd_ps(av, b1, c21);                    \
    av = _mm256_broadcast_ss(a + (P) * ak + 3);            \
    c30 = _mm256_fmadd_ps(av, b0, c30);                    \
    c31 = _mm256_fmadd_ps(av, b1, c31);                    \
    av = _mm256_broadcast_ss(a + (P) * ak + 4);            \
    c40 = _mm256_fmadd_ps(av, b0, c40);                    \
    c41 = _mm256_fmadd_ps(av, b1, c41);                    \
    av = _mm256_broadcast_ss(a + (P) * ak + 5);            \
    c50 = _mm256_fmadd_ps(av, b0, c50);                    \
    c51 = _mm256_fmadd_ps(av, b1, c51);                    \
  }
  std::size_t p = 0;
  for (; p + 4 <= k; p += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 16 * bk), _MM_HINT_T0);
    DDPM_GEMM_STEP(0)
    DDPM_GEMM_STEP(1)
    DDPM_GEMM_STEP(2)
    DDPM_GEMM_STEP(3)
    a += 4 * ak;
    b += 4 * bk;
  }
  for (; p < k; ++p) {
    DDPM_GEMM_STEP(0)
    a += ak;
    b += bk;
  }
#undef DDPM_GEMM_STEP
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#define DDPM_GEMM_ST(R, X0, X1)                                   \
  _mm256_storeu_ps(c + (R) * ldc, _mm256_mul_ps(va, X0));         \
  _mm256_storeu_ps(c + (R) * ldc + 8, _mm256_mul_ps(va, X1));
    DDPM_GEMM_ST(0, c00, c01)
    DDPM_GEMM_ST(1, c10, c11)
    DDPM_GEMM_ST(2, c20, c21)
    DDPM_GEMM_ST(3, c30, c31)
    DDPM_GEMM_ST(4, c40, c41)
    DDPM_GEMM_ST(5, c50, c51)
#undef DDPM_GEMM_ST
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#define DDPM_GEMM_ST(R, X0, X1)                                                          \
  _mm256_storeu_ps(c + (R) * ldc, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + (R) * ldc),    \
                                                  _mm256_mul_ps(va, X0)));               \
  _mm256_storeu_ps(c + (R) * ldc + 8,                                                    \
                   _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + (R) * ldc + 8), _mm256_mul_ps(va, X1)));
    DDPM_GEMM_ST(0, c00, c01)
    DDPM_GEMM_ST(1, c10, c11)
    DDPM_GEMM_ST(2, c20, c21)
    DDPM_GEMM_ST(3, c30, c31)
    DDPM_GEMM_ST(4, c40, c41)
    DDPM_GEMM_ST(5, c50, c51)
#undef DDPM_GEMM_ST
  }
#else
  float acc[mr][nr] = {};
  for (std::size_t p = 0; p < k; ++p) {
    for (std::size_t i = 0; i < mr; ++i) {
      const float ai = a[p * ak + i];
      for (std::size_t j = 0; j < nr; ++j) acc[i][j] += ai * b[p * bk + j];
    }
  }
  for (std::size_t i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (std::size_t j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (std::size_t j = 0; j < nr; ++j) ci[j] = beta * ci[j] + alpha * acc[i][j];
    }
  }
#endif
}

/// micro_kernel_strided on packed panels (a: k x mr, b: k x nr).
inline void micro_kernel(std::size_t k, const float* a, const float* b, float* c, std::size_t ldc,
                         float alpha, float beta) noexcept {
  micro_kernel_strided(k, a, mr, b, nr, c, ldc, alpha, beta);
}

/// micro_kernel for a tile of m <= mr rows and n <= nr columns of C: runs the full tile on a local
/// copy, so the arithmetic per element is the same as for a full tile.
inline void micro_kernel_edge(std::size_t k, const float* a, const float* b, float* c,
                              std::size_t ldc, float alpha, float beta, std::size_t m,
                              std::size_t n) noexcept {
  alignas(64) float tmp[mr * nr];
  if (beta != 0.0f) {
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t j = 0; j < n; ++j) tmp[i * nr + j] = c[i * ldc + j];
      for (std::size_t j = n; j < nr; ++j) tmp[i * nr + j] = 0.0f;
    }
    for (std::size_t i = m; i < mr; ++i)
      for (std::size_t j = 0; j < nr; ++j) tmp[i * nr + j] = 0.0f;
  }
  micro_kernel(k, a, b, tmp, nr, alpha, beta);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = tmp[i * nr + j];
}

#if DDPM_CPU_HAVE_AVX512_KERNELS
/// AVX-512 register tile of R rows (1 <= R <= 12: the first R rows of ceil(R / 6) packed A panels)
/// by BP packed B panels (16 BP columns): R x BP accumulators of 16 floats. Every element of C gets
/// exactly micro_kernel's operations (acc = fma(a_p, b_p, acc) for p = 0..k-1 from 0, then
/// alpha acc or fma(beta, C, alpha acc)), so C is bitwise the AVX2 kernel's; rows of a partial
/// panel past R are neither computed nor stored. a: panel q at a + q k mr; b: panel r at
/// b + r k nr. MASKED: of the last B panel's 16 columns only those set in `cols` are read from and
/// stored to C (a partial panel: it is packed whole; its columns past n are computed, not stored).
template <int R, int BP, bool MASKED = false>
DDPM_TARGET_AVX512 inline void tile_avx512(std::size_t k, std::size_t kp, const float* a,
                                           const float* b, float* c, std::size_t ldc, float alpha,
                                           float beta, __mmask16 cols = 0xFFFF) noexcept {
  static_assert(R >= 1 && R <= 12 && BP >= 1 && BP <= 2);
  __m512 acc[R][BP];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < BP; ++j) acc[i][j] = _mm512_setzero_ps();
  const std::size_t as = kp * mr, bs = kp * nr;
  for (std::size_t p = 0; p < k; ++p) {
    __m512 bv[BP];
#pragma GCC unroll 2
    for (int j = 0; j < BP; ++j) bv[j] = _mm512_loadu_ps(b + j * bs + p * nr);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(a[(i / 6) * as + p * mr + i % 6]);
#pragma GCC unroll 2
      for (int j = 0; j < BP; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
  const auto store = [&](float* ci, int j, __m512 v) DDPM_TARGET_AVX512 {
    if (MASKED && j == BP - 1) {
      _mm512_mask_storeu_ps(ci, cols, v);
    } else {
      _mm512_storeu_ps(ci, v);
    }
  };
  if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int j = 0; j < BP; ++j) store(c + i * ldc + 16 * j, j, _mm512_mul_ps(va, acc[i][j]));
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int j = 0; j < BP; ++j) {
        float* ci = c + i * ldc + 16 * j;
        const __m512 old =
            MASKED && j == BP - 1 ? _mm512_maskz_loadu_ps(cols, ci) : _mm512_loadu_ps(ci);
        store(ci, j, _mm512_fmadd_ps(vb, old, _mm512_mul_ps(va, acc[i][j])));
      }
  }
}

/// macro_kernel with AVX-512 tiles of 12 x 32 (6 x 32, 12 x 16, 6 x 16 at the block's edges; the
/// m % 6 rows of a partial A panel by a tile of those rows; the n % 16 columns of a partial B panel
/// by masked loads and stores of C): bitwise the same C as the AVX2 macro_kernel. The packed
/// panels are kp >= k deep (panel q of A at pa + q kp mr, of B at pb + q kp nr); k are used.
DDPM_TARGET_AVX512 inline void macro_kernel_avx512(std::size_t m, std::size_t n, std::size_t k,
                                                   std::size_t kp, float alpha, const float* pa,
                                                   const float* pb, float beta, float* C,
                                                   std::size_t ldc) noexcept {
  static_assert(nr == 16, "the AVX-512 tiles hold one B panel per vector");
  const std::size_t mp = m / mr, np = n / nr;  // full panels
  const std::size_t mrem = m % mr, nrem = n % nr;
  // the tiles of column panels jp .. jp + BP - 1 (of the last one only the columns in `cols`)
  const auto column_panels = [&]<int BP, bool MASKED>(std::size_t jp, __mmask16 cols)
                                 DDPM_TARGET_AVX512 {
    const float* b = pb + jp * nr * kp;
    float* cc = C + jp * nr;
    std::size_t ip = 0;
    for (; ip + 2 <= mp; ip += 2)
      tile_avx512<12, BP, MASKED>(k, kp, pa + ip * mr * kp, b, cc + ip * mr * ldc, ldc, alpha, beta,
                                  cols);
    if (ip < mp)
      tile_avx512<6, BP, MASKED>(k, kp, pa + ip * mr * kp, b, cc + ip * mr * ldc, ldc, alpha, beta,
                                 cols);
    const float* ar = pa + mp * mr * kp;
    float* cr = cc + mp * mr * ldc;
    switch (mrem) {
      case 1: tile_avx512<1, BP, MASKED>(k, kp, ar, b, cr, ldc, alpha, beta, cols); break;
      case 2: tile_avx512<2, BP, MASKED>(k, kp, ar, b, cr, ldc, alpha, beta, cols); break;
      case 3: tile_avx512<3, BP, MASKED>(k, kp, ar, b, cr, ldc, alpha, beta, cols); break;
      case 4: tile_avx512<4, BP, MASKED>(k, kp, ar, b, cr, ldc, alpha, beta, cols); break;
      case 5: tile_avx512<5, BP, MASKED>(k, kp, ar, b, cr, ldc, alpha, beta, cols); break;
      default: break;
    }
  };
  std::size_t jp = 0;
  for (; jp + 2 <= np; jp += 2) column_panels.template operator()<2, false>(jp, 0xFFFF);
  if (jp < np) column_panels.template operator()<1, false>(jp, 0xFFFF);
  if (nrem != 0) column_panels.template operator()<1, true>(np, __mmask16((1u << nrem) - 1));
}
#endif

/// micro_kernel over every tile of C (m x n) from packed panels kp deep (A panel q at pa + q kp mr,
/// B panel q at pb + q kp nr), of which the first k rows are used; m and n multiples of mr and nr
/// (at the AVX-512 kernel level m may be any count: AVX-512 tiles, bitwise the same C).
inline void panels_kernel(std::size_t m, std::size_t n, std::size_t k, std::size_t kp,
                          const float* pa, const float* pb, float* C, std::size_t ldc, float alpha,
                          float beta) noexcept {
#if DDPM_CPU_HAVE_AVX512_KERNELS
  if (use_avx512()) {
    macro_kernel_avx512(m, n, k, kp, alpha, pa, pb, beta, C, ldc);
    return;
  }
#endif
  for (std::size_t j0 = 0; j0 < n; j0 += nr)
    for (std::size_t i0 = 0; i0 < m; i0 += mr)
      micro_kernel(k, pa + i0 * kp, pb + j0 * kp, C + i0 * ldc + j0, ldc, alpha, beta);
}

/// Runs the microkernel over one packed A block (ceil(m/mr) panels of k x mr) and one packed B
/// block (ceil(n/nr) panels of k x nr) into C (m x n, row stride ldc). At the AVX-512 kernel level
/// (isa.hpp) the AVX-512 tiles run instead, with bitwise the same result.
inline void macro_kernel(std::size_t m, std::size_t n, std::size_t k, float alpha,
                         const float* pa, const float* pb, float beta, float* C,
                         std::size_t ldc) noexcept {
#if DDPM_CPU_HAVE_AVX512_KERNELS
  if (use_avx512()) {
    macro_kernel_avx512(m, n, k, k, alpha, pa, pb, beta, C, ldc);
    return;
  }
#endif
  for (std::size_t jr = 0; jr < n; jr += nr) {
    const std::size_t nn = std::min(nr, n - jr);
    const float* b = pb + jr * k;
    for (std::size_t ir = 0; ir < m; ir += mr) {
      const std::size_t mm = std::min(mr, m - ir);
      float* c = C + ir * ldc + jr;
      if (mm == mr && nn == nr) {
        micro_kernel(k, pa + ir * k, b, c, ldc, alpha, beta);
      } else {
        micro_kernel_edge(k, pa + ir * k, b, c, ldc, alpha, beta, mm, nn);
      }
    }
  }
}

#if DDPM_CPU_GEMM_AVX2
/// In-register transpose of an 8x8 float block.
inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5,
                       __m256& r6, __m256& r7) noexcept {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

/// Packs one mr-row A panel from row pointers: dst[p*mr + r] = rows[r][p] for r < m (zero rows
/// for r >= m; rows[r] for r >= m is not read), p = 0..k-1.
inline void pack_a_panel_from_rows(const float* const* rows, std::size_t m, std::size_t k,
                                   float* dst) noexcept {
  std::size_t p = 0;
#if DDPM_CPU_GEMM_AVX2
  if (m == mr) {
    for (; p + 8 <= k; p += 8) {
      __m256 v0 = _mm256_loadu_ps(rows[0] + p), v1 = _mm256_loadu_ps(rows[1] + p);
      __m256 v2 = _mm256_loadu_ps(rows[2] + p), v3 = _mm256_loadu_ps(rows[3] + p);
      __m256 v4 = _mm256_loadu_ps(rows[4] + p), v5 = _mm256_loadu_ps(rows[5] + p);
      __m256 v6 = _mm256_setzero_ps(), v7 = _mm256_setzero_ps();
      transpose8(v0, v1, v2, v3, v4, v5, v6, v7);
      float* d = dst + p * mr;
      const __m256 vs[8] = {v0, v1, v2, v3, v4, v5, v6, v7};
      for (std::size_t q = 0; q < 8; ++q) {
        _mm_storeu_ps(d + q * mr, _mm256_castps256_ps128(vs[q]));
        _mm_storel_pi(reinterpret_cast<__m64*>(d + q * mr + 4), _mm256_extractf128_ps(vs[q], 1));
      }
    }
  }
#endif
  for (; p < k; ++p)
    for (std::size_t r = 0; r < mr; ++r) dst[p * mr + r] = r < m ? rows[r][p] : 0.0f;
}

/// Packs rows [i0, i0+m) x columns [k0, k0+k) of op(A) into ceil(m/mr) panels of k x mr
/// (zero rows past m).
inline void pack_a(bool trans, const float* A, std::size_t lda, std::size_t i0, std::size_t m,
                   std::size_t k0, std::size_t k, float* dst) noexcept {
  for (std::size_t ip = 0; ip < m; ip += mr) {
    const std::size_t mm = std::min(mr, m - ip);
    if (!trans) {
      const float* rows[mr];
      for (std::size_t r = 0; r < mr; ++r) rows[r] = A + (i0 + ip + std::min(r, mm - 1)) * lda + k0;
      pack_a_panel_from_rows(rows, mm, k, dst);
    } else {
      const float* src = A + k0 * lda + i0 + ip;
      for (std::size_t p = 0; p < k; ++p) {
        for (std::size_t r = 0; r < mm; ++r) dst[p * mr + r] = src[p * lda + r];
        for (std::size_t r = mm; r < mr; ++r) dst[p * mr + r] = 0.0f;
      }
    }
    dst += k * mr;
  }
}


/// Floats of a whole pre-packed op(A) (M x K): round_up(M, mr) * K.
[[nodiscard]] constexpr std::size_t prepacked_a_size(std::size_t M, std::size_t K) noexcept {
  return round_up(M, mr) * K;
}

/// Packs all of op(A) (M x K) for gemm_blocked: the block (K block starting at k0, depth k) lives
/// at dst + round_up(M, mr) * k0, and rows [i0, ..) of it at + i0 * k. Use prepacked_a_block.
inline void prepack_a(bool trans, const float* A, std::size_t lda, std::size_t M, std::size_t K,
                      float* dst) noexcept {
  const std::size_t kb = k_block(K), mp = round_up(M, mr);
  for (std::size_t k0 = 0; k0 < K; k0 += kb) pack_a(trans, A, lda, 0, M, k0, std::min(kb, K - k0), dst + mp * k0);
}

/// The packed block of rows [i0, ..) and K block [k0, k0 + k) of a prepack_a result.
[[nodiscard]] inline const float* prepacked_a_block(const float* packed, std::size_t M,
                                                    std::size_t i0, std::size_t k0,
                                                    std::size_t k) noexcept {
  return packed + round_up(M, mr) * k0 + i0 * k;
}

/// Packs one nr-wide B panel whose column jj is the contiguous run rows[jj][0..k) (jj < n; columns
/// n..nr-1 are zero): dst[p*nr + jj] = rows[jj][p].
inline void pack_b_panel_from_columns(const float* const* rows, std::size_t n, std::size_t k,
                                      float* dst) noexcept {
  std::size_t p = 0;
#if DDPM_CPU_GEMM_AVX2
  if (n == nr) {
    for (; p + 8 <= k; p += 8) {
      for (std::size_t h = 0; h < 2; ++h) {
        const float* const* r = rows + 8 * h;
        __m256 v0 = _mm256_loadu_ps(r[0] + p), v1 = _mm256_loadu_ps(r[1] + p);
        __m256 v2 = _mm256_loadu_ps(r[2] + p), v3 = _mm256_loadu_ps(r[3] + p);
        __m256 v4 = _mm256_loadu_ps(r[4] + p), v5 = _mm256_loadu_ps(r[5] + p);
        __m256 v6 = _mm256_loadu_ps(r[6] + p), v7 = _mm256_loadu_ps(r[7] + p);
        transpose8(v0, v1, v2, v3, v4, v5, v6, v7);
        float* d = dst + p * nr + 8 * h;
        _mm256_store_ps(d + 0 * nr, v0);
        _mm256_store_ps(d + 1 * nr, v1);
        _mm256_store_ps(d + 2 * nr, v2);
        _mm256_store_ps(d + 3 * nr, v3);
        _mm256_store_ps(d + 4 * nr, v4);
        _mm256_store_ps(d + 5 * nr, v5);
        _mm256_store_ps(d + 6 * nr, v6);
        _mm256_store_ps(d + 7 * nr, v7);
      }
    }
  }
#endif
  for (; p < k; ++p) {
    for (std::size_t j = 0; j < n; ++j) dst[p * nr + j] = rows[j][p];
    for (std::size_t j = n; j < nr; ++j) dst[p * nr + j] = 0.0f;
  }
}

/// Packs rows [k0, k0+k) x columns [j0, j0+n) of op(B) into ceil(n/nr) panels of k x nr
/// (zero columns past n).
inline void pack_b(bool trans, const float* B, std::size_t ldb, std::size_t k0, std::size_t k,
                   std::size_t j0, std::size_t n, float* dst) noexcept {
  if (!trans) {
    // Row by row (each source row is read once, sequentially), scattering into the panels.
    const std::size_t full = n / nr, rem = n % nr;
    for (std::size_t p = 0; p < k; ++p) {
      const float* src = B + (k0 + p) * ldb + j0;
      float* d = dst + p * nr;
      for (std::size_t jp = 0; jp < full; ++jp)
        std::memcpy(d + jp * k * nr, src + jp * nr, nr * sizeof(float));
      if (rem != 0) {
        float* e = d + full * k * nr;
        for (std::size_t j = 0; j < rem; ++j) e[j] = src[full * nr + j];
        for (std::size_t j = rem; j < nr; ++j) e[j] = 0.0f;
      }
    }
    return;
  }
  for (std::size_t jp = 0; jp < n; jp += nr) {
    const std::size_t nn = std::min(nr, n - jp);
    const float* rows[nr];
    for (std::size_t j = 0; j < nn; ++j) rows[j] = B + (j0 + jp + j) * ldb + k0;
    pack_b_panel_from_columns(rows, nn, k, dst);
    dst += k * nr;
  }
}

/// Multiplies C = alpha * A * B + beta * C where A (M x K) and B (K x N) are given by packing
/// callbacks: pa(i0, m, k0, k, dst) packs like pack_a into dst (or finds the block already packed
/// elsewhere) and returns the packed block; pb(k0, k, j0, n, dst) packs like pack_b into dst. `work`
/// holds workspace_size(M, N, K) floats, 64-byte aligned. Blocks of K are [0, kb), [kb, 2kb), ...
/// with kb = k_block(K), and are added to C in order; each element of C gets the same arithmetic whatever M and N are.
template <class PackA, class PackB>
void gemm_blocked(std::size_t M, std::size_t N, std::size_t K, float alpha, PackA&& pa, PackB&& pb,
                  float beta, float* C, std::size_t ldc, float* work) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const std::size_t kmax = k_block(K);
  float* abuf = work;
  float* bbuf = work + round_up(round_up(std::min(M, mc), mr) * kmax, 16);
  for (std::size_t jc = 0; jc < N; jc += nc) {
    const std::size_t n = std::min(nc, N - jc);
    for (std::size_t pc = 0; pc < K; pc += kmax) {
      const std::size_t k = std::min(kmax, K - pc);
      const float b_eff = pc == 0 ? beta : 1.0f;
      pb(pc, k, jc, n, bbuf);
      for (std::size_t ic = 0; ic < M; ic += mc) {
        const std::size_t m = std::min(mc, M - ic);
        const float* a = pa(ic, m, pc, k, abuf);
        macro_kernel(m, n, k, alpha, a, bbuf, b_eff, C + ic * ldc + jc, ldc);
      }
    }
  }
}

/// sgemm on ordinary strided matrices with caller-provided workspace (workspace_size floats).
inline void sgemm_serial(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                         float alpha, const float* A, std::size_t lda, const float* B,
                         std::size_t ldb, float beta, float* C, std::size_t ldc, float* work) {
  gemm_blocked(
      M, N, K, alpha,
      [&](std::size_t i0, std::size_t m, std::size_t k0, std::size_t k, float* dst) {
        pack_a(trans_a, A, lda, i0, m, k0, k, dst);
        return static_cast<const float*>(dst);
      },
      [&](std::size_t k0, std::size_t k, std::size_t j0, std::size_t n, float* dst) {
        pack_b(trans_b, B, ldb, k0, k, j0, n, dst);
      },
      beta, C, ldc, work);
}

/// gemm_blocked in parallel inside ctx: for each block (jc, pc) the B block is packed once into
/// shared scratch (parallel over panels), then tasks over (row block of mc, column chunk) pack their
/// A block into thread scratch and run the same microkernels as gemm_blocked, so C is bitwise the
/// same as gemm_blocked's whatever the thread count. Small products run on the calling thread.
/// Uses ctx.shared_scratch(scratch_slot) and ctx.thread_scratch(scratch_slot). The callbacks are
/// called concurrently. Do not call from inside a parallel region.
template <class PackA, class PackB>
void gemm_blocked_parallel(Context& ctx, std::size_t M, std::size_t N, std::size_t K, float alpha,
                           PackA&& pa, PackB&& pb, float beta, float* C, std::size_t ldc) {
  if (M == 0 || N == 0) return;
  const std::size_t flops = M * N * std::max<std::size_t>(K, 1);
  if (ctx.threads() == 1 || flops < (std::size_t{1} << 20) || K == 0 || alpha == 0.0f) {
    const std::size_t work_size = workspace_size(M, N, K);
    ctx.reserve_thread_scratch(scratch_slot, work_size);
    ctx.execute([&] {
      gemm_blocked(M, N, K, alpha, pa, pb, beta, C, ldc, ctx.thread_scratch(scratch_slot, work_size));
    });
    return;
  }
  const std::size_t kmax = k_block(K);
  float* bbuf = ctx.shared_scratch(scratch_slot, round_up(std::min(N, nc), nr) * kmax + 64);
  const std::size_t a_floats = round_up(std::min(M, mc), mr) * kmax;
  ctx.reserve_thread_scratch(scratch_slot, a_floats);
  ctx.execute([&] {
    for (std::size_t jc = 0; jc < N; jc += nc) {
      const std::size_t n = std::min(nc, N - jc);
      const std::size_t panels = (n + nr - 1) / nr;
      // Column chunks: whole panels, at least 4 panels, about 8 tasks per block when possible.
      const std::size_t mt = (M + mc - 1) / mc;
      const std::size_t chunk_panels =
          std::max<std::size_t>(4, (panels * mt + 7) / 8);
      const std::size_t nt = (panels + chunk_panels - 1) / chunk_panels;
      for (std::size_t pc = 0; pc < K; pc += kmax) {
        const std::size_t k = std::min(kmax, K - pc);
        const float b_eff = pc == 0 ? beta : 1.0f;
        tbb::parallel_for(
            tbb::blocked_range<std::size_t>(0, panels, 4),
            [&](const tbb::blocked_range<std::size_t>& r) {
              const std::size_t j0 = r.begin() * nr;
              const std::size_t j1 = std::min(n, r.end() * nr);
              pb(pc, k, jc + j0, j1 - j0, bbuf + j0 * k);
            },
            tbb::simple_partitioner());
        tbb::parallel_for(
            tbb::blocked_range<std::size_t>(0, mt * nt, 1),
            [&](const tbb::blocked_range<std::size_t>& r) {
              float* abuf = ctx.thread_scratch(scratch_slot, a_floats);
              for (std::size_t t = r.begin(); t != r.end(); ++t) {
                const std::size_t ic = (t / nt) * mc;
                const std::size_t m = std::min(mc, M - ic);
                const std::size_t p0 = (t % nt) * chunk_panels;
                const std::size_t j0 = p0 * nr;
                const std::size_t j1 = std::min(n, (p0 + chunk_panels) * nr);
                const float* a = pa(ic, m, pc, k, abuf);
                macro_kernel(m, j1 - j0, k, alpha, a, bbuf + j0 * k, b_eff,
                             C + ic * ldc + jc + j0, ldc);
              }
            },
            tbb::simple_partitioner());
      }
    }
  });
}

}  // namespace gemm

// ---------------------------------------------------------------- implementation

inline void sgemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                  float alpha, const float* A, std::size_t lda, const float* B, std::size_t ldb,
                  float beta, float* C, std::size_t ldc) {
  thread_local ScratchBuffer work;
  gemm::sgemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                     work.get(gemm::workspace_size(M, N, K)));
}

inline void sgemm(Context& ctx, bool trans_a, bool trans_b, std::size_t M, std::size_t N,
                  std::size_t K, float alpha, const float* A, std::size_t lda, const float* B,
                  std::size_t ldb, float beta, float* C, std::size_t ldc) {
  gemm::gemm_blocked_parallel(
      ctx, M, N, K, alpha,
      [&](std::size_t i0, std::size_t m, std::size_t k0, std::size_t k, float* dst) {
        gemm::pack_a(trans_a, A, lda, i0, m, k0, k, dst);
        return static_cast<const float*>(dst);
      },
      [&](std::size_t k0, std::size_t k, std::size_t j0, std::size_t n, float* dst) {
        gemm::pack_b(trans_b, B, ldb, k0, k, j0, n, dst);
      },
      beta, C, ldc);
}

}  // namespace ddpm::detail::cpu
