// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/im2col.hpp — the convolution shape and implicit-im2col packing routines that
// feed the packed GEMM (ddpm/backend/cpu/gemm.hpp) straight from NCHW activations, so no im2col
// matrix is ever stored whole.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "ddpm/backend/cpu/gemm.hpp"

#if DDPM_CPU_GEMM_AVX2
#include <immintrin.h>
#endif

namespace ddpm::detail::cpu {

/// A 2-D convolution: square kernels, symmetric zero padding, NCHW activations, weights
/// (c_out, c_in, kernel, kernel) as PyTorch's Conv2d (cross-correlation).
struct Conv2dShape {
  std::size_t n = 1, c_in = 1, h = 1, w = 1, c_out = 1, kernel = 3, stride = 1, pad = 1;
  /// (h + 2 pad - kernel) / stride + 1
  [[nodiscard]] std::size_t h_out() const noexcept { return (h + 2 * pad - kernel) / stride + 1; }
  /// (w + 2 pad - kernel) / stride + 1
  [[nodiscard]] std::size_t w_out() const noexcept { return (w + 2 * pad - kernel) / stride + 1; }
  /// Multiply-adds x 2 of the direct convolution (the FLOP count every algorithm is quoted in).
  [[nodiscard]] double flops() const noexcept {
    return 2.0 * double(n) * double(c_out) * double(h_out()) * double(w_out()) * double(c_in) *
           double(kernel) * double(kernel);
  }
};

namespace im2col {

/// dst[t] = row[iw0 + t*stride] for t < len where 0 <= iw0 + t*stride < w, else 0.
inline void copy_row(float* dst, const float* row, std::ptrdiff_t iw0, std::size_t len,
                     std::size_t stride, std::size_t w) noexcept {
  const auto sw = static_cast<std::ptrdiff_t>(w);
  if (stride == 1 && iw0 >= 0 && iw0 + std::ptrdiff_t(len) <= sw) {
    std::memcpy(dst, row + iw0, len * sizeof(float));
  } else if (stride == 1) {
    const std::ptrdiff_t lo = std::clamp<std::ptrdiff_t>(-iw0, 0, std::ptrdiff_t(len));
    const std::ptrdiff_t hi = std::clamp<std::ptrdiff_t>(sw - iw0, lo, std::ptrdiff_t(len));
    for (std::ptrdiff_t t = 0; t < lo; ++t) dst[t] = 0.0f;
    const float* src = row + iw0;
    for (std::ptrdiff_t t = lo; t < hi; ++t) dst[t] = src[t];
    for (std::ptrdiff_t t = hi; t < std::ptrdiff_t(len); ++t) dst[t] = 0.0f;
  } else {
    // Positions t with 0 <= iw0 + t*stride < w form the range [lo, hi).
    const auto ss = static_cast<std::ptrdiff_t>(stride), sl = static_cast<std::ptrdiff_t>(len);
    const std::ptrdiff_t lo = std::min(sl, iw0 < 0 ? (-iw0 + ss - 1) / ss : std::ptrdiff_t{0});
    const std::ptrdiff_t hi =
        std::clamp<std::ptrdiff_t>(iw0 < sw ? (sw - 1 - iw0) / ss + 1 : 0, lo, sl);
    for (std::ptrdiff_t t = 0; t < lo; ++t) dst[t] = 0.0f;
    std::ptrdiff_t t = lo;
#if DDPM_CPU_GEMM_AVX2
    if (stride == 2) {
      // even elements of 16 consecutive floats: iw0 + 2t .. iw0 + 2t + 15 must lie in the row
      for (; t + 8 <= hi && iw0 + 2 * t + 16 <= sw; t += 8) {
        const float* src = row + iw0 + 2 * t;
        const __m256 a = _mm256_loadu_ps(src), b = _mm256_loadu_ps(src + 8);
        const __m256 e = _mm256_shuffle_ps(a, b, 0x88);  // a0 a2 b0 b2 | a4 a6 b4 b6
        _mm256_storeu_ps(dst + t, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
      }
    }
#endif
    for (; t < hi; ++t) dst[t] = row[iw0 + t * ss];
    for (t = hi; t < sl; ++t) dst[t] = 0.0f;
  }
}


/// A run of output positions on one output row: positions [ow, ow + len) of row oh of image n,
/// placed at offset `at` of the packed range.
struct Run {
  std::size_t at, n, oh, ow, len;
};

/// Splits the flattened output positions [q0, q0 + count) (q = (n * h_out + oh) * w_out + ow) into
/// runs along output rows. Returns the number of runs written to `runs` (at most count + 1).
inline std::size_t split_runs(const Conv2dShape& s, std::size_t q0, std::size_t count,
                              Run* runs) noexcept {
  const std::size_t wo = s.w_out(), hwo = s.h_out() * wo;
  std::size_t n = q0 / hwo, r = q0 % hwo, oh = r / wo, ow = r % wo, at = 0, nr = 0;
  while (at < count) {
    const std::size_t len = std::min(count - at, wo - ow);
    runs[nr++] = Run{at, n, oh, ow, len};
    at += len;
    ow = 0;
    if (++oh == s.h_out()) {
      oh = 0;
      ++n;
    }
  }
  return nr;
}

/// Forward B operand of image `x_n` (c_in x h x w): B[kk][j] = x_n[ci][oh*s - p + kh][ow*s - p + kw]
/// with kk = (ci*k + kh)*k + kw and j = oh*w_out + ow. Packs rows [k0, k0+k) x columns [j0, j0+n)
/// into gemm::pack_b layout. Each row of B is gathered into `row` (n floats) and then copied into
/// the panels, so the image is read along its rows. `runs` holds n + 1 entries.
inline void pack_b_forward(const Conv2dShape& s, const float* x_n, std::size_t k0, std::size_t k,
                           std::size_t j0, std::size_t n, float* dst, float* row,
                           Run* runs) noexcept {
  using gemm::nr;
  if (s.kernel == 1 && s.stride == 1 && s.pad == 0) {  // B is x_n itself (c_in x h w)
    gemm::pack_b(false, x_n, s.h * s.w, k0, k, j0, n, dst);
    return;
  }
  const std::size_t kk2 = s.kernel * s.kernel, hw = s.h * s.w;
  const std::size_t nruns = split_runs(s, j0, n, runs);
  const std::size_t full = n / nr, rem = n % nr;
  for (std::size_t p = 0; p < k; ++p) {
    const std::size_t kk = k0 + p, ci = kk / kk2, kh = (kk % kk2) / s.kernel, kw = kk % s.kernel;
    const float* xc = x_n + ci * hw;
    for (std::size_t r = 0; r < nruns; ++r) {
      const Run& run = runs[r];
      const std::ptrdiff_t ih = std::ptrdiff_t(run.oh * s.stride + kh) - std::ptrdiff_t(s.pad);
      if (ih < 0 || ih >= std::ptrdiff_t(s.h)) {
        std::fill_n(row + run.at, run.len, 0.0f);
      } else {
        copy_row(row + run.at, xc + std::size_t(ih) * s.w,
                 std::ptrdiff_t(run.ow * s.stride + kw) - std::ptrdiff_t(s.pad), run.len,
                 s.stride, s.w);
      }
    }
    float* d = dst + p * nr;
    for (std::size_t jp = 0; jp < full; ++jp)
      std::memcpy(d + jp * k * nr, row + jp * nr, nr * sizeof(float));
    if (rem != 0) {
      float* e = d + full * k * nr;
      std::memcpy(e, row + full * nr, rem * sizeof(float));
      std::fill_n(e + rem, nr - rem, 0.0f);
    }
  }
}

/// Weight-gradient A operand: A[co][q] = dy[n][co][oh][ow] with q = (n*h_out + oh)*w_out + ow.
/// Packs rows [i0, i0+m) x columns [q0, q0+k) into gemm::pack_a layout.
inline void pack_a_dy(const Conv2dShape& s, const float* dy, std::size_t i0, std::size_t m,
                      std::size_t q0, std::size_t k, float* dst) noexcept {
  using gemm::mr;
  const std::size_t hwo = s.h_out() * s.w_out();
  for (std::size_t ip = 0; ip < m; ip += mr) {
    const std::size_t mm = std::min(mr, m - ip);
    std::size_t at = 0;
    while (at < k) {  // one segment per image
      const std::size_t q = q0 + at, n = q / hwo, hw = q % hwo;
      const std::size_t len = std::min(k - at, hwo - hw);
      const float* rows[mr];
      for (std::size_t r = 0; r < mr; ++r)
        rows[r] = dy + (n * s.c_out + i0 + ip + std::min(r, mm - 1)) * hwo + hw;
      gemm::pack_a_panel_from_rows(rows, mm, len, dst + at * mr);
      at += len;
    }
    dst += k * mr;
  }
}

/// Weight-gradient B operand: B[q][kk] = im2col(x)[kk][q] (q over images and output positions as
/// in pack_a_dy, kk as in pack_b_forward). Packs rows [q0, q0+k) x columns [j0, j0+n) into
/// gemm::pack_b layout. `tmp` holds gemm::nr * k floats.
inline void pack_b_xt(const Conv2dShape& s, const float* x, std::size_t q0, std::size_t k,
                      std::size_t j0, std::size_t n, float* dst, float* tmp, Run* runs) noexcept {
  using gemm::nr;
  const std::size_t kk2 = s.kernel * s.kernel, hw = s.h * s.w;
  if (s.kernel == 1 && s.stride == 1 && s.pad == 0) {  // B[q][ci] = x[n][ci][hw]: rows of x
    for (std::size_t jp = 0; jp < n; jp += nr) {
      const std::size_t nn = std::min(nr, n - jp);
      std::size_t at = 0;
      while (at < k) {  // one segment per image
        const std::size_t q = q0 + at, img = q / hw, pos = q % hw;
        const std::size_t len = std::min(k - at, hw - pos);
        const float* cols[nr];
        for (std::size_t j = 0; j < nn; ++j) cols[j] = x + (img * s.c_in + j0 + jp + j) * hw + pos;
        gemm::pack_b_panel_from_columns(cols, nn, len, dst + at * nr);
        at += len;
      }
      dst += k * nr;
    }
    return;
  }
  const std::size_t nruns = split_runs(s, q0, k, runs);
  for (std::size_t jp = 0; jp < n; jp += nr) {
    const std::size_t nn = std::min(nr, n - jp);
    const float* cols[nr];
    for (std::size_t j = 0; j < nn; ++j) {
      const std::size_t kk = j0 + jp + j, ci = kk / kk2, kh = (kk % kk2) / s.kernel,
                        kw = kk % s.kernel;
      float* d = tmp + j * k;
      cols[j] = d;
      for (std::size_t r = 0; r < nruns; ++r) {
        const Run& run = runs[r];
        const std::ptrdiff_t ih =
            std::ptrdiff_t(run.oh * s.stride + kh) - std::ptrdiff_t(s.pad);
        if (ih < 0 || ih >= std::ptrdiff_t(s.h)) {
          for (std::size_t t = 0; t < run.len; ++t) d[run.at + t] = 0.0f;
        } else {
          copy_row(d + run.at, x + (run.n * s.c_in + ci) * hw + std::size_t(ih) * s.w,
                   std::ptrdiff_t(run.ow * s.stride + kw) - std::ptrdiff_t(s.pad), run.len,
                   s.stride, s.w);
        }
      }
    }
    gemm::pack_b_panel_from_columns(cols, nn, k, dst);
    dst += k * nr;
  }
}

/// col2im: dx_n[ci][ih][iw] += dcol[kk][j] over all (kk, j) that read (ci, ih, iw) in the forward
/// im2col, for channels [c0, c1). dcol is (c_in k k) x (h_out w_out), row-major. The order of the
/// additions into each element is fixed (kh, kw, then output position).
inline void col2im_add(const Conv2dShape& s, const float* dcol, float* dx_n, std::size_t c0,
                       std::size_t c1) noexcept {
  const std::size_t ho = s.h_out(), wo = s.w_out(), hwo = ho * wo;
  for (std::size_t ci = c0; ci < c1; ++ci) {
    float* xc = dx_n + ci * s.h * s.w;
    for (std::size_t kh = 0; kh < s.kernel; ++kh) {
      for (std::size_t kw = 0; kw < s.kernel; ++kw) {
        const float* d = dcol + ((ci * s.kernel + kh) * s.kernel + kw) * hwo;
        for (std::size_t oh = 0; oh < ho; ++oh) {
          const std::ptrdiff_t ih = std::ptrdiff_t(oh * s.stride + kh) - std::ptrdiff_t(s.pad);
          if (ih < 0 || ih >= std::ptrdiff_t(s.h)) continue;
          float* row = xc + std::size_t(ih) * s.w;
          const float* drow = d + oh * wo;
          for (std::size_t ow = 0; ow < wo; ++ow) {
            const std::ptrdiff_t iw = std::ptrdiff_t(ow * s.stride + kw) - std::ptrdiff_t(s.pad);
            if (iw >= 0 && iw < std::ptrdiff_t(s.w)) row[iw] += drow[ow];
          }
        }
      }
    }
  }
}

}  // namespace im2col
}  // namespace ddpm::detail::cpu
