// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/winograd.hpp — Winograd F(4x4, 3x3) convolution for 3x3, stride-1, pad-1
// layers (Lavin & Gray 2016): 36 multiplies per 4x4 output tile and channel pair instead of 144.
// Fused per block of tiles: input transform -> 36 GEMMs (the packed 6x16 microkernel) -> output
// transform, so the transformed data of a block stays in cache.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/gemm.hpp"

#if DDPM_CPU_GEMM_AVX2
#include <immintrin.h>
#endif

namespace ddpm::detail::cpu::winograd {

// F(4x4, 3x3), interpolation points 0, +-1, +-2, infinity:
//   Y = A^T [ (G g G^T) . (B^T d B) ] A
//   B^T = [4  0 -5  0 1 0]   G = [ 1/4     0     0]   A^T = [1 1  1 1  1 0]
//         [0 -4 -4  1 1 0]       [-1/6  -1/6  -1/6]         [0 1 -1 2 -2 0]
//         [0  4 -4 -1 1 0]       [-1/6   1/6  -1/6]         [0 1  1 4  4 0]
//         [0 -2 -1  2 1 0]       [1/24  1/12   1/6]         [0 1 -1 8 -8 1]
//         [0  2 -1 -2 1 0]       [1/24 -1/12   1/6]
//         [0  4  0 -5 0 1]       [ 0      0      1]
inline constexpr std::size_t m = 4;       ///< output tile
inline constexpr std::size_t alpha = 6;   ///< input tile (m + 3 - 1)
inline constexpr std::size_t points = 36;  ///< alpha^2 transform points (= independent GEMMs)

/// A (c_out x c_in) 3x3 stride-1 pad-1 convolution problem as Winograd sees it. When
/// `transposed_weights`, the weights are those of the adjoint convolution: kernel (ci, co) is
/// w[co_w = ci][ci_w = co] flipped in both spatial axes, with w of shape (c_in, c_out, 3, 3) —
/// i.e. backward-data of a (c_out -> c_in) convolution.
struct Problem {
  std::size_t n, c_in, h, w, c_out;
  bool transposed_weights = false;
  [[nodiscard]] std::size_t tiles_h() const noexcept { return (h + m - 1) / m; }
  [[nodiscard]] std::size_t tiles_w() const noexcept { return (w + m - 1) / m; }
  [[nodiscard]] std::size_t tiles() const noexcept { return n * tiles_h() * tiles_w(); }
};

/// Rows of the transformed-weight matrices (c_out rounded up to the microkernel's 6 rows).
[[nodiscard]] inline std::size_t c_out_padded(const Problem& p) noexcept {
  return gemm::round_up(p.c_out, gemm::mr);
}

/// Floats of transformed weights: points x c_out_padded x c_in.
[[nodiscard]] inline std::size_t weights_size(const Problem& p) noexcept {
  return points * c_out_padded(p) * p.c_in;
}

/// Transforms the weights of output channels [co0, co1) into u, laid out per point xi as the
/// GEMM's packed A operand: u[xi][co / 6][ci][co % 6] (rows past c_out are zero). co0 and co1 are
/// multiples of 6 (or co1 = c_out_padded).
inline void transform_weights(const Problem& p, const float* w, float* u, std::size_t co0,
                              std::size_t co1) noexcept {
  constexpr std::size_t mr = gemm::mr;
  const std::size_t cop = c_out_padded(p), ci_n = p.c_in, panels = cop / mr;
  for (std::size_t panel = co0 / mr; panel < co1 / mr; ++panel) {
    for (std::size_t ci = 0; ci < ci_n; ++ci) {
      // g[i*3 + j][lane]: the 3x3 kernel of output channel panel*6 + lane (lanes 6, 7 unused)
      alignas(32) float g[9][8] = {};
      for (std::size_t lane = 0; lane < mr; ++lane) {
        const std::size_t co = panel * mr + lane;
        if (co >= p.c_out) continue;
        if (!p.transposed_weights) {
          const float* src = w + (co * ci_n + ci) * 9;
          for (std::size_t q = 0; q < 9; ++q) g[q][lane] = src[q];
        } else {
          const float* src = w + (ci * p.c_out + co) * 9;
          for (std::size_t q = 0; q < 9; ++q) g[q][lane] = src[8 - q];
        }
      }
      float* dst = u + (panel * ci_n + ci) * mr;
      const std::size_t xi_stride = panels * ci_n * mr;
#if DDPM_CPU_GEMM_AVX2
      const __m256 c4 = _mm256_set1_ps(0.25f), c6 = _mm256_set1_ps(1.0f / 6.0f),
                   c12 = _mm256_set1_ps(1.0f / 12.0f), c24 = _mm256_set1_ps(1.0f / 24.0f);
      // rows of G applied to a column (v0, v1, v2)
      auto apply_g = [&](__m256 v0, __m256 v1, __m256 v2, __m256* r) {
        const __m256 s02 = _mm256_add_ps(v0, v2);
        const __m256 e = _mm256_fmadd_ps(v0, c24, _mm256_mul_ps(v2, c6));
        r[0] = _mm256_mul_ps(v0, c4);
        r[1] = _mm256_mul_ps(_mm256_add_ps(s02, v1), _mm256_sub_ps(_mm256_setzero_ps(), c6));
        r[2] = _mm256_mul_ps(_mm256_sub_ps(s02, v1), _mm256_sub_ps(_mm256_setzero_ps(), c6));
        r[3] = _mm256_fmadd_ps(v1, c12, e);
        r[4] = _mm256_fnmadd_ps(v1, c12, e);
        r[5] = v2;
      };
      __m256 t[3][6];  // t[j][a] = (G g)[a][j]
      for (std::size_t j = 0; j < 3; ++j)
        apply_g(_mm256_load_ps(g[j]), _mm256_load_ps(g[3 + j]), _mm256_load_ps(g[6 + j]), t[j]);
      for (std::size_t a = 0; a < 6; ++a) {
        __m256 r[6];
        apply_g(t[0][a], t[1][a], t[2][a], r);
        for (std::size_t b = 0; b < 6; ++b) {
          float* o = dst + (a * 6 + b) * xi_stride;
          _mm_storeu_ps(o, _mm256_castps256_ps128(r[b]));
          _mm_storel_pi(reinterpret_cast<__m64*>(o + 4), _mm256_extractf128_ps(r[b], 1));
        }
      }
#else
      for (std::size_t lane = 0; lane < mr; ++lane) {
        float t[6][3];  // G g
        for (std::size_t j = 0; j < 3; ++j) {
          const float g0 = g[j][lane], g1 = g[3 + j][lane], g2 = g[6 + j][lane];
          const float e = g0 * (1.0f / 24.0f) + g2 * (1.0f / 6.0f);
          t[0][j] = g0 * 0.25f;
          t[1][j] = ((g0 + g2) + g1) * (-1.0f / 6.0f);
          t[2][j] = ((g0 + g2) - g1) * (-1.0f / 6.0f);
          t[3][j] = g1 * (1.0f / 12.0f) + e;
          t[4][j] = e - g1 * (1.0f / 12.0f);
          t[5][j] = g2;
        }
        for (std::size_t a = 0; a < 6; ++a) {
          const float g0 = t[a][0], g1 = t[a][1], g2 = t[a][2];
          const float e = g0 * (1.0f / 24.0f) + g2 * (1.0f / 6.0f);
          const float r[6] = {g0 * 0.25f,
                              ((g0 + g2) + g1) * (-1.0f / 6.0f),
                              ((g0 + g2) - g1) * (-1.0f / 6.0f),
                              g1 * (1.0f / 12.0f) + e,
                              e - g1 * (1.0f / 12.0f),
                              g2};
          for (std::size_t b = 0; b < 6; ++b) dst[(a * 6 + b) * xi_stride + lane] = r[b];
        }
      }
#endif
    }
  }
}

/// Largest number of tiles in one block.
inline constexpr std::size_t max_block = 128;

/// Tiles per block and the block's scratch needs. The block size depends on the shape only.
struct Blocking {
  std::size_t tiles_per_block;  // multiple of 16 (the microkernel's columns)
  std::size_t blocks;
};

[[nodiscard]] inline Blocking blocking(const Problem& p) noexcept {
  // Keep V (36 x c_in x T) + M (36 x c_out x T) around 1 MiB, 16 <= T <= 128.
  const std::size_t per_tile = points * (p.c_in + c_out_padded(p)) * sizeof(float);
  std::size_t t = (std::size_t{1} << 20) / std::max<std::size_t>(per_tile, 1);
  t = std::clamp<std::size_t>(t / 16 * 16, 16, max_block);
  const std::size_t total = p.tiles();
  t = std::min(t, gemm::round_up(total, 16));
  return Blocking{t, (total + t - 1) / t};
}

/// Distance between the planes of consecutive transform points: padded by one cache line so the
/// 36 planes do not all map to the same L1 sets (the unpadded sizes are often powers of two).
[[nodiscard]] constexpr std::size_t point_stride(std::size_t floats) noexcept {
  return floats + 16;
}

/// A row length of >= n floats, a multiple of `multiple`, whose byte size is not a multiple of
/// 128 (rows of a power-of-two length read down a column would fall into a few L1 sets).
[[nodiscard]] constexpr std::size_t unaliased_ld(std::size_t n, std::size_t multiple) noexcept {
  std::size_t ld = gemm::round_up(n, multiple);
  while ((ld * sizeof(float)) % 128 == 0) ld += multiple;
  return ld;
}

/// Thread scratch floats of one block: V then M.
[[nodiscard]] inline std::size_t block_scratch(const Problem& p, const Blocking& b) noexcept {
  return points * (point_stride(p.c_in * b.tiles_per_block) +
                   point_stride(c_out_padded(p) * b.tiles_per_block)) +
         64;
}

/// Per-tile source of the 6x6 input patch: row r, column c at ptr[r * stride + c].
struct PatchSrc {
  const float* ptr;
  std::size_t stride;
};

/// One band row: dst[c] = src[c - shift] for shift <= c < w + shift, 0 for the other c < len
/// (len >= w + shift). Inline vector copies: the rows are short (7 to 64 floats) and many, so a
/// memcpy call per row costs more than the copy.
inline void band_row(float* dst, const float* src, std::size_t w, std::size_t shift,
                     std::size_t len) noexcept {
  for (std::size_t c = 0; c < shift; ++c) dst[c] = 0.0f;
  float* d = dst + shift;
#if DDPM_CPU_GEMM_AVX2
  if (w >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= w; i += 8) _mm256_storeu_ps(d + i, _mm256_loadu_ps(src + i));
    // the last w % 8 floats: one vector ending at the row's end (it rewrites a few floats)
    if (i < w) _mm256_storeu_ps(d + w - 8, _mm256_loadu_ps(src + w - 8));
  } else {
    for (std::size_t i = 0; i < w; ++i) d[i] = src[i];
  }
#else
  std::memcpy(d, src, w * sizeof(float));
#endif
  for (std::size_t c = w + shift; c < len; ++c) dst[c] = 0.0f;
}

