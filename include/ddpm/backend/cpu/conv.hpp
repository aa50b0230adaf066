// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/conv.hpp — 2-D convolution on the CPU (forward, backward-data, backward-weight)
// on raw NCHW pointers, dispatching per shape to implicit-im2col GEMM, Winograd F(4x4,3x3) or
// direct loops.
//
// Scratch (Context): during a call these functions use thread slots 0-3 and shared slots 0, 1 and
// 3; nothing is kept between calls (transformed weights are recomputed each call, so callers may
// pass different weights every time). Call them from outside parallel regions only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/direct.hpp"
#include "ddpm/backend/cpu/gemm.hpp"
#include "ddpm/backend/cpu/im2col.hpp"
#include "ddpm/backend/cpu/winograd.hpp"

namespace ddpm::detail::cpu {

/// Convolution algorithm. `automatic` picks per shape (see README-kernels.md for the measurements
/// behind the choice); the others force one (for tests and benchmarks) and fall back to `gemm`
/// where they do not apply.
enum class ConvAlgo {
  automatic,
  gemm,      ///< implicit-im2col GEMM (any shape)
  winograd,  ///< Winograd F(4x4, 3x3) (3x3, stride 1, pad 1; all three passes)
  direct,    ///< direct loops (stride 1, pad < kernel; weight gradient: 3x3 pad 1 only)
};

/// y = conv(x, w) + bias (bias may be null; y is overwritten). x: (n, c_in, h, w); w: (c_out, c_in,
/// k, k); y: (n, c_out, h_out, w_out). Deterministic: bitwise the same for any thread count.
/// Accuracy: `automatic` uses Winograd F(4x4, 3x3) for 3x3 stride-1 pad-1 layers with >= 8
/// channels on both sides; its error is about 1e-5 of max |y| (up to ~2e-5 at 512 input channels,
/// tested < 1e-4), some 10x the GEMM's. Near-zero outputs therefore carry an absolute error of
/// that size: compare with a tolerance relative to the output's scale, not per element.
inline void conv2d_forward(Context& ctx, const Conv2dShape& s, const float* x, const float* w,
                           const float* bias, float* y, ConvAlgo algo = ConvAlgo::automatic);

/// dx (= or += per `accumulate`) = conv_transpose(dy, w): the gradient of conv2d_forward with
/// respect to x. dy: (n, c_out, h_out, w_out); dx: (n, c_in, h, w).
inline void conv2d_backward_data(Context& ctx, const Conv2dShape& s, const float* w,
                                 const float* dy, float* dx, bool accumulate,
                                 ConvAlgo algo = ConvAlgo::automatic);

/// dw += sum_n corr(x_n, dy_n) (the gradient with respect to w); db += sum over n, h, w of dy when
/// db is not null. Always accumulates. Deterministic: every element of dw and db is reduced over the
/// whole batch by one task in a fixed order.
inline void conv2d_backward_weight(Context& ctx, const Conv2dShape& s, const float* x,
                                   const float* dy, float* dw, float* db,
                                   ConvAlgo algo = ConvAlgo::automatic);

// ---------------------------------------------------------------- implementation

namespace conv_detail {

/// Thread- and shared-scratch slots used by the convolutions (gemm::scratch_slot is the GEMM's).
inline constexpr std::size_t slot_weights = 0;     ///< shared: packed / transformed weights
inline constexpr std::size_t slot_weights_tmp = 1;  ///< shared: rearranged weights before packing
inline constexpr std::size_t slot_col = 0;          ///< thread: column buffers

/// A grow-only per-thread array of at least `count` runs (allocates only when a call needs more).
inline im2col::Run* run_buffer(std::size_t count) {
  thread_local std::vector<im2col::Run> runs;
  if (runs.size() < count) runs.resize(count);
  return runs.data();
}

/// Output columns per task: whole images when small, otherwise near-equal chunks of <= 1024
/// columns (a multiple of gemm::nr). Depends on the shape only.
inline std::size_t column_chunk(std::size_t hwo) noexcept {
  if (hwo <= 1024) return hwo;
  const std::size_t chunks = (hwo + 1023) / 1024;
  return gemm::round_up((hwo + chunks - 1) / chunks, gemm::nr);
}

/// y_n = Wp * im2col_s(x_n) (+ y_n when beta == 1) for every image, Wp prepacked (M = s.c_out rows,
/// K = s.c_in k k). bias (may be null) is written into y first and beta set to 1.
inline void forward_gemm_prepacked(Context& ctx, const Conv2dShape& s, const float* x,
                                   const float* wp, const float* bias, float beta, float* y) {
  const std::size_t M = s.c_out, K = s.c_in * s.kernel * s.kernel, hwo = s.h_out() * s.w_out();
  const std::size_t hw = s.h * s.w;
  const std::size_t chunk = column_chunk(hwo), nchunks = (hwo + chunk - 1) / chunk;
  const std::size_t row_size = chunk + 16;
  ctx.reserve_thread_scratch(slot_col, row_size);
  ctx.reserve_thread_scratch(gemm::scratch_slot, gemm::workspace_size(M, chunk, K));
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, s.n * nchunks, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t t = r.begin(); t != r.end(); ++t) {
            const std::size_t n = t / nchunks, j0 = (t % nchunks) * chunk;
            const std::size_t len = std::min(chunk, hwo - j0);
            float* yn = y + n * M * hwo;
            float b = beta;
            if (bias) {
              for (std::size_t co = 0; co < M; ++co) std::fill_n(yn + co * hwo + j0, len, bias[co]);
              b = 1.0f;
            }
            const float* xn = x + n * s.c_in * hw;
            float* row = ctx.thread_scratch(slot_col, row_size);
            im2col::Run* runs = run_buffer(chunk + 1);
            gemm::gemm_blocked(
                M, len, K, 1.0f,
                [&](std::size_t i0, std::size_t, std::size_t k0, std::size_t k, float*) {
                  return gemm::prepacked_a_block(wp, M, i0, k0, k);
                },
                [&](std::size_t k0, std::size_t k, std::size_t jj, std::size_t nn, float* dst) {
                  im2col::pack_b_forward(s, xn, k0, k, j0 + jj, nn, dst, row, runs);
                },
                b, yn + j0, hwo,
                ctx.thread_scratch(gemm::scratch_slot, gemm::workspace_size(M, len, K)));
          }
        },
        tbb::simple_partitioner());
  });
}

