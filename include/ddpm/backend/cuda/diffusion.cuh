// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/diffusion.cuh — the policy-dependent operations: diffusion_loss<P, L> (loss and
// gradient with a deterministic reduction) and predict<P>. The target and loss policies run inside
// the kernels (their members are DDPM_HOST_DEVICE). nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cuda_runtime.h>

#include <cstddef>
#include <type_traits>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/elementwise.cuh"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/core/policy.hpp"
#include "ddpm/core/vmath.hpp"

namespace ddpm::detail::cuda {

/// Block (x, n): d = out - P::target(x0, eps, a[n], s[n]) over its share of sample n;
/// dout = w[n] L.grad(d) / numel; partial[n * gridDim.x + x] = w[n] * sum L.value(d) (double); the
/// last block writes the sum of all partials to *result.
template <class P, class L>
__global__ void __launch_bounds__(block_threads) diffusion_loss_kernel(L loss, const float* out, const float* x0, const float* eps,
                                      const float* a, const float* s, const float* w, float* dout,
                                      std::size_t N, std::size_t item, float inv, double* partial,
                                      unsigned* counter, double* result) {
  __shared__ double sh[32];
  for (std::size_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float an = a[n], sn = s[n], wn = w ? w[n] : 1.0f;
    double acc = 0.0;
    for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < item;
         i += std::size_t(gridDim.x) * blockDim.x) {
      const std::size_t e = n * item + i;
      const float d = out[e] - detail::target_target<P, float>(x0[e], eps[e], an, sn);
      acc += double(detail::loss_value(loss, d));
      dout[e] = wn * detail::loss_grad(loss, d) * inv;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) partial[n * gridDim.x + blockIdx.x] = double(wn) * acc;
  }
  finish_partials(partial, N * gridDim.x, counter, result, sh);
}

template <class P>
struct PredictOp {
  const float* xt;
  const float* out;
  const float* a;
  const float* s;
  float* x0;
  float* eps;  // null: not wanted
  std::size_t item;
  bool clip;
  __device__ void operator()(std::size_t n, unsigned i) const {
    const std::size_t e = n * item + i;
    const float an = a[n], sn = s[n], xv = xt[e], ov = out[e];
    float x = detail::target_x0<P, float>(xv, ov, an, sn);
    if (clip) {
      x = VMath<float>::clamp(x, -1.0f, 1.0f);
      if (eps) eps[e] = (xv - an * x) / sn;
    } else if (eps) {
      eps[e] = detail::target_eps<P, float>(xv, ov, an, sn);
    }
    x0[e] = x;
  }
};

template <class P, class L>
double LossKernels<P, L>::run(const backend::Cuda& be, const L& loss, CFV out, CFV x0, CFV eps, CFV a,
                              CFV s, CFV w, FV dout) {
  const On on_(be);  // the tag's device, whichever is current
  static_assert(std::is_trivially_copyable_v<L>,
                "ddpm: a loss policy used with backend::Cuda is passed to a kernel by value and must "
                "be trivially copyable");
  const std::size_t N = out.n(), total = out.size();
  if (N == 0 || total == 0) return 0.0;
  const std::size_t item = total / N;
  Context& c = ctx(be);
  // Grid and partial count depend on the shape only, so the sum order is fixed.
  std::size_t gx = (item + 4 * block_threads - 1) / (4 * block_threads);
  gx = gx < 1 ? 1 : (gx > 256 ? 256 : gx);
  const std::size_t gy = N < max_grid_y ? N : max_grid_y;
  double* partial = c.scratch_as<double>(slot::partial, N * gx);
  diffusion_loss_kernel<P, L><<<dim3(unsigned(gx), unsigned(gy)), block_threads, 0, c.stream>>>(
      loss, out.data(), x0.data(), eps.data(), a.data(), s.data(), w.empty() ? nullptr : w.data(),
      dout.data(), N, item, 1.0f / float(total), partial, c.reduce_counter, c.device_result);
  DDPM_CUDA_CHECK_LAUNCH();
  return reduction_result(c) / double(total);
}

template <class P>
void TargetKernels<P>::run(const backend::Cuda& be, CFV xt, CFV out, CFV a, CFV s, bool clip, FV x0,
                           FV eps) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = xt.n(), total = xt.size();
  if (N == 0 || total == 0) return;
  const std::size_t item = total / N;
  launch_rows(ctx(be).stream, N, item,
              PredictOp<P>{xt.data(), out.data(), a.data(), s.data(), x0.data(),
                           eps.empty() ? nullptr : eps.data(), item, clip});
}

}  // namespace ddpm::detail::cuda
