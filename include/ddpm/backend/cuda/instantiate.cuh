// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/instantiate.cuh — the macros that emit the CUDA backend's definitions. Put
// exactly one DDPM_CUDA_INSTANTIATE() in one .cu of a program (after #include <ddpm/backend/cuda.cuh>);
// the rest of the program can be ordinary C++ including <ddpm/backend/cuda.hpp>. nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include "ddpm/backend/cuda/attention.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/diffusion.cuh"
#include "ddpm/backend/cuda/elementwise.cuh"
#include "ddpm/backend/cuda/gemm.cuh"
#include "ddpm/backend/cuda/group_norm.cuh"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/core/builtin_policies.hpp"

/// diffusion_loss for a target/loss pair other than the built-in ones (at namespace scope, once
/// per pair per program).
#define DDPM_CUDA_INSTANTIATE_POLICIES(P, L) template struct ::ddpm::detail::cuda::LossKernels<P, L>;

/// predict for a target other than the built-in ones (once per target per program).
#define DDPM_CUDA_INSTANTIATE_TARGET(P) template struct ::ddpm::detail::cuda::TargetKernels<P>;

/// The runtime, every policy-free operation, and diffusion_loss/predict for the built-in targets
/// and losses (the list in ddpm/core/builtin_policies.hpp). Once per program, at namespace scope.
#define DDPM_CUDA_INSTANTIATE()                                        \
  template struct ::ddpm::detail::cuda::Runtime<void>;                \
  template struct ::ddpm::detail::cuda::Kernels<void>;                \
  DDPM_FOR_EACH_BUILTIN_TARGET_LOSS(DDPM_CUDA_INSTANTIATE_POLICIES)   \
  DDPM_FOR_EACH_BUILTIN_TARGET(DDPM_CUDA_INSTANTIATE_TARGET)
