// SPDX-License-Identifier: MIT
// ddpm/backend/cuda.hpp — the CUDA backend for host (g++) code, opted into explicitly:
//   #include <ddpm/backend/cuda.hpp>
//   ddpm::backend::Cuda be;   // the current device (0 unless changed)
// Brings the tag (backend::Cuda), device memory for Tensor<T, backend::Cuda> and the declarations
// of Ops<backend::Cuda>. No CUDA header is included. The definitions are compiled by nvcc: one .cu
// of the program must contain
//   #include <ddpm/backend/cuda.cuh>
//   DDPM_CUDA_INSTANTIATE()
// and the program links CUDA::cudart and CUDA::cublas (the ddpm::cuda CMake target does both).
#pragma once

#include "ddpm/backend/cuda/memory.hpp"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/backend/cuda/tag.hpp"