/// dst[0 .. n) = 0 by inline vector stores: the band rows outside the image are short (10 to 66
/// floats) and many, so a memset call per row costs more than the stores.
inline void zero_row(float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
#if DDPM_CPU_GEMM_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
#endif
  for (; i < n; ++i) dst[i] = 0.0f;
}

/// Asks for the cache lines of rows first .. first + rows - 1 of an h x w plane (those inside it)
/// to be loaded (a hint: no effect on results). The band copies read short runs of rows from planes
/// a channel apart, mostly from main memory; fetching the next channel's rows while the current
/// ones are copied hides that latency.
inline void prefetch_rows(const float* plane, std::ptrdiff_t first, std::size_t rows,
                          std::size_t h, std::size_t w) noexcept {
  const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(first, 0);
  const std::ptrdiff_t hi = std::min(first + std::ptrdiff_t(rows), std::ptrdiff_t(h));
  if (hi <= lo) return;
  const char* b = reinterpret_cast<const char*>(plane + std::size_t(lo) * w);
  const std::size_t bytes = std::size_t(hi - lo) * w * sizeof(float);
  for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(b + off, 0, 3);
}

/// Input transform of 8 tiles of one channel: v[xi * xi_stride + lane] = (B^T d_lane B)[xi].
inline void input_transform8(const PatchSrc* src, float* v, std::size_t xi_stride) noexcept {
#if DDPM_CPU_GEMM_AVX2
  // d[r][c]: element (r, c) of the 8 patches, one tile per lane.
  __m256 d[6][6];
  for (std::size_t r = 0; r < 6; ++r) {
    __m256 q[4];
    for (std::size_t k = 0; k < 4; ++k) {
      const float* lo = src[k].ptr + r * src[k].stride;
      const float* hi = src[k + 4].ptr + r * src[k + 4].stride;
      q[k] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
    }
    // 4x4 transpose inside each 128-bit lane: q[k] = tile k / k+4 columns 0..3
    const __m256 t0 = _mm256_unpacklo_ps(q[0], q[1]), t1 = _mm256_unpackhi_ps(q[0], q[1]);
    const __m256 t2 = _mm256_unpacklo_ps(q[2], q[3]), t3 = _mm256_unpackhi_ps(q[2], q[3]);
    d[r][0] = _mm256_shuffle_ps(t0, t2, 0x44);
    d[r][1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    d[r][2] = _mm256_shuffle_ps(t1, t3, 0x44);
    d[r][3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    // columns 4, 5: pairs (c4, c5) of each tile
    __m128 p[8];
    for (std::size_t k = 0; k < 8; ++k)
      p[k] = _mm_castpd_ps(
          _mm_load_sd(reinterpret_cast<const double*>(src[k].ptr + r * src[k].stride + 4)));
    const __m256 a = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_movelh_ps(p[0], p[1])),
                                          _mm_movelh_ps(p[4], p[5]), 1);
    const __m256 b = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_movelh_ps(p[2], p[3])),
                                          _mm_movelh_ps(p[6], p[7]), 1);
    d[r][4] = _mm256_shuffle_ps(a, b, 0x88);
    d[r][5] = _mm256_shuffle_ps(a, b, 0xDD);
  }
  const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f),
               two = _mm256_set1_ps(2.0f);
  // rows: e = B^T d
  __m256 e[6][6];
  for (std::size_t c = 0; c < 6; ++c) {
    const __m256 d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c],
                 d5 = d[5][c];
    e[0][c] = _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4));
    e[1][c] = _mm256_fnmadd_ps(four, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4));
    e[2][c] = _mm256_fmadd_ps(four, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3));
    const __m256 s42 = _mm256_sub_ps(d4, d2), s31 = _mm256_sub_ps(d3, d1);
    e[3][c] = _mm256_fmadd_ps(two, s31, s42);
    e[4][c] = _mm256_fnmadd_ps(two, s31, s42);
    e[5][c] = _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5));
  }
  // columns: v = e B
  for (std::size_t a = 0; a < 6; ++a) {
    const __m256 d0 = e[a][0], d1 = e[a][1], d2 = e[a][2], d3 = e[a][3], d4 = e[a][4],
                 d5 = e[a][5];
    float* o = v + a * 6 * xi_stride;
    _mm256_store_ps(o + 0 * xi_stride, _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4)));
    _mm256_store_ps(o + 1 * xi_stride,
                    _mm256_fnmadd_ps(four, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4)));
    _mm256_store_ps(o + 2 * xi_stride,
                    _mm256_fmadd_ps(four, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3)));
    const __m256 s42 = _mm256_sub_ps(d4, d2), s31 = _mm256_sub_ps(d3, d1);
    _mm256_store_ps(o + 3 * xi_stride, _mm256_fmadd_ps(two, s31, s42));
    _mm256_store_ps(o + 4 * xi_stride, _mm256_fnmadd_ps(two, s31, s42));
    _mm256_store_ps(o + 5 * xi_stride, _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5)));
  }