/// Packs w (c_out x c_in k k) as the GEMM's A operand into shared scratch.
inline const float* prepack_weights(Context& ctx, const Conv2dShape& s, const float* w) {
  const std::size_t M = s.c_out, K = s.c_in * s.kernel * s.kernel;
  float* wp = ctx.shared_scratch(slot_weights, gemm::prepacked_a_size(M, K));
  gemm::prepack_a(false, w, K, M, K, wp);
  return wp;
}

inline void forward_gemm(Context& ctx, const Conv2dShape& s, const float* x, const float* w,
                         const float* bias, float* y) {
  forward_gemm_prepacked(ctx, s, x, prepack_weights(ctx, s, w), bias, 0.0f, y);
}

/// The stride-1 adjoint of s: the convolution dy -> dx (c_in and c_out swapped, pad k-1-p).
inline Conv2dShape adjoint_stride1(const Conv2dShape& s) noexcept {
  Conv2dShape t = s;
  t.c_in = s.c_out;
  t.c_out = s.c_in;
  t.h = s.h_out();
  t.w = s.w_out();
  t.pad = s.kernel - 1 - s.pad;
  return t;
}

/// wt[ci][co][kh][kw] = w[co][ci][k-1-kh][k-1-kw] (weights of adjoint_stride1(s)), in shared
/// scratch slot_weights_tmp.
inline const float* flipped_weights(Context& ctx, const Conv2dShape& s, const float* w) {
  const std::size_t kk = s.kernel * s.kernel;
  float* wt = ctx.shared_scratch(slot_weights_tmp, s.c_in * s.c_out * kk);
  for (std::size_t ci = 0; ci < s.c_in; ++ci)
    for (std::size_t co = 0; co < s.c_out; ++co) {
      const float* src = w + (co * s.c_in + ci) * kk;
      float* dst = wt + (ci * s.c_out + co) * kk;
      for (std::size_t q = 0; q < kk; ++q) dst[q] = src[kk - 1 - q];
    }
  return wt;
}

