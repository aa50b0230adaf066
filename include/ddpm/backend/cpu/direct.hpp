// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/direct.hpp — direct (no GEMM, no transform) stride-1 convolution for layers
// with very few channels on one side (the U-Net's conv_in with 1-3 input channels and conv_out
// with 1-3 output channels), where im2col-GEMM and Winograd waste most of their work.
// Register tiles: COB output channels x V vectors of 8 output pixels along a row.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/gemm.hpp"
#include "ddpm/backend/cpu/im2col.hpp"

#if DDPM_CPU_GEMM_AVX2
#include <immintrin.h>
#endif

namespace ddpm::detail::cpu::direct {

/// Output pixels per vector.
inline constexpr std::size_t lanes = 8;

/// A zero-padded copy of one image: c planes of hp rows of wp floats; pixel (ci, ih, iw) of the
/// image at [ci][ih + pad][iw + pad].
struct Padded {
  const float* data;
  std::size_t hp, wp;
};

/// Row length of the padded copy: room for every vector load of a row of w_out outputs.
[[nodiscard]] inline std::size_t padded_width(std::size_t w_out, std::size_t kernel) noexcept {
  return gemm::round_up(w_out, lanes) + kernel - 1;
}

/// Copies image x_n (c x h x w) into dst with `pad` zeros around and row length wp.
inline void pad_image(const float* x_n, std::size_t c, std::size_t h, std::size_t w,
                      std::size_t pad, std::size_t hp, std::size_t wp, float* dst) noexcept {
  for (std::size_t ci = 0; ci < c; ++ci) {
    float* plane = dst + ci * hp * wp;
    std::fill_n(plane, pad * wp, 0.0f);
    for (std::size_t ih = 0; ih < h; ++ih) {
      float* row = plane + (ih + pad) * wp;
      std::fill_n(row, pad, 0.0f);
      std::memcpy(row + pad, x_n + (ci * h + ih) * w, w * sizeof(float));
      std::fill_n(row + pad + w, wp - pad - w, 0.0f);
    }
    std::fill_n(plane + (h + pad) * wp, (hp - h - pad) * wp, 0.0f);
  }
}

/// One register tile: outputs (co0 .. co0+COB-1, row oh, columns ow0 .. ow0 + 8V - 1) =
/// sum over ci, kh, kw of w[co][ci][kh][kw] * xp[ci][oh + kh][ow + kw] (+ bias), written to
/// out[c] + ow0 (only the first `valid` columns; added to what is there when accumulate).
template <int COB, int V>
void tile(const Padded& xp, std::size_t c_in, const float* w, std::size_t kernel, std::size_t co0,
          std::size_t oh, std::size_t ow0, std::size_t valid, const float* bias, bool accumulate,
          float* const* out) noexcept {
  const std::size_t kk = kernel * kernel;
#if DDPM_CPU_GEMM_AVX2
  __m256 acc[COB][V];
  for (int c = 0; c < COB; ++c)
    for (int v = 0; v < V; ++v) acc[c][v] = _mm256_setzero_ps();
  for (std::size_t ci = 0; ci < c_in; ++ci) {
    const float* wc[COB];
    for (int c = 0; c < COB; ++c) wc[c] = w + ((co0 + std::size_t(c)) * c_in + ci) * kk;
    for (std::size_t kh = 0; kh < kernel; ++kh) {
      const float* row = xp.data + (ci * xp.hp + oh + kh) * xp.wp + ow0;
      for (std::size_t kw = 0; kw < kernel; ++kw) {
        __m256 xv[V];
        for (int v = 0; v < V; ++v) xv[v] = _mm256_loadu_ps(row + kw + lanes * std::size_t(v));
        for (int c = 0; c < COB; ++c) {
          const __m256 wv = _mm256_broadcast_ss(wc[c] + kh * kernel + kw);
          for (int v = 0; v < V; ++v) acc[c][v] = _mm256_fmadd_ps(wv, xv[v], acc[c][v]);
        }
      }
    }
  }
  for (int c = 0; c < COB; ++c) {
    const __m256 b = _mm256_set1_ps(bias ? bias[co0 + std::size_t(c)] : 0.0f);
    for (int v = 0; v < V; ++v) {
      const std::size_t at = lanes * std::size_t(v);
      if (at >= valid) break;
      float* o = out[c] + ow0 + at;
      __m256 r = _mm256_add_ps(acc[c][v], b);
      if (at + lanes <= valid) {
        if (accumulate) r = _mm256_add_ps(_mm256_loadu_ps(o), r);
        _mm256_storeu_ps(o, r);
      } else {
        alignas(32) float tmp[lanes];
        _mm256_store_ps(tmp, r);
        for (std::size_t l = 0; l < valid - at; ++l) o[l] = accumulate ? o[l] + tmp[l] : tmp[l];
      }
    }
  }
#else
  constexpr std::size_t n = std::size_t(V) * lanes;
  float acc[COB][n] = {};
  for (std::size_t ci = 0; ci < c_in; ++ci)
    for (std::size_t kh = 0; kh < kernel; ++kh) {
      const float* row = xp.data + (ci * xp.hp + oh + kh) * xp.wp + ow0;
      for (std::size_t kw = 0; kw < kernel; ++kw)
        for (int c = 0; c < COB; ++c) {
          const float wv = w[((co0 + std::size_t(c)) * c_in + ci) * kk + kh * kernel + kw];
          for (std::size_t l = 0; l < n; ++l) acc[c][l] += wv * row[kw + l];
        }
    }
  for (int c = 0; c < COB; ++c) {
    const float b = bias ? bias[co0 + std::size_t(c)] : 0.0f;
    float* o = out[c] + ow0;
    for (std::size_t l = 0; l < std::min(n, valid); ++l) {
      const float r = acc[c][l] + b;
      o[l] = accumulate ? o[l] + r : r;
    }
  }
#endif
}

/// All output columns of one output row for channels co0 .. co0+COB-1.
template <int COB>
void row(const Padded& xp, std::size_t c_in, const float* w, std::size_t kernel, std::size_t co0,
         std::size_t oh, std::size_t w_out, const float* bias, bool accumulate,
         float* const* out) noexcept {
  // Vectors may run past w_out up to round_up(w_out, 8): the padded copy is that wide.
  for (std::size_t ow0 = 0; ow0 < w_out; ow0 += 4 * lanes) {
    const std::size_t valid = std::min(4 * lanes, w_out - ow0);
    switch ((valid + lanes - 1) / lanes) {
      case 4: tile<COB, 4>(xp, c_in, w, kernel, co0, oh, ow0, valid, bias, accumulate, out); break;
      case 3: tile<COB, 3>(xp, c_in, w, kernel, co0, oh, ow0, valid, bias, accumulate, out); break;
      case 2: tile<COB, 2>(xp, c_in, w, kernel, co0, oh, ow0, valid, bias, accumulate, out); break;
      default: tile<COB, 1>(xp, c_in, w, kernel, co0, oh, ow0, valid, bias, accumulate, out);
    }
  }
}

/// y = conv(x, w) + bias (or y += conv(x, w) + bias when accumulate) for a stride-1 convolution
/// with any kernel and pad <= kernel - 1. w is (c_out, c_in, k, k). Parallel over (image, block of
/// output channels); every output is produced by one task. Scratch: thread slot 1.
inline void forward(Context& ctx, const Conv2dShape& s, const float* x, const float* w,
                    const float* bias, float* y, bool accumulate) {
  const std::size_t ho = s.h_out(), wo = s.w_out(), k = s.kernel;
  const std::size_t wp = padded_width(wo, k), hp = ho + k - 1;
  // Output-channel blocks: all channels per task unless there are few images.
  const std::size_t co_block =
      s.n >= 8 ? s.c_out : std::max<std::size_t>(3, gemm::round_up((s.c_out + 7) / 8, 3));
  const std::size_t cob_n = (s.c_out + co_block - 1) / co_block;
  const std::size_t buf_size = s.c_in * hp * wp;
  ctx.reserve_thread_scratch(1, buf_size);
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, s.n * cob_n, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          float* buf = ctx.thread_scratch(1, buf_size);
          std::size_t padded_n = ~std::size_t{0};
          for (std::size_t t = r.begin(); t != r.end(); ++t) {
            const std::size_t n = t / cob_n, c_lo = (t % cob_n) * co_block;
            const std::size_t c_hi = std::min(s.c_out, c_lo + co_block);
            if (padded_n != n) {
              pad_image(x + n * s.c_in * s.h * s.w, s.c_in, s.h, s.w, s.pad, hp, wp, buf);
              padded_n = n;
            }
            const Padded xp{buf, hp, wp};
            float* yn = y + n * s.c_out * ho * wo;
            std::size_t co = c_lo;
            for (; co + 3 <= c_hi; co += 3)
              for (std::size_t oh = 0; oh < ho; ++oh) {
                float* out[3] = {yn + (co * ho + oh) * wo, yn + ((co + 1) * ho + oh) * wo,
                                 yn + ((co + 2) * ho + oh) * wo};
                row<3>(xp, s.c_in, w, k, co, oh, wo, bias, accumulate, out);
              }
            for (; co < c_hi; ++co)
              for (std::size_t oh = 0; oh < ho; ++oh) {
                float* out[1] = {yn + (co * ho + oh) * wo};
                row<1>(xp, s.c_in, w, k, co, oh, wo, bias, accumulate, out);
              }
          }
        },
        tbb::simple_partitioner());
  });
}