#else
  for (std::size_t k = 0; k < 8; ++k) {
    float d[6][6], e[6][6];
    for (std::size_t r = 0; r < 6; ++r)
      for (std::size_t c = 0; c < 6; ++c) d[r][c] = src[k].ptr[r * src[k].stride + c];
    for (std::size_t c = 0; c < 6; ++c) {
      const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c],
                  d5 = d[5][c];
      e[0][c] = 4.0f * d0 - 5.0f * d2 + d4;
      e[1][c] = (d3 + d4) - 4.0f * (d1 + d2);
      e[2][c] = (d4 - d3) + 4.0f * (d1 - d2);
      e[3][c] = (d4 - d2) + 2.0f * (d3 - d1);
      e[4][c] = (d4 - d2) - 2.0f * (d3 - d1);
      e[5][c] = 4.0f * d1 - 5.0f * d3 + d5;
    }
    for (std::size_t a = 0; a < 6; ++a) {
      const float d0 = e[a][0], d1 = e[a][1], d2 = e[a][2], d3 = e[a][3], d4 = e[a][4],
                  d5 = e[a][5];
      float* o = v + a * 6 * xi_stride + k;
      o[0 * xi_stride] = 4.0f * d0 - 5.0f * d2 + d4;
      o[1 * xi_stride] = (d3 + d4) - 4.0f * (d1 + d2);
      o[2 * xi_stride] = (d4 - d3) + 4.0f * (d1 - d2);
      o[3 * xi_stride] = (d4 - d2) + 2.0f * (d3 - d1);
      o[4 * xi_stride] = (d4 - d2) - 2.0f * (d3 - d1);
      o[5 * xi_stride] = 4.0f * d1 - 5.0f * d3 + d5;
    }
  }
#endif
}

#if DDPM_CPU_HAVE_AVX512_KERNELS
// The all-lanes-masked forms of these intrinsics: GCC 12's plain forms pass _mm512_undefined_ps()
// and warn "used uninitialized" under -Wall once inlined (a false positive, GCC bug 105593).
#define DDPM_U512_UNPACKLO(a, b) _mm512_mask_unpacklo_ps((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_U512_UNPACKHI(a, b) _mm512_mask_unpackhi_ps((a), __mmask16(0xFFFF), (a), (b))
#define DDPM_U512_SHUFFLE(a, b, imm) _mm512_mask_shuffle_ps((a), __mmask16(0xFFFF), (a), (b), (imm))
#define DDPM_U512_LANE(v, j) _mm512_mask_extractf32x4_ps(_mm_setzero_ps(), __mmask8(0xF), (v), (j))
#define DDPM_AVX512_INLINE DDPM_TARGET_AVX512 __attribute__((always_inline)) inline
/// out = [a | b | c | d], one 128-bit lane each (through a reference: a function returning __m512
/// changes the ABI warning-wise in AVX2 translation units).
DDPM_AVX512_INLINE void four_lanes(__m512& out, __m128 a, __m128 b, __m128 c, __m128 d) noexcept {
  out = _mm512_insertf32x4(
      _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps128_ps512(a), b, 1), c, 2), d, 3);
}
/// d[c] = element (r, c), c < 4, of 16 sources, lane l from src[l]: 4-float loads and a 4x4
/// transpose inside each 128-bit lane (lane 4 j + q of d[c] comes from src[4 j + q]).
DDPM_AVX512_INLINE void columns0to3(const PatchSrc* src, std::size_t r, __m512* d) noexcept {
  __m512 q[4];
  for (std::size_t k = 0; k < 4; ++k) {
    const auto row = [&](std::size_t t) { return _mm_loadu_ps(src[t].ptr + r * src[t].stride); };
    four_lanes(q[k], row(k), row(k + 4), row(k + 8), row(k + 12));
  }
  const __m512 t0 = DDPM_U512_UNPACKLO(q[0], q[1]), t1 = DDPM_U512_UNPACKHI(q[0], q[1]);
  const __m512 t2 = DDPM_U512_UNPACKLO(q[2], q[3]), t3 = DDPM_U512_UNPACKHI(q[2], q[3]);
  d[0] = DDPM_U512_SHUFFLE(t0, t2, 0x44);
  d[1] = DDPM_U512_SHUFFLE(t0, t2, 0xEE);
  d[2] = DDPM_U512_SHUFFLE(t1, t3, 0x44);
  d[3] = DDPM_U512_SHUFFLE(t1, t3, 0xEE);
}
#undef DDPM_AVX512_INLINE

/// input_transform8 for 16 tiles (one per lane of an AVX-512 vector), at the AVX-512 kernel level:
/// per lane exactly input_transform8's operations, so V is bitwise the same. v: one full B panel
/// row per transform point (16 floats at v + xi * xi_stride).
DDPM_TARGET_AVX512 inline void input_transform16(const PatchSrc* src, float* v,
                                                 std::size_t xi_stride) noexcept {
  __m512 d[6][6];
  for (std::size_t r = 0; r < 6; ++r) {
    columns0to3(src, r, d[r]);
    __m128 pr[16];
    for (std::size_t k = 0; k < 16; ++k)
      pr[k] = _mm_castpd_ps(
          _mm_load_sd(reinterpret_cast<const double*>(src[k].ptr + r * src[k].stride + 4)));
    __m512 a, b;
    four_lanes(a, _mm_movelh_ps(pr[0], pr[1]), _mm_movelh_ps(pr[4], pr[5]),
               _mm_movelh_ps(pr[8], pr[9]), _mm_movelh_ps(pr[12], pr[13]));
    four_lanes(b, _mm_movelh_ps(pr[2], pr[3]), _mm_movelh_ps(pr[6], pr[7]),
               _mm_movelh_ps(pr[10], pr[11]), _mm_movelh_ps(pr[14], pr[15]));
    d[r][4] = DDPM_U512_SHUFFLE(a, b, 0x88);
    d[r][5] = DDPM_U512_SHUFFLE(a, b, 0xDD);
  }
  const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
  __m512 e[6][6];
  for (std::size_t c = 0; c < 6; ++c) {
    const __m512 d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c], d5 = d[5][c];
    e[0][c] = _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4));
    e[1][c] = _mm512_fnmadd_ps(four, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));
    e[2][c] = _mm512_fmadd_ps(four, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));
    const __m512 s42 = _mm512_sub_ps(d4, d2), s31 = _mm512_sub_ps(d3, d1);
    e[3][c] = _mm512_fmadd_ps(two, s31, s42);
    e[4][c] = _mm512_fnmadd_ps(two, s31, s42);
    e[5][c] = _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5));
  }
  for (std::size_t a = 0; a < 6; ++a) {
    const __m512 d0 = e[a][0], d1 = e[a][1], d2 = e[a][2], d3 = e[a][3], d4 = e[a][4], d5 = e[a][5];
    float* o = v + a * 6 * xi_stride;
    _mm512_storeu_ps(o + 0 * xi_stride, _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4)));
    _mm512_storeu_ps(o + 1 * xi_stride,
                     _mm512_fnmadd_ps(four, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4)));
    _mm512_storeu_ps(o + 2 * xi_stride,
                     _mm512_fmadd_ps(four, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3)));
    const __m512 s42 = _mm512_sub_ps(d4, d2), s31 = _mm512_sub_ps(d3, d1);
    _mm512_storeu_ps(o + 3 * xi_stride, _mm512_fmadd_ps(two, s31, s42));
    _mm512_storeu_ps(o + 4 * xi_stride, _mm512_fnmadd_ps(two, s31, s42));
    _mm512_storeu_ps(o + 5 * xi_stride, _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5)));
  }
}

