// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/group_norm.cuh — GroupNorm (+ fused SiLU) forward and backward: one block per
// (sample, group), fp32 statistics, deterministic block reductions; the parameter gradients from
// per-(sample, channel) partials added over the samples in order. nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cuda_runtime.h>

#include <cstddef>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/elementwise.cuh"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/core/assert.hpp"

namespace ddpm::detail::cuda {

/// Most threads per block of the GroupNorm kernels (their __launch_bounds__).
inline constexpr unsigned group_norm_max_threads = 512;

/// Threads per (sample, group) block: enough for the elements, no more (a multiple of 32, at most
/// group_norm_max_threads).
inline unsigned group_norm_threads(std::size_t elements) {
  return elements <= 256 ? 64u : (elements <= 2048 ? 128u : (elements <= 16384 ? 256u : 512u));
}

/// Block (n, g): mean and rstd of the group (two passes), then y = gamma xhat + beta (+ SiLU).
template <class T>
__global__ void __launch_bounds__(group_norm_max_threads) group_norm_forward_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean,
                                          T* rstd, unsigned C, unsigned G, unsigned HW, double eps,
                                          bool silu) {
  __shared__ float sh[32];
  const unsigned Cg = C / G, g = blockIdx.x % G;
  const std::size_t n = blockIdx.x / G;
  const std::size_t base = (n * C + std::size_t(g) * Cg) * HW;
  const unsigned M = Cg * HW;
  const T* xp = x + base;
  float s = 0.0f;
  for (unsigned i = threadIdx.x; i < M; i += blockDim.x) s += xp[i];
  const float mu = block_sum(s, sh) / float(M);
  float ss = 0.0f;
  for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
    const float d = xp[i] - mu;
    ss += d * d;
  }
  const float var = block_sum(ss, sh) / float(M);
  const float r = float(1.0 / sqrt(double(var) + eps));
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = r;
  }
  T* yp = y + base;
  for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
    const unsigned ch = g * Cg + i / HW;
    float z = gamma[ch] * (xp[i] - mu) * r + beta[ch];
    if (silu) z = z * sigmoidf_(z);
    yp[i] = z;
  }
}

/// Block (n, g): per channel, s1 = sum g and s2 = sum g xhat (g = dy, times SiLU' if fused), written
/// to part_b / part_g[n, c]; then dx (+)= rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat)).
/// Dynamic shared memory: 2 Cg floats.
template <class T>
__global__ void __launch_bounds__(group_norm_max_threads) group_norm_backward_kernel(const T* x, const T* gamma, const T* beta, const T* mean,
                                           const T* rstd, const T* dy, T* dx, T* part_b, T* part_g,
                                           unsigned C, unsigned G, unsigned HW, bool silu, bool acc) {
  extern __shared__ float sums[];  // [0, Cg): s1, [Cg, 2 Cg): s2
  __shared__ float sh[32];
  const unsigned Cg = C / G, g = blockIdx.x % G;
  const std::size_t n = blockIdx.x / G;
  const float mu = mean[blockIdx.x], r = rstd[blockIdx.x];
  for (unsigned c = 0; c < Cg; ++c) {
    const unsigned ch = g * Cg + c;
    const float gam = gamma[ch], bet = beta[ch];
    const T* xc = x + (n * C + ch) * HW;
    const T* dc = dy + (n * C + ch) * HW;
    float a1 = 0.0f, a2 = 0.0f;
    for (unsigned i = threadIdx.x; i < HW; i += blockDim.x) {
      const float xhat = (xc[i] - mu) * r;
      float gr = dc[i];
      if (silu) gr *= silu_grad_(gam * xhat + bet);
      a1 += gr;
      a2 += gr * xhat;
    }
    a1 = block_sum(a1, sh);
    a2 = block_sum(a2, sh);
    if (threadIdx.x == 0) {
      sums[c] = a1;
      sums[Cg + c] = a2;
      part_b[n * C + ch] = a1;
      part_g[n * C + ch] = a2;
    }
  }
  if (!dx) return;
  __syncthreads();
  double m1 = 0.0, m2 = 0.0;  // every thread, same order
  for (unsigned c = 0; c < Cg; ++c) {
    const double gam = gamma[g * Cg + c];
    m1 += gam * double(sums[c]);
    m2 += gam * double(sums[Cg + c]);
  }
  const unsigned M = Cg * HW;
  const float m1f = float(m1 / double(M)), m2f = float(m2 / double(M));
  const std::size_t base = (n * C + std::size_t(g) * Cg) * HW;
  for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
    const unsigned ch = g * Cg + i / HW;
    const float gam = gamma[ch];
    const float xhat = (x[base + i] - mu) * r;
    float gr = dy[base + i];
    if (silu) gr *= silu_grad_(gam * xhat + beta[ch]);
    const float v = r * (gr * gam - m1f - xhat * m2f);
    dx[base + i] = acc ? dx[base + i] + v : v;
  }
}

