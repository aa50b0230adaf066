// SPDX-License-Identifier: MIT
// ddpm/backend/cuda.cuh — the CUDA backend's definitions (kernels, cuBLAS calls, the device
// runtime), for .cu files compiled by nvcc with -std=c++20 (the ddpm::cuda CMake target):
//
//   // cuda_instantiate.cu — once per program
//   #include <ddpm/backend/cuda.cuh>
//   DDPM_CUDA_INSTANTIATE()
//
// Includes only ddpm/core (built-in targets and losses included), ddpm/tensor and ddpm/backend/cuda:
// no Eigen, xsimd, xtensor or oneTBB (keep those out of .cu files).
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda.cuh must be compiled by nvcc: include it from a .cu file (host code includes <ddpm/backend/cuda.hpp>)"
#endif

#include "ddpm/backend/cuda.hpp"
#include "ddpm/backend/cuda/attention.cuh"
#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/diffusion.cuh"
#include "ddpm/backend/cuda/elementwise.cuh"
#include "ddpm/backend/cuda/gemm.cuh"
#include "ddpm/backend/cuda/group_norm.cuh"
#include "ddpm/backend/cuda/instantiate.cuh"