/// output_transform8 for 16 tiles, at the AVX-512 kernel level (per tile exactly its operations).
DDPM_TARGET_AVX512 inline void output_transform16(const float* mv, std::size_t xi_stride, float bias,
                                                  bool accumulate, float* const* out,
                                                  std::size_t out_stride) noexcept {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
  __m512 t[4][6];
  for (std::size_t b = 0; b < 6; ++b) {
    const __m512 m0 = _mm512_loadu_ps(mv + (0 * 6 + b) * xi_stride);
    const __m512 m1 = _mm512_loadu_ps(mv + (1 * 6 + b) * xi_stride);
    const __m512 m2 = _mm512_loadu_ps(mv + (2 * 6 + b) * xi_stride);
    const __m512 m3 = _mm512_loadu_ps(mv + (3 * 6 + b) * xi_stride);
    const __m512 m4 = _mm512_loadu_ps(mv + (4 * 6 + b) * xi_stride);
    const __m512 m5 = _mm512_loadu_ps(mv + (5 * 6 + b) * xi_stride);
    const __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
    const __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
    t[0][b] = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);
    t[1][b] = _mm512_fmadd_ps(two, d34, d12);
    t[2][b] = _mm512_fmadd_ps(four, s34, s12);
    t[3][b] = _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), m5);
  }
  const __m512 vb = _mm512_set1_ps(bias);
  for (std::size_t i = 0; i < 4; ++i) {
    const __m512 m0 = t[i][0], m1 = t[i][1], m2 = t[i][2], m3 = t[i][3], m4 = t[i][4], m5 = t[i][5];
    const __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
    const __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
    const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, s12), s34), vb);
    const __m512 y1 = _mm512_add_ps(_mm512_fmadd_ps(two, d34, d12), vb);
    const __m512 y2 = _mm512_add_ps(_mm512_fmadd_ps(four, s34, s12), vb);
    const __m512 y3 = _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), m5), vb);
    // transpose inside 128-bit lanes: q[k] = [tile k | tile k+4 | tile k+8 | tile k+12], j0..3
    const __m512 u0 = DDPM_U512_UNPACKLO(y0, y1), u1 = DDPM_U512_UNPACKHI(y0, y1);
    const __m512 u2 = DDPM_U512_UNPACKLO(y2, y3), u3 = DDPM_U512_UNPACKHI(y2, y3);
    const __m512 q[4] = {DDPM_U512_SHUFFLE(u0, u2, 0x44), DDPM_U512_SHUFFLE(u0, u2, 0xEE),
                         DDPM_U512_SHUFFLE(u1, u3, 0x44), DDPM_U512_SHUFFLE(u1, u3, 0xEE)};
    for (std::size_t k = 0; k < 4; ++k) {
      const __m128 part[4] = {DDPM_U512_LANE(q[k], 0), DDPM_U512_LANE(q[k], 1),
                              DDPM_U512_LANE(q[k], 2), DDPM_U512_LANE(q[k], 3)};
      for (std::size_t j = 0; j < 4; ++j) {
        float* o = out[k + 4 * j] + i * out_stride;
        _mm_storeu_ps(o, accumulate ? _mm_add_ps(_mm_loadu_ps(o), part[j]) : part[j]);
      }
    }
  }
}
#endif

/// Output transform of 8 tiles of one channel: tile k's 4x4 result (A^T M_k A) + bias, added to
/// what `out[k]` holds when accumulate, stored at out[k].ptr[i * out[k].stride + j], i, j < 4.
/// mv[xi * xi_stride + k] = M_k[xi].
inline void output_transform8(const float* mv, std::size_t xi_stride, float bias, bool accumulate,
                              float* const* out, std::size_t out_stride) noexcept {
#if DDPM_CPU_GEMM_AVX2
  const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f),
               eight = _mm256_set1_ps(8.0f);
  __m256 t[4][6];
  for (std::size_t b = 0; b < 6; ++b) {
    const __m256 m0 = _mm256_load_ps(mv + (0 * 6 + b) * xi_stride);
    const __m256 m1 = _mm256_load_ps(mv + (1 * 6 + b) * xi_stride);
    const __m256 m2 = _mm256_load_ps(mv + (2 * 6 + b) * xi_stride);
    const __m256 m3 = _mm256_load_ps(mv + (3 * 6 + b) * xi_stride);
    const __m256 m4 = _mm256_load_ps(mv + (4 * 6 + b) * xi_stride);
    const __m256 m5 = _mm256_load_ps(mv + (5 * 6 + b) * xi_stride);
    const __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
    const __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
    t[0][b] = _mm256_add_ps(_mm256_add_ps(m0, s12), s34);
    t[1][b] = _mm256_fmadd_ps(two, d34, d12);
    t[2][b] = _mm256_fmadd_ps(four, s34, s12);
    t[3][b] = _mm256_add_ps(_mm256_fmadd_ps(eight, d34, d12), m5);
  }
  const __m256 vb = _mm256_set1_ps(bias);
  for (std::size_t i = 0; i < 4; ++i) {
    const __m256 m0 = t[i][0], m1 = t[i][1], m2 = t[i][2], m3 = t[i][3], m4 = t[i][4],
                 m5 = t[i][5];
    const __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
    const __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
    __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(m0, s12), s34), vb);
    __m256 y1 = _mm256_add_ps(_mm256_fmadd_ps(two, d34, d12), vb);
    __m256 y2 = _mm256_add_ps(_mm256_fmadd_ps(four, s34, s12), vb);
    __m256 y3 = _mm256_add_ps(_mm256_add_ps(_mm256_fmadd_ps(eight, d34, d12), m5), vb);
    // transpose inside 128-bit lanes: q[k] = [tile k: j0..3 | tile k+4: j0..3]
    const __m256 u0 = _mm256_unpacklo_ps(y0, y1), u1 = _mm256_unpackhi_ps(y0, y1);
    const __m256 u2 = _mm256_unpacklo_ps(y2, y3), u3 = _mm256_unpackhi_ps(y2, y3);
    const __m256 q[4] = {_mm256_shuffle_ps(u0, u2, 0x44), _mm256_shuffle_ps(u0, u2, 0xEE),
                         _mm256_shuffle_ps(u1, u3, 0x44), _mm256_shuffle_ps(u1, u3, 0xEE)};
    for (std::size_t k = 0; k < 4; ++k) {
      float* lo = out[k] + i * out_stride;
      float* hi = out[k + 4] + i * out_stride;
      __m128 vlo = _mm256_castps256_ps128(q[k]), vhi = _mm256_extractf128_ps(q[k], 1);
      if (accumulate) {
        vlo = _mm_add_ps(_mm_loadu_ps(lo), vlo);
        vhi = _mm_add_ps(_mm_loadu_ps(hi), vhi);
      }
      _mm_storeu_ps(lo, vlo);
      _mm_storeu_ps(hi, vhi);
    }
  }
#else
  for (std::size_t k = 0; k < 8; ++k) {
    float mm[6][6], t[4][6];
    for (std::size_t a = 0; a < 6; ++a)
      for (std::size_t b = 0; b < 6; ++b) mm[a][b] = mv[(a * 6 + b) * xi_stride + k];
    for (std::size_t b = 0; b < 6; ++b) {
      const float s12 = mm[1][b] + mm[2][b], d12 = mm[1][b] - mm[2][b];
      const float s34 = mm[3][b] + mm[4][b], d34 = mm[3][b] - mm[4][b];
      t[0][b] = (mm[0][b] + s12) + s34;
      t[1][b] = 2.0f * d34 + d12;
      t[2][b] = 4.0f * s34 + s12;
      t[3][b] = (8.0f * d34 + d12) + mm[5][b];
    }
    for (std::size_t i = 0; i < 4; ++i) {
      const float s12 = t[i][1] + t[i][2], d12 = t[i][1] - t[i][2];
      const float s34 = t[i][3] + t[i][4], d34 = t[i][3] - t[i][4];
      const float y[4] = {((t[i][0] + s12) + s34) + bias, (2.0f * d34 + d12) + bias,
                          (4.0f * s34 + s12) + bias, ((8.0f * d34 + d12) + t[i][5]) + bias};
      float* o = out[k] + i * out_stride;
      for (std::size_t j = 0; j < 4; ++j) o[j] = accumulate ? o[j] + y[j] : y[j];
    }
  }
#endif
}

