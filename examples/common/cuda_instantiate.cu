// SPDX-License-Identifier: MIT
// examples/common/cuda_instantiate.cu — the CUDA backend's kernels and runtime, emitted once for an
// example (compiled by nvcc into the examples when CMake finds it: DDPM_HAVE_CUDA). The examples
// themselves are ordinary C++ that include <ddpm/backend/cuda.hpp>.
#include <ddpm/backend/cuda.cuh>

DDPM_CUDA_INSTANTIATE()
