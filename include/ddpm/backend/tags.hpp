// SPDX-License-Identifier: MIT
// ddpm/backend/tags.hpp — backend tag types and the Backend concept. Cheap to include anywhere,
// including .cu files: no TBB, no CUDA headers. The CPU tag lives in backend/cpu/tag.hpp.
#pragma once

#include <concepts>
#include <string_view>

namespace ddpm::backend {

struct host_memory {};
struct device_memory {};

/// Naive scalar loops: slow, obviously correct, the oracle in tests. Works for float and double.
struct Reference {
  using memory_space = host_memory;
  static constexpr std::string_view name = "reference";
};

struct Cpu;   // xsimd + oneTBB + GEMM; defined in ddpm/backend/cpu/tag.hpp
struct Cuda;  // cuBLAS + own kernels; defined in ddpm/backend/cuda/tag.hpp

/// What the library requires of a backend tag: copyable, a memory space, a name.
/// The operations themselves are the specialisation Ops<B> (ddpm/backend/ops.hpp).
template <class B>
concept Backend = std::copyable<B> && requires {
  typename B::memory_space;
  { B::name } -> std::convertible_to<std::string_view>;
};

}  // namespace ddpm::backend