/// out = conv3x3(x, w) + bias (or out += conv3x3(x, w) when accumulate), stride 1, pad 1, by
/// Winograd F(4x4, 3x3). bias may be null. Deterministic: every output element is produced by one
/// task with arithmetic that does not depend on the thread count.
/// Scratch: shared slot `weight_slot` (transformed weights), thread slots 0, 1 and 2.
inline void convolve(Context& ctx, const Problem& p, const float* x, const float* w,
                     const float* bias, float* out, bool accumulate,
                     std::size_t weight_slot = 0) {
  if (p.n == 0 || p.c_out == 0 || p.h == 0 || p.w == 0) return;
  const std::size_t cop = c_out_padded(p), ci_n = p.c_in;
  float* u = ctx.shared_scratch(weight_slot, weights_size(p));
  const Blocking blk = blocking(p);
  const std::size_t T = blk.tiles_per_block;
  const std::size_t tw = p.tiles_w(), th = p.tiles_h(), per_image = tw * th;
  const std::size_t hw = p.h * p.w;
  const bool exact = p.h % m == 0 && p.w % m == 0;
  // AVX-512 kernel level: the transforms take 16 tiles per call (bitwise the same results).
  const bool wide = use_avx512();
  const std::size_t band_w = tw * m + 2;
  // where the output transform writes the tiles past the last one (4 rows of either stride;
  // finite, as it may be read back when accumulating)
  const std::size_t sink_size = m * std::max(p.w, band_w);
  const std::size_t scratch_size = block_scratch(p, blk), band_size = (T / tw + 2) * 6 * band_w;
  ctx.reserve_thread_scratch(0, scratch_size);
  ctx.reserve_thread_scratch(1, band_size);
  ctx.reserve_thread_scratch(2, sink_size);
  ctx.execute([&] {
    // 1. weight transform, parallel over groups of 6 output channels
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, cop / gemm::mr, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          transform_weights(p, w, u, r.begin() * gemm::mr, r.end() * gemm::mr);
        },
        tbb::simple_partitioner());
    // 2. blocks of tiles
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, blk.blocks, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          float* scratch = ctx.thread_scratch(0, scratch_size);
          float* band_buf = ctx.thread_scratch(1, band_size);
          float* sink = ctx.thread_scratch(2, sink_size);
          std::fill_n(sink, sink_size, 0.0f);
          const std::size_t v_stride = point_stride(ci_n * T), m_stride = point_stride(cop * T);
          float* V = scratch;                          // [xi][panel][ci][16]
          float* M = scratch + points * v_stride;      // [xi][co][T]
          alignas(64) float zero_patch[6 * 8] = {};
          // Per tile of the block: image and patch origin (for the in-place output path), and
          // where its patch lies in the bands (the same for every channel).
          std::size_t tile_n[max_block];
          std::ptrdiff_t tile_y0[max_block], tile_x0[max_block];
          PatchSrc patch[max_block];
          const std::size_t group = wide ? 16 : 8;  // tiles per transform call
          for (std::size_t b = r.begin(); b != r.end(); ++b) {
            const std::size_t t0 = b * T, nt = std::min(T, p.tiles() - t0);
            const std::size_t row0 = t0 / tw, bands = (t0 + nt - 1) / tw - row0 + 1;
            for (std::size_t tl = 0; tl < T; ++tl) {
              if (tl >= nt) {
                patch[tl] = PatchSrc{zero_patch, 8};
                continue;
              }
              const std::size_t t = t0 + tl, rr = t % per_image;
              tile_n[tl] = t / per_image;
              tile_y0[tl] = std::ptrdiff_t((rr / tw) * m) - 1;
              tile_x0[tl] = std::ptrdiff_t((rr % tw) * m) - 1;
              patch[tl] = PatchSrc{band_buf + (t / tw - row0) * 6 * band_w + (t % tw) * m, band_w};
            }
            // 2a. input transform, 8 (AVX-512: 16) tiles at a time. Per channel, the 6 input rows
            // of every tile row of the block are first copied into zero-padded bands (column c of
            // a band is image column c - 1), so every patch, border or not, is read the same way.
            for (std::size_t ci = 0; ci < ci_n; ++ci) {
              for (std::size_t bi = 0; bi < bands; ++bi) {
                const std::size_t grow = row0 + bi, n = grow / th, ty = grow % th;
                const float* plane = x + (n * ci_n + ci) * hw;
                // the next channel's rows of this band are fetched meanwhile
                if (ci + 1 < ci_n)
                  prefetch_rows(plane + hw, std::ptrdiff_t(ty * m) - 1, 6, p.h, p.w);
                float* band = band_buf + bi * 6 * band_w;
                for (std::size_t r = 0; r < 6; ++r) {
                  float* dst = band + r * band_w;
                  const std::ptrdiff_t yy = std::ptrdiff_t(ty * m + r) - 1;
                  if (yy < 0 || yy >= std::ptrdiff_t(p.h)) {
                    zero_row(dst, band_w);
                    continue;
                  }
                  band_row(dst, plane + std::size_t(yy) * p.w, p.w, 1, band_w);
                }
              }
              for (std::size_t g = 0; g < T; g += group) {
                const std::size_t panel = g / gemm::nr, half = g % gemm::nr;
#if DDPM_CPU_HAVE_AVX512_KERNELS
                if (wide) {
                  input_transform16(patch + g, V + (panel * ci_n + ci) * gemm::nr, v_stride);
                  continue;
                }
#endif
                input_transform8(patch + g, V + (panel * ci_n + ci) * gemm::nr + half, v_stride);
              }
            }
            // 2b. one GEMM per transform point: M[xi] (cop x T) = U[xi] (cop x c_in) V[xi]. The
            // AVX-512 tiles compute only the c_out rows the output transform reads (the AVX2
            // kernel computes whole 6-row panels; the rows past c_out are never read).
            for (std::size_t xi = 0; xi < points; ++xi) {
              gemm::macro_kernel(wide ? p.c_out : cop, T, ci_n, 1.0f, u + xi * cop * ci_n,
                                 V + xi * v_stride, 0.0f, M + xi * m_stride, T);
            }
            // 2c. output transform, 8 tiles at a time. When h and w are multiples of 4 every tile
            // is whole and is stored in place; otherwise tiles go through 4-row bands (the band
            // layout of 2a) and only the block's own columns inside the image are copied out.
            for (std::size_t co = 0; co < p.c_out; ++co) {
              const float bv = bias ? bias[co] : 0.0f;
              const float* mco = M + co * T;
              const auto transform = [&](std::size_t g, float* const* dst, std::size_t stride) {
#if DDPM_CPU_HAVE_AVX512_KERNELS
                if (wide) return output_transform16(mco + g, m_stride, bv, accumulate, dst, stride);
#endif
                output_transform8(mco + g, m_stride, bv, accumulate, dst, stride);
              };
              if (exact) {
                for (std::size_t g = 0; g < nt; g += group) {
                  float* dst[16];
                  for (std::size_t k = 0; k < group; ++k) {
                    const std::size_t tl = g + k;
                    dst[k] = tl < nt ? out + (tile_n[tl] * p.c_out + co) * hw +
                                           std::size_t(tile_y0[tl] + 1) * p.w +
                                           std::size_t(tile_x0[tl] + 1)
                                     : sink;
                  }
                  transform(g, dst, p.w);
                }
                continue;
              }
              // band bi: output rows 4 ty .. 4 ty + 3 of tile row row0 + bi, columns [c0, c1)
              auto for_band_rows = [&](auto&& fn) {
                for (std::size_t bi = 0; bi < bands; ++bi) {
                  const std::size_t grow = row0 + bi, n = grow / th, ty = grow % th;
                  const std::size_t tx_lo = bi == 0 ? t0 % tw : 0;
                  const std::size_t tx_hi = bi + 1 == bands ? (t0 + nt - 1) % tw + 1 : tw;
                  const std::size_t c0 = tx_lo * m, c1 = std::min(p.w, tx_hi * m);
                  for (std::size_t r = 0; r < m && ty * m + r < p.h; ++r)
                    fn(band_buf + (bi * m + r) * band_w + c0,
                       out + (n * p.c_out + co) * hw + (ty * m + r) * p.w + c0, c1 - c0);
                }
              };
              if (accumulate) {
                for_band_rows([](float* band, const float* y, std::size_t len) {
                  std::memcpy(band, y, len * sizeof(float));
                });
              }
              for (std::size_t g = 0; g < nt; g += group) {
                float* dst[16];
                for (std::size_t k = 0; k < group; ++k) {
                  const std::size_t tl = g + k, t = t0 + tl;
                  dst[k] = tl < nt ? band_buf + (t / tw - row0) * m * band_w + (t % tw) * m : sink;
                }
                transform(g, dst, band_w);
              }
              for_band_rows([](const float* band, float* y, std::size_t len) {
                std::memcpy(y, band, len * sizeof(float));
              });
            }
          }
        },
        tbb::simple_partitioner());
  });
}

