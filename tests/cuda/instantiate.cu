// SPDX-License-Identifier: MIT
// tests/cuda/instantiate.cu — the one nvcc translation unit of the GPU tests: every definition of
// the CUDA backend, emitted once for the C++ test files.
#include <ddpm/backend/cuda.cuh>

DDPM_CUDA_INSTANTIATE()
