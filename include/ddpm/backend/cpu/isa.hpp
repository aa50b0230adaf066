// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/isa.hpp — the kernel level of the CPU backend, chosen at run time.
//
// The element loops are compiled for the translation unit's SIMD (AVX2 on the default x86-64-v3
// build, 8 float lanes; see simd.hpp). The kernels that carry most of the time also exist as
// AVX-512 kernels, compiled with a function target attribute into every x86-64 AVX2 build and used
// when the CPU has AVX-512F: the GEMM micro-kernels (convolutions through implicit GEMM and
// Winograd, linear layers, attention; partial panels too), the Winograd input/output/gradient
// transforms (16 tiles or channels per call, winograd.hpp), GroupNorm(+SiLU) forward and backward
// and dropout's Philox keep masks (simd512.hpp). Each
// computes every element with the same operations in the same order as its AVX2 counterpart (one
// fused multiply-add per k, in k order, for the GEMM; 8-lane sums fed half by half for GroupNorm),
// so the results are bitwise the same at every level: the level changes the speed only. The
// tests run every backend op at each level the CPU has and compare the bytes.
//
//   DDPM_CPU_LEVEL=avx2     use the AVX2 kernels even where AVX-512 is available
//   DDPM_CPU_LEVEL=avx512   the default where the CPU has AVX-512F (an error where it has not)
//   (unset)                 the best level the CPU and the build support
#pragma once

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__AVX2__) && defined(__FMA__)
#define DDPM_CPU_HAVE_AVX512_KERNELS 1
/// Compiles one function for AVX-512F whatever -march says (its callers check cpu_level()).
#define DDPM_TARGET_AVX512 __attribute__((target("avx512f")))
#else
#define DDPM_CPU_HAVE_AVX512_KERNELS 0
#define DDPM_TARGET_AVX512
#endif

namespace ddpm::detail::cpu {

/// Kernel levels, lowest first.
enum class CpuLevel : int {
  portable = 0,  ///< the build has no AVX2+FMA: scalar (or xsimd's default SIMD) code
  avx2 = 1,      ///< AVX2 + FMA, 8 float lanes
  avx512 = 2,    ///< AVX-512F kernels (16 float lanes): GEMM, Winograd transforms, GroupNorm
};

[[nodiscard]] constexpr std::string_view to_string(CpuLevel l) noexcept {
  switch (l) {
    case CpuLevel::portable: return "portable";
    case CpuLevel::avx2: return "avx2";
    case CpuLevel::avx512: return "avx512";
  }
  return "?";
}

/// The highest level this build and this CPU support.
[[nodiscard]] inline CpuLevel cpu_level_supported() noexcept {
#if DDPM_CPU_HAVE_AVX512_KERNELS
  static const CpuLevel best = __builtin_cpu_supports("avx512f") ? CpuLevel::avx512 : CpuLevel::avx2;
  return best;
#elif defined(__AVX2__) && defined(__FMA__)
  return CpuLevel::avx2;
#else
  return CpuLevel::portable;
#endif
}

/// Parses a DDPM_CPU_LEVEL value; throws std::invalid_argument naming the variable on an unknown
/// name or a level above what this CPU and build support.
[[nodiscard]] inline CpuLevel parse_cpu_level(std::string_view v) {
  CpuLevel l;
  if (v == "avx512")
    l = CpuLevel::avx512;
  else if (v == "avx2")
    l = CpuLevel::avx2;
  else if (v == "portable")
    l = CpuLevel::portable;
  else
    throw std::invalid_argument("ddpm: DDPM_CPU_LEVEL='" + std::string(v) +
                                "' is not a kernel level (avx2, avx512)");
  const CpuLevel best = cpu_level_supported();
  if (int(l) > int(best))
    throw std::invalid_argument("ddpm: DDPM_CPU_LEVEL=" + std::string(v) +
                                " asks for more than this CPU and build support (" +
                                std::string(to_string(best)) + ")");
  // The portable code is chosen at compile time: an AVX2 build has no run-time switch to it.
  if (l == CpuLevel::portable && best != CpuLevel::portable)
    throw std::invalid_argument("ddpm: DDPM_CPU_LEVEL=portable needs a build without AVX2 (e.g. "
                                "-march=x86-64); this build's lowest level is avx2");
  return l;
}

namespace isa_detail {
inline std::atomic<int>& override_level() {
  static std::atomic<int> l{-1};
  return l;
}
inline CpuLevel env_level() {
  static const CpuLevel l = [] {
    const char* v = std::getenv("DDPM_CPU_LEVEL");
    return (v && *v) ? parse_cpu_level(v) : cpu_level_supported();
  }();
  return l;
}
}  // namespace isa_detail

/// The level the kernels use now: set_cpu_level()'s if set, else DDPM_CPU_LEVEL's, else the best
/// supported. The first call reads the environment (and throws on a bad DDPM_CPU_LEVEL).
[[nodiscard]] inline CpuLevel cpu_level() {
  const int o = isa_detail::override_level().load(std::memory_order_relaxed);
  return o >= 0 ? CpuLevel(o) : isa_detail::env_level();
}

/// Forces a level for the whole process (tests, benchmarks); throws std::invalid_argument if the
/// CPU or the build does not support it. Call it between operations, not during one.
inline void set_cpu_level(CpuLevel l) {
  if (int(l) > int(cpu_level_supported()))
    throw std::invalid_argument("ddpm: kernel level " + std::string(to_string(l)) +
                                " is not supported here (best: " +
                                std::string(to_string(cpu_level_supported())) + ")");
  isa_detail::override_level().store(int(l), std::memory_order_relaxed);
}
/// Goes back to DDPM_CPU_LEVEL / the best supported level.
inline void reset_cpu_level() noexcept { isa_detail::override_level().store(-1, std::memory_order_relaxed); }

/// Whether the AVX-512 kernels run now.
[[nodiscard]] inline bool use_avx512() {
#if DDPM_CPU_HAVE_AVX512_KERNELS
  return cpu_level() == CpuLevel::avx512;
#else
  return false;
#endif
}

}  // namespace ddpm::detail::cpu

namespace ddpm::backend {
/// The CPU backend's kernel level in use ("avx512", "avx2" or "portable"; see backend/cpu/isa.hpp).
[[nodiscard]] inline std::string_view cpu_kernel_level() { return to_string(detail::cpu::cpu_level()); }
}  // namespace ddpm::backend
