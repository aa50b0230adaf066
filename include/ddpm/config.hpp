// SPDX-License-Identifier: MIT
// ddpm/config.hpp — version, host/device annotation and the few macros the library needs.
#pragma once

#define DDPM_VERSION_MAJOR 0
#define DDPM_VERSION_MINOR 1
#define DDPM_VERSION_PATCH 0
#define DDPM_VERSION_STRING "0.1.0"

// Functions that run on the host, inside xsimd loops, and inside CUDA kernels (policies).
#if defined(__CUDACC__)
#define DDPM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DDPM_HOST_DEVICE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DDPM_RESTRICT __restrict__
#define DDPM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DDPM_RESTRICT
#define DDPM_ALWAYS_INLINE inline
#endif

namespace ddpm {
/// Library version as a string, e.g. "0.1.0".
inline constexpr const char* version = DDPM_VERSION_STRING;
}  // namespace ddpm