// ------------------------------------------------------------------ weight gradient
//
// dW[co][ci] = sum over 4x4 output tiles of corr(X_tile (6x6), dY_tile (4x4)), a F(3x3, 4x4)
// problem. By the transposition principle applied to F(4x4, 3x3):
//   dW = G^T [ sum_tiles (A dY A^T) . (B^T X B) ] G
// so the reduction over tiles is one GEMM per transform point: Mw[xi] (c_out x c_in) +=
// Dt[xi] (c_out x T) Xt[xi]^T (T x c_in), for fixed blocks of T tiles added in order.

/// dY transform of 8 tiles of one channel: v[xi * xi_stride + lane] = (A dY_lane A^T)[xi], with
/// A = (A^T)^T, 6 x 4. src[k] points at a 4x4 tile (row stride src[k].stride).
inline void dy_transform8(const PatchSrc* src, float* v, std::size_t xi_stride) noexcept {
#if DDPM_CPU_GEMM_AVX2
  __m256 d[4][4];
  for (std::size_t r = 0; r < 4; ++r) {
    __m256 q[4];
    for (std::size_t k = 0; k < 4; ++k) {
      const float* lo = src[k].ptr + r * src[k].stride;
      const float* hi = src[k + 4].ptr + r * src[k + 4].stride;
      q[k] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
    }
    const __m256 t0 = _mm256_unpacklo_ps(q[0], q[1]), t1 = _mm256_unpackhi_ps(q[0], q[1]);
    const __m256 t2 = _mm256_unpacklo_ps(q[2], q[3]), t3 = _mm256_unpackhi_ps(q[2], q[3]);
    d[r][0] = _mm256_shuffle_ps(t0, t2, 0x44);
    d[r][1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    d[r][2] = _mm256_shuffle_ps(t1, t3, 0x44);
    d[r][3] = _mm256_shuffle_ps(t1, t3, 0xEE);
  }
  const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
  // e = A d (6 x 4)
  __m256 e[6][4];
  for (std::size_t c = 0; c < 4; ++c) {
    const __m256 d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c];
    const __m256 s02 = _mm256_add_ps(d0, d2), s13 = _mm256_add_ps(d1, d3);
    const __m256 t0 = _mm256_fmadd_ps(four, d2, d0);
    const __m256 t1 = _mm256_mul_ps(two, _mm256_fmadd_ps(four, d3, d1));
    e[0][c] = d0;
    e[1][c] = _mm256_add_ps(s02, s13);
    e[2][c] = _mm256_sub_ps(s02, s13);
    e[3][c] = _mm256_add_ps(t0, t1);
    e[4][c] = _mm256_sub_ps(t0, t1);
    e[5][c] = d3;
  }
  // v = e A^T (6 x 6)
  for (std::size_t a = 0; a < 6; ++a) {
    const __m256 d0 = e[a][0], d1 = e[a][1], d2 = e[a][2], d3 = e[a][3];
    const __m256 s02 = _mm256_add_ps(d0, d2), s13 = _mm256_add_ps(d1, d3);
    const __m256 t0 = _mm256_fmadd_ps(four, d2, d0);
    const __m256 t1 = _mm256_mul_ps(two, _mm256_fmadd_ps(four, d3, d1));
    float* o = v + a * 6 * xi_stride;
    _mm256_store_ps(o + 0 * xi_stride, d0);
    _mm256_store_ps(o + 1 * xi_stride, _mm256_add_ps(s02, s13));
    _mm256_store_ps(o + 2 * xi_stride, _mm256_sub_ps(s02, s13));
    _mm256_store_ps(o + 3 * xi_stride, _mm256_add_ps(t0, t1));
    _mm256_store_ps(o + 4 * xi_stride, _mm256_sub_ps(t0, t1));
    _mm256_store_ps(o + 5 * xi_stride, d3);
  }
#else
  for (std::size_t k = 0; k < 8; ++k) {
    float e[6][4];
    for (std::size_t c = 0; c < 4; ++c) {
      const float d0 = src[k].ptr[0 * src[k].stride + c], d1 = src[k].ptr[1 * src[k].stride + c];
      const float d2 = src[k].ptr[2 * src[k].stride + c], d3 = src[k].ptr[3 * src[k].stride + c];
      const float s02 = d0 + d2, s13 = d1 + d3, t0 = 4.0f * d2 + d0, t1 = 2.0f * (4.0f * d3 + d1);
      e[0][c] = d0;
      e[1][c] = s02 + s13;
      e[2][c] = s02 - s13;
      e[3][c] = t0 + t1;
      e[4][c] = t0 - t1;
      e[5][c] = d3;
    }
    for (std::size_t a = 0; a < 6; ++a) {
      const float d0 = e[a][0], d1 = e[a][1], d2 = e[a][2], d3 = e[a][3];
      const float s02 = d0 + d2, s13 = d1 + d3, t0 = 4.0f * d2 + d0, t1 = 2.0f * (4.0f * d3 + d1);
      float* o = v + a * 6 * xi_stride + k;
      o[0 * xi_stride] = d0;
      o[1 * xi_stride] = s02 + s13;
      o[2 * xi_stride] = s02 - s13;
      o[3 * xi_stride] = t0 + t1;
      o[4 * xi_stride] = t0 - t1;
      o[5 * xi_stride] = d3;
    }
  }
#endif
}

#if DDPM_CPU_HAVE_AVX512_KERNELS
/// dy_transform8 for 12 channels (lanes 0..11 of an AVX-512 vector; lanes 12..15 are computed from
/// src[12..15] and dropped), at the AVX-512 kernel level: per lane exactly dy_transform8's
/// operations, so the values are bitwise the same. Lanes 0..5 go to v0[xi * xi_stride + 0..5] and,
/// when v1, lanes 6..11 to v1[xi * xi_stride + 0..5] (two packed A panels of gemm::mr = 6 rows).
DDPM_TARGET_AVX512 inline void dy_transform12(const PatchSrc* src, float* v0, float* v1,
                                              std::size_t xi_stride) noexcept {
  // d[r][c]: element (r, c) of the 16 sources, lane l from src[l] (as in input_transform16)
  __m512 d[4][4];
  for (std::size_t r = 0; r < 4; ++r) columns0to3(src, r, d[r]);
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f);
  // o = A (d0 d1 d2 d3)^T, the 6 x 4 matrix A = (A^T)^T of F(4x4, 3x3), as dy_transform8
  const auto times_a = [&](__m512 d0, __m512 d1, __m512 d2, __m512 d3,
                           __m512* o) DDPM_TARGET_AVX512 __attribute__((always_inline)) {
    const __m512 s02 = _mm512_add_ps(d0, d2), s13 = _mm512_add_ps(d1, d3);
    const __m512 t0 = _mm512_fmadd_ps(four, d2, d0);
    const __m512 t1 = _mm512_mul_ps(two, _mm512_fmadd_ps(four, d3, d1));
    o[0] = d0;
    o[1] = _mm512_add_ps(s02, s13);
    o[2] = _mm512_sub_ps(s02, s13);
    o[3] = _mm512_add_ps(t0, t1);
    o[4] = _mm512_sub_ps(t0, t1);
    o[5] = d3;
  };
  __m512 e[4][6];  // e[c][a] = (A d)[a][c]
  for (std::size_t c = 0; c < 4; ++c) times_a(d[0][c], d[1][c], d[2][c], d[3][c], e[c]);
  for (std::size_t a = 0; a < 6; ++a) {
    __m512 v[6];  // row a of v = e A^T
    times_a(e[0][a], e[1][a], e[2][a], e[3][a], v);
    // lanes 0..5 -> v0 + 0..5; lanes 6..11 -> v1 + 0..5 (a masked store at v1 - 6)
    for (std::size_t b = 0; b < 6; ++b) {
      const std::size_t xi = a * 6 + b;
      _mm512_mask_storeu_ps(v0 + xi * xi_stride, __mmask16(0x003F), v[b]);
      if (v1) _mm512_mask_storeu_ps(v1 + xi * xi_stride - 6, __mmask16(0x0FC0), v[b]);
    }
  }
}
#endif