/// Stride 1: dx = corr(dy padded by k-1-p, w flipped in space with c_in and c_out swapped).
inline void backward_data_gemm_stride1(Context& ctx, const Conv2dShape& s, const float* w,
                                       const float* dy, float* dx, bool accumulate) {
  const Conv2dShape t = adjoint_stride1(s);
  forward_gemm_prepacked(ctx, t, dy, prepack_weights(ctx, t, flipped_weights(ctx, s, w)), nullptr,
                         accumulate ? 1.0f : 0.0f, dx);
}

/// Any stride: per image dcol = w^T dy_n, then col2im into dx_n.
inline void backward_data_gemm_col2im(Context& ctx, const Conv2dShape& s, const float* w,
                                      const float* dy, float* dx, bool accumulate) {
  const std::size_t K = s.c_out, M = s.c_in * s.kernel * s.kernel, hwo = s.h_out() * s.w_out();
  const std::size_t hw = s.h * s.w;
  float* wp = ctx.shared_scratch(slot_weights, gemm::prepacked_a_size(M, K));
  gemm::prepack_a(true, w, M, M, K, wp);
  const std::size_t dcol_size = M * hwo, work_size = gemm::workspace_size(M, hwo, K);
  ctx.reserve_thread_scratch(slot_col, dcol_size);
  ctx.reserve_thread_scratch(gemm::scratch_slot, work_size);
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, s.n, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t n = r.begin(); n != r.end(); ++n) {
            float* dcol = ctx.thread_scratch(slot_col, dcol_size);
            const float* dyn = dy + n * K * hwo;
            gemm::gemm_blocked(
                M, hwo, K, 1.0f,
                [&](std::size_t i0, std::size_t, std::size_t k0, std::size_t k, float*) {
                  return gemm::prepacked_a_block(wp, M, i0, k0, k);
                },
                [&](std::size_t k0, std::size_t k, std::size_t j0, std::size_t nn, float* dst) {
                  gemm::pack_b(false, dyn, hwo, k0, k, j0, nn, dst);
                },
                0.0f, dcol, hwo,
                ctx.thread_scratch(gemm::scratch_slot, work_size));
            float* dxn = dx + n * s.c_in * hw;
            if (!accumulate) std::fill_n(dxn, s.c_in * hw, 0.0f);
            im2col::col2im_add(s, dcol, dxn, 0, s.c_in);
          }
        },
        tbb::simple_partitioner());
  });
}

/// dw += dy * im2col(x)^T as one GEMM over all images (K = n h_out w_out), parallel over blocks of
/// dw only.
/// K ranges of a GEMM-path weight gradient (dw: M x N, K = n h_out w_out) computed apart and added
/// in order: 1 when dw has 8 or more column panels (blocks of dw give the threads work) or K is
/// under 8192, else one per 4096 of K, at most 8. Depends on the shape only.
[[nodiscard]] inline std::size_t weight_gemm_chunks(std::size_t M, std::size_t N,
                                                    std::size_t K) noexcept {
  const std::size_t panels = ((N + gemm::nr - 1) / gemm::nr) * ((M + gemm::mc - 1) / gemm::mc);
  if (panels >= 8 || K < 8192) return 1;
  return std::min<std::size_t>(8, K / 4096);
}