/// dw[co][ci][kh][kw] += sum over n, oh, ow of dy[n][co][oh][ow] * x[n][ci][oh + kh - 1][ow + kw - 1]
/// (zero outside x) for a 3x3 stride-1 pad-1 convolution. One task per (co, ci) pair reduces over
/// the whole batch in a fixed order (per-lane partial sums per image, lanes added in a fixed order,
/// images added in order in double), so the result does not depend on the thread count. Meant for
/// few channels on one side. Scratch: thread slot 1.
inline void weight_gradient3(Context& ctx, const Conv2dShape& s, const float* x, const float* dy,
                             float* dw) {
  constexpr std::size_t k = 3, kk = 9;
  const std::size_t ho = s.h_out(), wo = s.w_out();
  const std::size_t wp = padded_width(wo, k), hp = ho + k - 1, wv = gemm::round_up(wo, lanes);
  const std::size_t buf_size = hp * wp + wv + 64;
  ctx.reserve_thread_scratch(1, buf_size);
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, s.c_out * s.c_in, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          // per task: a padded copy of one channel of one image, and one dy row padded to vectors
          float* buf = ctx.thread_scratch(1, buf_size);
          float* dyrow = buf + hp * wp;
          for (std::size_t t = r.begin(); t != r.end(); ++t) {
            const std::size_t co = t / s.c_in, ci = t % s.c_in;
            std::fill_n(dyrow + wo, wv - wo, 0.0f);
            double total[kk] = {};
            for (std::size_t n = 0; n < s.n; ++n) {
              pad_image(x + (n * s.c_in + ci) * s.h * s.w, 1, s.h, s.w, 1, hp, wp, buf);
              const float* dyp = dy + (n * s.c_out + co) * ho * wo;
              alignas(32) float part[kk][lanes] = {};
#if DDPM_CPU_GEMM_AVX2
              __m256 acc[kk];
              for (std::size_t q = 0; q < kk; ++q) acc[q] = _mm256_setzero_ps();
              for (std::size_t oh = 0; oh < ho; ++oh) {
                std::memcpy(dyrow, dyp + oh * wo, wo * sizeof(float));
                const float* x0 = buf + oh * wp;
                for (std::size_t ow = 0; ow < wv; ow += lanes) {
                  const __m256 g = _mm256_loadu_ps(dyrow + ow);
                  for (std::size_t kh = 0; kh < k; ++kh)
                    for (std::size_t kw = 0; kw < k; ++kw)
                      acc[kh * k + kw] = _mm256_fmadd_ps(
                          g, _mm256_loadu_ps(x0 + kh * wp + ow + kw), acc[kh * k + kw]);
                }
              }
              for (std::size_t q = 0; q < kk; ++q) _mm256_store_ps(part[q], acc[q]);
#else
              for (std::size_t oh = 0; oh < ho; ++oh) {
                std::memcpy(dyrow, dyp + oh * wo, wo * sizeof(float));
                const float* x0 = buf + oh * wp;
                for (std::size_t ow = 0; ow < wv; ow += lanes)
                  for (std::size_t q = 0; q < kk; ++q)
                    for (std::size_t l = 0; l < lanes; ++l)
                      part[q][l] += dyrow[ow + l] * x0[(q / k) * wp + ow + q % k + l];
              }
#endif
              for (std::size_t q = 0; q < kk; ++q)
                total[q] += double((part[q][0] + part[q][4]) + (part[q][1] + part[q][5])) +
                            double((part[q][2] + part[q][6]) + (part[q][3] + part[q][7]));
            }
            float* d = dw + (co * s.c_in + ci) * kk;
            for (std::size_t q = 0; q < kk; ++q) d[q] += static_cast<float>(total[q]);
          }
        },
        tbb::simple_partitioner());
  });
}

}  // namespace ddpm::detail::cpu::direct