inline void check_group_norm(std::size_t C, std::size_t G, std::size_t HW) {
  DDPM_REQUIRE(G > 0 && C % G == 0, "backend::Cuda group_norm", G, " groups do not divide ", C,
               " channels");
  DDPM_REQUIRE(C * HW <= std::size_t(UINT_MAX), "backend::Cuda group_norm",
               "a sample of ", C * HW, " elements exceeds the 32-bit range");
}

template <class D>
void Kernels<D>::group_norm_forward(const Be& be, CFV x, CFV gamma, CFV beta, FV y, FV mean,
                                    FV rstd, std::size_t groups, double eps, bool silu) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w();
  if (N == 0 || C == 0) return;
  check_group_norm(C, groups, HW);
  const unsigned threads = group_norm_threads(C / groups * HW);
  group_norm_forward_kernel<float><<<unsigned(N * groups), threads, 0, ctx(be).stream>>>(
      x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), unsigned(C),
      unsigned(groups), unsigned(HW), eps, silu);
  DDPM_CUDA_CHECK_LAUNCH();
}

template <class D>
void Kernels<D>::group_norm_backward(const Be& be, CFV x, CFV gamma, CFV beta, CFV mean, CFV rstd,
                                     CFV dy, FV dx, FV dgamma, FV dbeta, std::size_t groups,
                                     bool silu, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w();
  if (N == 0 || C == 0) return;
  check_group_norm(C, groups, HW);
  Context& c = ctx(be);
  float* part = c.scratch_as<float>(slot::partial, 2 * N * C);
  float* part_b = part;
  float* part_g = part + N * C;
  const std::size_t Cg = C / groups;
  const unsigned threads = group_norm_threads(HW * 4);
  // Dynamic shared memory: the per-channel sums of one group (2 Cg floats), beside the kernel's
  // 32 static floats. Checked here, so that too many channels per group is an error that says so
  // rather than a failed launch.
  const std::size_t smem = 2 * Cg * sizeof(float);
  DDPM_REQUIRE(smem + 32 * sizeof(float) <= c.max_shared_per_block, "backend::Cuda group_norm_backward",
               Cg, " channels per group need ", smem + 32 * sizeof(float), " bytes of shared memory per block; device ",
               c.device, " allows ", c.max_shared_per_block, " (cudaDevAttrMaxSharedMemoryPerBlock): use more groups");
  group_norm_backward_kernel<float><<<unsigned(N * groups), threads, smem, c.stream>>>(
      x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), dy.data(),
      dx.empty() ? nullptr : dx.data(), part_b, part_g, unsigned(C), unsigned(groups), unsigned(HW),
      silu, acc);
  DDPM_CUDA_CHECK_LAUNCH();
  col_sums(c.stream, part_g, dgamma.data(), N, C, true);
  col_sums(c.stream, part_b, dbeta.data(), N, C, true);
}

}  // namespace ddpm::detail::cuda