inline void backward_weight_gemm(Context& ctx, const Conv2dShape& s, const float* x,
                                 const float* dy, float* dw) {
  const std::size_t M = s.c_out, N = s.c_in * s.kernel * s.kernel;
  const std::size_t K = s.n * s.h_out() * s.w_out();
  // packers of the rows q_off + q of dy (A: M x K) and of x's columns (B^T: K x N)
  const auto pack_a = [&](std::size_t q_off) {
    return [&, q_off](std::size_t i0, std::size_t m, std::size_t q0, std::size_t k, float* dst) {
      im2col::pack_a_dy(s, dy, i0, m, q_off + q0, k, dst);
      return static_cast<const float*>(dst);
    };
  };
  const auto pack_b = [&](std::size_t q_off) {
    return [&, q_off](std::size_t q0, std::size_t k, std::size_t j0, std::size_t n, float* dst) {
      alignas(64) float tmp[gemm::nr * gemm::kc];
      im2col::Run runs[gemm::kc + 1];
      im2col::pack_b_xt(s, x, q_off + q0, k, j0, n, dst, tmp, runs);
    };
  };
  const std::size_t chunks = weight_gemm_chunks(M, N, K);
  if (chunks == 1) {
    gemm::gemm_blocked_parallel(ctx, M, N, K, 1.0f, pack_a(0), pack_b(0), 1.0f, dw, N);
    return;
  }
  // A small dw (few column panels) and a long K: blocks of dw alone would give one task and two
  // barriers per 256-deep K block. K is cut into `chunks` shape-only ranges instead, one task
  // each (a serial GEMM into its own partial sums), and the partial sums are added in order.
  float* part = ctx.shared_scratch(slot_weights_tmp, chunks * M * N);
  const std::size_t work = gemm::workspace_size(M, N, (K + chunks - 1) / chunks);
  ctx.reserve_thread_scratch(gemm::scratch_slot, work);
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, chunks, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          float* buf = ctx.thread_scratch(gemm::scratch_slot, work);
          for (std::size_t c = r.begin(); c != r.end(); ++c) {
            const std::size_t q0 = c * K / chunks, q1 = (c + 1) * K / chunks;
            gemm::gemm_blocked(M, N, q1 - q0, 1.0f, pack_a(q0), pack_b(q0), 0.0f,
                               part + c * M * N, N, buf);
          }
        },
        tbb::simple_partitioner());
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, M * N, 1024),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t i = r.begin(); i != r.end(); ++i) {
            float sum = part[i];
            for (std::size_t c = 1; c < chunks; ++c) sum += part[c * M * N + i];
            dw[i] += sum;
          }
        },
        tbb::simple_partitioner());
  });
}

/// db[co] += sum over n, h, w of dy[n][co]: per channel, images in order, each image's plane summed
/// with 8 interleaved partial sums, in double across images.
inline void backward_bias(Context& ctx, const Conv2dShape& s, const float* dy, float* db) {
  const std::size_t hwo = s.h_out() * s.w_out();
  ctx.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, s.c_out, 8),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t co = r.begin(); co != r.end(); ++co) {
            double total = 0.0;
            for (std::size_t n = 0; n < s.n; ++n) {
              const float* p = dy + (n * s.c_out + co) * hwo;
              float part[8] = {};
              std::size_t i = 0;
              for (; i + 8 <= hwo; i += 8)
                for (std::size_t l = 0; l < 8; ++l) part[l] += p[i + l];
              for (std::size_t l = 0; i < hwo; ++i, ++l) part[l] += p[i];
              total += double((part[0] + part[4]) + (part[1] + part[5])) +
                       double((part[2] + part[6]) + (part[3] + part[7]));
            }
            db[co] += static_cast<float>(total);
          }
        },
        tbb::simple_partitioner());
  });
}

inline bool winograd_applies(const Conv2dShape& s) noexcept {
  return s.kernel == 3 && s.stride == 1 && s.pad == 1;
}

inline bool direct_applies(const Conv2dShape& s) noexcept {
  return s.stride == 1 && s.pad < s.kernel;
}

/// Fewest channels on both sides for which Winograd is used (below it, Winograd's transforms
/// dominate; measured, see benchmarks/ops/README-kernels.md).
inline constexpr std::size_t winograd_min_channels = 8;

