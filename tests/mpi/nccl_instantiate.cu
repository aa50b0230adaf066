// SPDX-License-Identifier: MIT
// tests/mpi/nccl_instantiate.cu — the nvcc translation unit of the NCCL test: every definition of
// the CUDA backend, emitted once.
#include <ddpm/backend/cuda.cuh>

DDPM_CUDA_INSTANTIATE()
