// SPDX-License-Identifier: MIT
// benchmarks/cuda/instantiate.cu — the CUDA backend's kernels and runtime for ddpm-bench --backend
// cuda (compiled by nvcc when CMake finds it; ddpm_bench.cpp itself is ordinary C++).
#include <ddpm/backend/cuda.cuh>

DDPM_CUDA_INSTANTIATE()