/// Chunks of the weight gradient's tiles whose sums are kept apart (a task each), then added in
/// chunk order. Each chunk costs a partial sum (36 c_out c_in floats written, then read), about the
/// work of 40 tiles, so: one chunk per 512 tiles, 2 to 8 (1 under 64 tiles), and fewer when the
/// partial sums (`partial_bytes` each) would pass 64 MiB. Depends on the shape only, so the result
/// does not depend on the thread count.
[[nodiscard]] inline std::size_t weight_grad_chunks(std::size_t tiles,
                                                    std::size_t partial_bytes) noexcept {
  if (tiles < 64) return 1;
  std::size_t c = std::clamp<std::size_t>(tiles / 512, 2, 8);
  while (c > 1 && c * partial_bytes > (std::size_t{64} << 20)) --c;
  return c;
}

/// Tiles per block of the weight gradient, for `chunks` chunks: blocks of transformed data
/// (36 (c_in + c_out) T floats) of at most about 2 MiB (measured on Zen 5, 1 MiB L2: 1, 2 and 4 MiB
/// within 5 %, 2 MiB best) and 32 to 256 tiles, their number rounded up to a multiple of `chunks`
/// so that every chunk holds as many blocks (the threads get equal work). Shape-only.
[[nodiscard]] inline std::size_t weight_grad_block(const Problem& p, std::size_t chunks) noexcept {
  const std::size_t total = p.tiles();
  if (total == 0) return 1;
  const std::size_t per_tile = points * (p.c_in + p.c_out + 16) * sizeof(float);
  const std::size_t t_max =
      std::clamp<std::size_t>((std::size_t{2} << 20) / std::max<std::size_t>(per_tile, 1), 32, 256);
  const std::size_t blocks =
      gemm::round_up((total + t_max - 1) / t_max, std::max<std::size_t>(chunks, 1));
  return (total + blocks - 1) / blocks;
}

