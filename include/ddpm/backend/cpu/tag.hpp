// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/tag.hpp — the SIMD CPU backend tag (xsimd + oneTBB + GEMM).
#pragma once

#include <memory>
#include <string_view>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/isa.hpp"
#include "ddpm/backend/tags.hpp"

namespace ddpm::backend {

/// How the CPU backend computes convolutions.
enum class CpuConvolution {
  /// The fastest algorithm per shape: Winograd F(4x4, 3x3) for 3x3 stride-1 layers with >= 8
  /// channels (error up to ~2e-5 of the output's scale, see benchmarks/ops/README-kernels.md),
  /// implicit GEMM or direct loops elsewhere.
  fast,
  /// GEMM everywhere: the error of a plain fp32 dot product (~1e-6 of the output's scale),
  /// 2.5-4x slower on 3x3 layers. For golden comparisons and debugging.
  exact,
};

/// SIMD CPU backend. Copies share one context (thread arena and scratch memory).
/// `Cpu(2)` uses two worker threads; `Cpu()` all cores. Not thread-safe: one training or sampling
/// loop per backend object at a time.
struct Cpu {
  using memory_space = host_memory;
  static constexpr std::string_view name = "cpu";

  Cpu() : Cpu(0) {}
  explicit Cpu(int threads, CpuConvolution conv = CpuConvolution::fast)
      : context(std::make_shared<detail::cpu::Context>(threads)), convolution(conv) {
    (void)detail::cpu::cpu_level();  // reads DDPM_CPU_LEVEL once: a bad value throws here
  }

  [[nodiscard]] int threads() const noexcept { return context->threads(); }
  [[nodiscard]] detail::cpu::Context& ctx() const noexcept { return *context; }

  std::shared_ptr<detail::cpu::Context> context;
  CpuConvolution convolution = CpuConvolution::fast;
};

}  // namespace ddpm::backend