/// The algorithm for a forward convolution of shape s (backward-data asks with the adjoint).
inline ConvAlgo choose_forward(const Conv2dShape& s, ConvAlgo algo) noexcept {
  if (algo == ConvAlgo::winograd && winograd_applies(s)) return ConvAlgo::winograd;
  if (algo == ConvAlgo::direct && direct_applies(s)) return ConvAlgo::direct;
  if (algo != ConvAlgo::automatic) return ConvAlgo::gemm;
  if (!winograd_applies(s)) return ConvAlgo::gemm;
  if (std::min(s.c_in, s.c_out) >= winograd_min_channels) return ConvAlgo::winograd;
  // conv_in-like (few inputs, many outputs): GEMM. conv_out-like (few outputs): direct loops on
  // small images, Winograd on large ones (measured: 28x28 direct 12-15 vs Winograd 9 GFLOP/s;
  // 64x64 Winograd 26-31 vs direct 21-22).
  if (s.c_out >= winograd_min_channels) return ConvAlgo::gemm;
  return s.h_out() * s.w_out() >= 2048 && s.c_in >= winograd_min_channels ? ConvAlgo::winograd
                                                                         : ConvAlgo::direct;
}

/// The algorithm for the weight gradient of shape s.
inline ConvAlgo choose_weight(const Conv2dShape& s, ConvAlgo algo) noexcept {
  if (!winograd_applies(s)) return ConvAlgo::gemm;
  if (algo != ConvAlgo::automatic) return algo;
  if (std::min(s.c_in, s.c_out) >= winograd_min_channels) return ConvAlgo::winograd;
  return s.c_out < winograd_min_channels ? ConvAlgo::direct : ConvAlgo::gemm;
}

}  // namespace conv_detail

inline void conv2d_forward(Context& ctx, const Conv2dShape& s, const float* x, const float* w,
                           const float* bias, float* y, ConvAlgo algo) {
  if (s.n == 0 || s.c_out == 0) return;
  switch (conv_detail::choose_forward(s, algo)) {
    case ConvAlgo::winograd: {
      const winograd::Problem p{s.n, s.c_in, s.h, s.w, s.c_out, false};
      winograd::convolve(ctx, p, x, w, bias, y, false, conv_detail::slot_weights);
      return;
    }
    case ConvAlgo::direct:
      direct::forward(ctx, s, x, w, bias, y, false);
      return;
    default:
      conv_detail::forward_gemm(ctx, s, x, w, bias, y);
  }
}

inline void conv2d_backward_data(Context& ctx, const Conv2dShape& s, const float* w,
                                 const float* dy, float* dx, bool accumulate, ConvAlgo algo) {
  if (s.n == 0 || s.c_in == 0) return;
  const bool stride1 = s.stride == 1 && s.pad < s.kernel;
  const ConvAlgo a = stride1 ? conv_detail::choose_forward(conv_detail::adjoint_stride1(s), algo)
                             : ConvAlgo::gemm;
  if (a == ConvAlgo::winograd) {
    const winograd::Problem p{s.n, s.c_out, s.h, s.w, s.c_in, true};
    winograd::convolve(ctx, p, dy, w, nullptr, dx, accumulate, conv_detail::slot_weights);
  } else if (a == ConvAlgo::direct) {
    direct::forward(ctx, conv_detail::adjoint_stride1(s), dy,
                    conv_detail::flipped_weights(ctx, s, w), nullptr, dx, accumulate);
  } else if (stride1) {
    conv_detail::backward_data_gemm_stride1(ctx, s, w, dy, dx, accumulate);
  } else {
    conv_detail::backward_data_gemm_col2im(ctx, s, w, dy, dx, accumulate);
  }
}

inline void conv2d_backward_weight(Context& ctx, const Conv2dShape& s, const float* x,
                                   const float* dy, float* dw, float* db, ConvAlgo algo) {
  if (s.c_out == 0) return;
  if (s.n != 0 && s.c_in != 0) {
    switch (conv_detail::choose_weight(s, algo)) {
      case ConvAlgo::winograd: {
        const winograd::Problem p{s.n, s.c_in, s.h, s.w, s.c_out, false};
        winograd::weight_gradient(ctx, p, x, dy, dw);
        break;
      }
      case ConvAlgo::direct:
        direct::weight_gradient3(ctx, s, x, dy, dw);
        break;
      default:
        conv_detail::backward_weight_gemm(ctx, s, x, dy, dw);
    }
  }
  if (db) conv_detail::backward_bias(ctx, s, dy, db);
}

}  // namespace ddpm::detail::cpu