/// dw += sum over images of corr(x, dy) for a 3x3 stride-1 pad-1 convolution (w: c_out x c_in x
/// 3 x 3; x: n x c_in x h x w; dy: n x c_out x h x w), by Winograd. The tiles are cut into blocks
/// (weight_grad_block) and the blocks into chunks (weight_grad_chunks); one task per chunk
/// transforms each of its blocks and multiplies it at once (the same core: its transformed data
/// is still in that core's cache), adding the block's products into the chunk's sums in block
/// order; the chunks' sums are then added in chunk order. Block and chunk boundaries depend on the
/// shape only, so dw is bitwise the same for any thread count.
/// tiles_per_block, chunk_count: 0 = weight_grad_block / weight_grad_chunks (tests pass small
/// blocks and many chunks to exercise them on small shapes).
/// Scratch: shared slot 0 (the chunks' sums), thread slots 0 (transformed block) and 1 (bands).
inline void weight_gradient(Context& ctx, const Problem& p, const float* x, const float* dy,
                            float* dw, std::size_t tiles_per_block = 0,
                            std::size_t chunk_count = 0) {
  using gemm::mr;
  using gemm::nr;
  using gemm::round_up;
  if (p.c_out == 0 || p.c_in == 0) return;
  const std::size_t ci_n = p.c_in, co_n = p.c_out;
  // Transformed tiles are written straight into the microkernel's packed panels, per point xi:
  //   Xt (B operand): [ci / 16][t][ci % 16], 8 (AVX-512: 16) input channels per transform call;
  //   Dt (A operand): [co / 6][t][co % 6], 6 (AVX-512: 12) output channels per transform call.
  // Channels past c_in / c_out are zero.
  const std::size_t cols = round_up(ci_n, nr), rows = round_up(co_n, mr);
  const std::size_t ld_x = unaliased_ld(ci_n, nr);
  const std::size_t acc_size = points * rows * ld_x;  // Mw[xi][rows][ld_x]
  const std::size_t total = p.tiles();
  const std::size_t auto_chunks = weight_grad_chunks(total, acc_size * sizeof(float));
  const std::size_t T = tiles_per_block != 0 ? tiles_per_block : weight_grad_block(p, auto_chunks);
  const std::size_t blocks = total == 0 || p.n == 0 ? 0 : (total + T - 1) / T;
  const std::size_t chunks =
      std::max<std::size_t>(std::min(blocks, chunk_count != 0 ? chunk_count : auto_chunks), 1);
  float* acc = ctx.shared_scratch(0, chunks * acc_size);  // chunk k's sums at acc + k acc_size
  if (blocks == 0) {
    std::fill_n(acc, acc_size, 0.0f);
  } else {
    const std::size_t x_stride = point_stride(T * cols), d_stride = point_stride(T * rows);
    const std::size_t block_size = points * (x_stride + d_stride) + 64;
    const std::size_t tw = p.tiles_w(), th = p.tiles_h(), hw = p.h * p.w;
    const std::size_t band_w = tw * m + 2;
    // AVX-512 kernel level: 16 input channels (x) or 12 output channels (dy) per transform call,
    // with per lane the AVX2 transforms' operations (bitwise the same Xt and Dt).
    const bool wide = use_avx512();
    const std::size_t bands_size = 17 * 6 * band_w;  // up to 16 bands and a zero band
    ctx.reserve_thread_scratch(0, block_size);
    ctx.reserve_thread_scratch(1, bands_size);
    ctx.execute([&] {
      tbb::parallel_for(
          tbb::blocked_range<std::size_t>(0, chunks, 1),
          [&](const tbb::blocked_range<std::size_t>& r) {
            float* xt = ctx.thread_scratch(0, block_size);
            float* dt = xt + points * x_stride;
            float* bandbuf = ctx.thread_scratch(1, bands_size);
            float* zero_band = bandbuf + 16 * 6 * band_w;
            std::fill_n(zero_band, 6 * band_w, 0.0f);
            alignas(32) float tmp[points * 8];  // one dy transform, [xi][lane]
            for (std::size_t ch = r.begin(); ch != r.end(); ++ch) {
              float* part = acc + ch * acc_size;
              const std::size_t b_first = ch * blocks / chunks;
              for (std::size_t b = b_first; b < (ch + 1) * blocks / chunks; ++b) {
                const std::size_t t0 = b * T, nt = std::min(T, total - t0);
                // 1. transform the block's x patches and dy tiles, a group of channels of one
                // tile at a time. Per channel group the rows a tile row reads are first copied
                // into zero-padded bands: x bands hold image rows 4 ty - 1 .. 4 ty + 4 with band
                // column c = image column c - 1; dy bands hold rows 4 ty .. 4 ty + 3, column c = c.
                const std::size_t row0 = t0 / tw, bands = (t0 + nt - 1) / tw - row0 + 1;
                for (std::size_t bi = 0; bi < bands; ++bi) {
                  const std::size_t grow = row0 + bi, n = grow / th, ty = grow % th;
                  const std::size_t tx_lo = bi == 0 ? t0 % tw : 0;
                  const std::size_t tx_hi = bi + 1 == bands ? (t0 + nt - 1) % tw + 1 : tw;
                  for (int side = 0; side < 2; ++side) {
                    const bool is_x = side == 0;
                    const std::size_t chans = is_x ? ci_n : co_n;
                    const std::size_t used = is_x ? cols : rows;  // channels the GEMM reads
                    // channels per transform call
                    const std::size_t group = wide ? (is_x ? 16 : 2 * mr) : (is_x ? 8 : mr);
                    const std::size_t band_rows = is_x ? 6 : 4;
                    const std::ptrdiff_t first = std::ptrdiff_t(ty * m) - (is_x ? 1 : 0);
                    const std::size_t shift = is_x ? 1 : 0;  // band column of image column 0
                    const float* base = (is_x ? x : dy) + n * chans * hw;
                    for (std::size_t c0 = 0; c0 < used; c0 += group) {
                      const float* bands16[16];
                      for (std::size_t k = 0; k < 16; ++k) {
                        const std::size_t c = c0 + k;
                        if (k >= group || c >= chans) {
                          bands16[k] = zero_band;
                          continue;
                        }
                        float* band = bandbuf + k * 6 * band_w;
                        const float* plane = base + c * hw;
                        // fetch the next group's channel while this one is copied
                        if (c + group < chans)
                          prefetch_rows(plane + group * hw, first, band_rows, p.h, p.w);
                        for (std::size_t rr = 0; rr < band_rows; ++rr) {
                          float* d = band + rr * band_w;
                          const std::ptrdiff_t yy = first + std::ptrdiff_t(rr);
                          if (yy < 0 || yy >= std::ptrdiff_t(p.h)) {
                            zero_row(d, band_w);
                            continue;
                          }
                          band_row(d, plane + std::size_t(yy) * p.w, p.w, shift, band_w);
                        }
                        bands16[k] = band;
                      }
                      for (std::size_t tx = tx_lo; tx < tx_hi; ++tx) {
                        const std::size_t tl = grow * tw + tx - t0;
                        PatchSrc src[16];
                        for (std::size_t k = 0; k < 16; ++k)
                          src[k] = PatchSrc{bands16[k] + tx * m, band_w};
#if DDPM_CPU_HAVE_AVX512_KERNELS
                        if (wide) {
                          if (is_x) {
                            input_transform16(src, xt + (c0 / nr) * T * nr + tl * nr, x_stride);
                          } else {
                            float* o = dt + (c0 / mr) * T * mr + tl * mr;
                            dy_transform12(src, o, c0 + mr < used ? o + T * mr : nullptr, d_stride);
                          }
                          continue;
                        }
#endif
                        if (is_x) {
                          input_transform8(src, xt + (c0 / nr) * T * nr + tl * nr + c0 % nr,
                                           x_stride);
                        } else {
                          dy_transform8(src, tmp, 8);
                          float* o = dt + (c0 / mr) * T * mr + tl * mr;
                          for (std::size_t xi = 0; xi < points; ++xi)
                            std::memcpy(o + xi * d_stride, tmp + xi * 8, mr * sizeof(float));
                        }
                      }
                    }
                  }
                }
                // 2. Mw[xi] (+)= Dt[xi]^T Xt[xi] over the block's tiles (= for the chunk's first
                // block). AVX-512 tiles: only the co_n rows used; padded rows are never read.
                const float beta = b == b_first ? 0.0f : 1.0f;
                for (std::size_t xi = 0; xi < points; ++xi)
                  gemm::panels_kernel(wide ? co_n : rows, cols, nt, T, dt + xi * d_stride,
                                      xt + xi * x_stride, part + xi * rows * ld_x, ld_x, 1.0f,
                                      beta);
              }
            }
          },
          tbb::simple_partitioner());
      // the chunks' sums, added in chunk order into chunk 0's: the rows and columns that were
      // written (co < co_n, ci < cols; the AVX-512 tiles leave padded rows unwritten, the GEMMs
      // the columns past cols) and are read below
      if (chunks > 1)
        tbb::parallel_for(
            tbb::blocked_range<std::size_t>(0, points * co_n, 16),
            [&](const tbb::blocked_range<std::size_t>& r) {
              for (std::size_t q = r.begin(); q != r.end(); ++q) {
                float* row = acc + (q / co_n) * rows * ld_x + (q % co_n) * ld_x;
                for (std::size_t i = 0; i < cols; ++i) {
                  float s = row[i];
                  for (std::size_t k = 1; k < chunks; ++k) s += row[k * acc_size + i];
                  row[i] = s;
                }
              }
            },
            tbb::simple_partitioner());
    });
  }
  // dw[co][ci] += G^T Mw G, parallel over output channels; 8 input channels per vector
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, co_n, 4),
        [&](const tbb::blocked_range<std::size_t>& r) {
          const std::size_t stride = rows * ld_x;
          for (std::size_t co = r.begin(); co != r.end(); ++co) {
            for (std::size_t ci0 = 0; ci0 < ci_n; ci0 += 8) {
              const float* mw = acc + co * ld_x + ci0;  // mw[xi * stride + lane]
              alignas(32) float res[9][8];              // res[a*3 + b][lane]
#if DDPM_CPU_GEMM_AVX2
              const __m256 c4 = _mm256_set1_ps(0.25f), c6 = _mm256_set1_ps(1.0f / 6.0f),
                           c12 = _mm256_set1_ps(1.0f / 12.0f), c24 = _mm256_set1_ps(1.0f / 24.0f);
              // rows of G^T applied to (m0 .. m5)
              auto apply_gt = [&](const __m256* m, __m256* o) {
                const __m256 s12 = _mm256_add_ps(m[1], m[2]), s34 = _mm256_add_ps(m[3], m[4]);
                o[0] = _mm256_fmadd_ps(m[0], c4, _mm256_fmsub_ps(s34, c24, _mm256_mul_ps(s12, c6)));
                o[1] = _mm256_fmadd_ps(_mm256_sub_ps(m[2], m[1]), c6,
                                       _mm256_mul_ps(_mm256_sub_ps(m[3], m[4]), c12));
                o[2] = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(s34, s12), c6), m[5]);
              };
              __m256 t[6][3];  // t[b][a] = (G^T Mw)[a][b]
              for (std::size_t b = 0; b < 6; ++b) {
                __m256 m[6];
                for (std::size_t a = 0; a < 6; ++a) m[a] = _mm256_loadu_ps(mw + (a * 6 + b) * stride);
                apply_gt(m, t[b]);
              }
              for (std::size_t a = 0; a < 3; ++a) {
                const __m256 m[6] = {t[0][a], t[1][a], t[2][a], t[3][a], t[4][a], t[5][a]};
                __m256 o[3];
                apply_gt(m, o);
                for (std::size_t b = 0; b < 3; ++b) _mm256_store_ps(res[a * 3 + b], o[b]);
              }
#else
              for (std::size_t l = 0; l < 8; ++l) {
                auto apply_gt = [](const float* m, float* o) {
                  const float s12 = m[1] + m[2], s34 = m[3] + m[4];
                  o[0] = m[0] * 0.25f + (s34 * (1.0f / 24.0f) - s12 * (1.0f / 6.0f));
                  o[1] = (m[2] - m[1]) * (1.0f / 6.0f) + (m[3] - m[4]) * (1.0f / 12.0f);
                  o[2] = (s34 - s12) * (1.0f / 6.0f) + m[5];
                };
                float t[6][3];
                for (std::size_t b = 0; b < 6; ++b) {
                  float m[6];
                  for (std::size_t a = 0; a < 6; ++a) m[a] = mw[(a * 6 + b) * stride + l];
                  apply_gt(m, t[b]);
                }
                for (std::size_t a = 0; a < 3; ++a) {
                  const float m[6] = {t[0][a], t[1][a], t[2][a], t[3][a], t[4][a], t[5][a]};
                  float o[3];
                  apply_gt(m, o);
                  for (std::size_t b = 0; b < 3; ++b) res[a * 3 + b][l] = o[b];
                }
              }
#endif
              for (std::size_t l = 0; l < 8 && ci0 + l < ci_n; ++l) {
                float* d = dw + (co * ci_n + ci0 + l) * 9;
                for (std::size_t q = 0; q < 9; ++q) d[q] += res[q][l];
              }
            }
          }
        },
        tbb::simple_partitioner());
  });
}

}  // namespace ddpm::detail::cpu::winograd
