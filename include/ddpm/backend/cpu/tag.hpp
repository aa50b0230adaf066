// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/tag.hpp — the SIMD CPU backend tag (xsimd + oneTBB + GEMM).
#pragma once

#include <memory>
#include <string_view>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/tags.hpp"

namespace ddpm::backend {

/// SIMD CPU backend. Copies share one context (thread arena and scratch memory).
/// `Cpu(2)` uses two worker threads; `Cpu()` all cores. Not thread-safe: one training or sampling
/// loop per backend object at a time.
struct Cpu {
  using memory_space = host_memory;
  static constexpr std::string_view name = "cpu";

  Cpu() : Cpu(0) {}
  explicit Cpu(int threads) : context(std::make_shared<detail::cpu::Context>(threads)) {}

  [[nodiscard]] int threads() const noexcept { return context->threads(); }
  [[nodiscard]] detail::cpu::Context& ctx() const noexcept { return *context; }

  std::shared_ptr<detail::cpu::Context> context;
};

}  // namespace ddpm::backend
