// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/common.cuh — error checks, launch shapes and deterministic block reductions
// shared by the CUDA backend's kernels. nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ddpm/core/assert.hpp"

namespace ddpm::detail::cuda {

/// Throws std::runtime_error("ddpm: CUDA error <name> (<text>) in <call> at <file>:<line>").
inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(cat("ddpm: CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                                 ") in ", call, " at ", file, ":", line));
}

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(cat("ddpm: cuBLAS error ", cublas_status_name(s), " in ", call, " at ",
                                 file, ":", line));
}

}  // namespace ddpm::detail::cuda

/// Throws std::runtime_error naming the call, file and line unless `expr` returns cudaSuccess
/// (dlib's CHECK_CUDA).
#define DDPM_CUDA_CHECK(expr) ::ddpm::detail::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define DDPM_CUBLAS_CHECK(expr) ::ddpm::detail::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
/// After a kernel launch: reports a bad launch configuration at once (execution errors surface at
/// the next synchronising call).
#define DDPM_CUDA_CHECK_LAUNCH() DDPM_CUDA_CHECK(cudaGetLastError())

namespace ddpm::detail::cuda {

/// Threads per block of the element-wise and row kernels.
inline constexpr unsigned block_threads = 256;
/// Upper bound of the x grid size of grid-stride loops (enough to fill any current GPU).
inline constexpr std::size_t max_grid_x = std::size_t{1} << 16;
/// Upper bound of the y grid size (the hardware limit).
inline constexpr std::size_t max_grid_y = 65535;

/// Blocks for a grid-stride loop over n items with `block` threads.
inline unsigned grid_for(std::size_t n, unsigned block = block_threads) {
  const std::size_t b = (n + block - 1) / block;
  return unsigned(b < max_grid_x ? (b == 0 ? 1 : b) : max_grid_x);
}

/// A 2-D grid for row kernels: x over the elements of a row (grid-stride), y over rows
/// (grid-stride). Both loops are in the kernels, so any sizes work.
inline dim3 grid_rows(std::size_t rows, std::size_t row_len, unsigned block = block_threads) {
  std::size_t gx = (row_len + block - 1) / block;
  gx = gx == 0 ? 1 : (gx > 1024 ? 1024 : gx);
  std::size_t gy = rows == 0 ? 1 : (rows > max_grid_y ? max_grid_y : rows);
  // keep the total grid reasonable when both are large
  while (gx > 1 && gx * gy > max_grid_x * 16) gx = (gx + 1) / 2;
  return dim3(unsigned(gx), unsigned(gy), 1);
}

/// Checks that a size fits cuBLAS's int arguments.
inline int as_int(std::size_t v, const char* what) {
  DDPM_REQUIRE(v <= std::size_t(INT_MAX), "backend::Cuda", what, " = ", v,
               " exceeds the 32-bit range of cuBLAS arguments");
  return int(v);
}

// ------------------------------------------------------------------ device helpers

/// Sum over a warp, lane 0 receiving the total; the order of additions is fixed.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}

/// Sum over all threads of the block (blockDim.x a multiple of 32, at most 1024); every thread
/// receives the total. Deterministic: a fixed shuffle tree per warp, then one over the warps.
/// `sh` is shared scratch of at least 32 elements; the call synchronises the block.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = (blockDim.x + 31u) >> 5;
  v = warp_sum(v);
  __syncthreads();  // a previous call's readers of sh[0] are done
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? sh[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) sh[0] = v;
  }
  __syncthreads();
  return sh[0];
}

/// Grid-stride loop body f(i) for i in [0, n).
template <class F>
__global__ void __launch_bounds__(block_threads) for_each_kernel(std::size_t n, F f) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

/// f(row, i) for row in [0, rows), i in [0, row_len): y over rows, x over a row.
template <class F>
__global__ void __launch_bounds__(block_threads) for_each_row_kernel(std::size_t rows, unsigned row_len, F f) {
  for (std::size_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < row_len; i += gridDim.x * blockDim.x)
      f(r, i);
}

template <class F>
inline void launch_for_each(cudaStream_t stream, std::size_t n, const F& f) {
  if (n == 0) return;
  for_each_kernel<<<grid_for(n), block_threads, 0, stream>>>(n, f);
  DDPM_CUDA_CHECK_LAUNCH();
}

template <class F>
inline void launch_rows(cudaStream_t stream, std::size_t rows, std::size_t row_len, const F& f) {
  if (rows == 0 || row_len == 0) return;
  DDPM_REQUIRE(row_len <= std::size_t(UINT_MAX), "backend::Cuda", "row of ", row_len,
               " elements exceeds the 32-bit range");
  for_each_row_kernel<<<grid_rows(rows, row_len), block_threads, 0, stream>>>(rows, unsigned(row_len), f);
  DDPM_CUDA_CHECK_LAUNCH();
}

}  // namespace ddpm::detail::cuda
