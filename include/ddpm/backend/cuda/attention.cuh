// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/attention.cuh — single-head self-attention over the H W positions: batched
// cuBLAS GEMMs per sample and a row softmax (one warp per row). nvcc only.
//
// Per sample, with q, k, v (C x P) and probs (P x P), as ddpm/backend/reference.hpp:
//   forward   S = scale q^T k;  probs = softmax_rows(S);  out = v probs^T
//   backward  dv = dout probs;  dP = dout^T v;  dS = probs (dP - rowsum(dP probs));
//             dq = scale k dS^T;  dk = scale q dS
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/gemm.cuh"
#include "ddpm/backend/cuda/ops.hpp"

namespace ddpm::detail::cuda {

/// Row softmax in place, one warp per row: exp(x - max) / sum (expf, the accurate one).
template <class T>
__global__ void __launch_bounds__(256) softmax_rows_kernel(T* x, std::size_t rows, unsigned len) {
  const std::size_t wpb = blockDim.x / 32, lane = threadIdx.x & 31u;
  for (std::size_t r = std::size_t(blockIdx.x) * wpb + threadIdx.x / 32; r < rows;
       r += std::size_t(gridDim.x) * wpb) {
    T* row = x + r * len;
    float mx = -INFINITY;
    for (unsigned j = unsigned(lane); j < len; j += 32) mx = row[j] > mx ? row[j] : mx;
    mx = warp_max(mx);
    float z = 0.0f;
    for (unsigned j = unsigned(lane); j < len; j += 32) {
      const float e = expf(row[j] - mx);
      row[j] = e;
      z += e;
    }
    z = __shfl_sync(0xffffffffu, warp_sum(z), 0);
    for (unsigned j = unsigned(lane); j < len; j += 32) row[j] = row[j] / z;
  }
}

/// ds = p (ds - sum_j ds_j p_j) per row, in place in ds, one warp per row.
template <class T>
__global__ void __launch_bounds__(256) softmax_backward_rows_kernel(const T* p, T* ds, std::size_t rows, unsigned len) {
  const std::size_t wpb = blockDim.x / 32, lane = threadIdx.x & 31u;
  for (std::size_t r = std::size_t(blockIdx.x) * wpb + threadIdx.x / 32; r < rows;
       r += std::size_t(gridDim.x) * wpb) {
    const T* pr = p + r * len;
    T* dr = ds + r * len;
    float dot = 0.0f;
    for (unsigned j = unsigned(lane); j < len; j += 32) dot += dr[j] * pr[j];
    dot = __shfl_sync(0xffffffffu, warp_sum(dot), 0);
    for (unsigned j = unsigned(lane); j < len; j += 32) dr[j] = pr[j] * (dr[j] - dot);
  }
}

inline unsigned warp_row_blocks(std::size_t rows) {
  const std::size_t b = (rows + 7) / 8;  // 8 warps per 256-thread block
  return unsigned(b == 0 ? 1 : (b < max_grid_x ? b : max_grid_x));
}

/// 1 / sqrt(C) in float, as the reference.
inline float attention_scale(std::size_t C) { return 1.0f / std::sqrt(float(C)); }

template <class D>
void Kernels<D>::attention_forward(const Be& be, CFV qkv, FV probs, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
  if (N == 0 || P == 0) return;
  Context& c = ctx(be);
  const float* q = qkv.data();
  const float* k = q + C * P;
  const float* v = k + C * P;
  const std::size_t s3 = 3 * C * P, pp = P * P;
  DDPM_REQUIRE(P <= std::size_t(UINT_MAX), "backend::Cuda attention", "too many positions: ", P);
  // S (P x P) = scale q^T k
  gemm_rm_batched(c, be.tf32, true, false, P, P, C, attention_scale(C), q, P, s3, k, P, s3, 0.0f,
                  probs.data(), P, pp, N);
  softmax_rows_kernel<float><<<warp_row_blocks(N * P), 256, 0, c.stream>>>(probs.data(), N * P, unsigned(P));
  DDPM_CUDA_CHECK_LAUNCH();
  // out (C x P) = v probs^T
  gemm_rm_batched(c, be.tf32, false, true, C, P, P, 1.0f, v, P, s3, probs.data(), P, pp, 0.0f, out.data(), P,
                  C * P, N);
}

template <class D>
void Kernels<D>::attention_backward(const Be& be, CFV qkv, CFV probs, CFV dout, FV dqkv) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
  if (N == 0 || P == 0) return;
  Context& c = ctx(be);
  const std::size_t s3 = 3 * C * P, pp = P * P, cp = C * P;
  const float scale = attention_scale(C);
  const std::size_t Nc = chunk_samples(N, pp * sizeof(float), chunk_budget(be));
  float* ds = c.scratch_as<float>(slot::col, Nc * pp);
  for (std::size_t n0 = 0; n0 < N; n0 += Nc) {
    const std::size_t nc = std::min(Nc, N - n0);
    const float* q = qkv.data() + n0 * s3;
    const float* k = q + cp;
    const float* v = k + cp;
    const float* pr = probs.data() + n0 * pp;
    const float* d = dout.data() + n0 * cp;
    float* dq = dqkv.data() + n0 * s3;
    float* dk = dq + cp;
    float* dv = dk + cp;
    // dv (C x P) = dout (C x P) probs (P x P)
    gemm_rm_batched(c, be.tf32, false, false, C, P, P, 1.0f, d, P, cp, pr, P, pp, 0.0f, dv, P, s3, nc);
    // dP (P x P) = dout^T (P x C) v (C x P)
    gemm_rm_batched(c, be.tf32, true, false, P, P, C, 1.0f, d, P, cp, v, P, s3, 0.0f, ds, P, pp, nc);
    softmax_backward_rows_kernel<float><<<warp_row_blocks(nc * P), 256, 0, c.stream>>>(pr, ds, nc * P, unsigned(P));
    DDPM_CUDA_CHECK_LAUNCH();
    // dq (C x P) = scale k (C x P) dS^T
    gemm_rm_batched(c, be.tf32, false, true, C, P, P, scale, k, P, s3, ds, P, pp, 0.0f, dq, P, s3, nc);
    // dk (C x P) = scale q (C x P) dS
    gemm_rm_batched(c, be.tf32, false, false, C, P, P, scale, q, P, s3, ds, P, pp, 0.0f, dk, P, s3, nc);
  }
}

}  // namespace ddpm::detail::cuda
