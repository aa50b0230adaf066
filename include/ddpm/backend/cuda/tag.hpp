// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/tag.hpp — the CUDA backend tag and the host-callable part of its runtime.
//
// Readable by g++: no CUDA header. The tag holds a shared, opaque per-device Context (stream,
// cuBLAS handle, scratch arena), defined in ddpm/backend/cuda/context.cuh. Everything declared here
// is defined in the .cuh files and emitted once per program by DDPM_CUDA_INSTANTIATE() in one .cu
// (see ddpm/backend/cuda/instantiate.cuh).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "ddpm/backend/tags.hpp"

namespace ddpm::detail::cuda {

/// Stream, cuBLAS handle, memory pool and scratch of one device (ddpm/backend/cuda/context.cuh).
class Context;

/// Device memory of the current device's pool, in bytes (what the tensors and the backend's
/// scratch hold; cuBLAS's own workspace and the CUDA context are not included).
struct MemoryStats {
  std::size_t in_use = 0;         ///< allocated now
  std::size_t peak_in_use = 0;    ///< high-water mark of in_use since start or the last reset
  std::size_t reserved = 0;       ///< held by the pool (in use + cached for reuse)
  std::size_t peak_reserved = 0;  ///< high-water mark of reserved
};

/// The host-callable runtime glue of the CUDA backend. A class template only so that its members
/// can be defined in a .cuh (compiled by nvcc) and emitted exactly once, by the explicit
/// instantiation in DDPM_CUDA_INSTANTIATE(); host code calls Runtime<>::f(...).
///
/// One Context per device, created on first use and kept until the process exits (tensors may be
/// freed during static destruction, after any tag is gone). Every backend::Cuda tag and every
/// device tensor of that device use its single stream, so kernels, copies and frees are ordered
/// without further synchronisation. Memory operations act on the calling thread's current device.
template <class = void>
struct Runtime {
  /// Number of CUDA devices; 0 when there is none or no driver (never throws).
  static int device_count() noexcept;
  /// The context of `device` (created on first use; sets it as the current device).
  /// @throws std::runtime_error when the device does not exist or cannot be initialised.
  static std::shared_ptr<Context> context(int device);
  /// Device number of a context.
  static int device_of(const Context& c) noexcept;
  /// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"-style description of a device.
  static std::string describe(int device);
  /// Waits for all work queued on the context's stream; throws on an asynchronous CUDA error.
  static void synchronize(const Context& c);

  /// Stream-ordered allocation from the current device's pool (no cudaMalloc in steady state).
  static void* allocate(std::size_t bytes);
  static void deallocate(void* p) noexcept;
  /// Host to device; the host buffer may be reused as soon as the call returns.
  static void copy_from_host(void* dst, const void* src, std::size_t bytes);
  /// Device to host; returns when the data is in `dst` (waits for the stream).
  static void copy_to_host(void* dst, const void* src, std::size_t bytes);
  static void copy(void* dst, const void* src, std::size_t bytes);
  static void zero(void* dst, std::size_t bytes);

  /// Pool statistics of the current device.
  static MemoryStats memory_stats();
  /// Restarts the peak counters of memory_stats() at the current values.
  static void reset_peak_memory_stats();
};

extern template struct Runtime<void>;

}  // namespace ddpm::detail::cuda

namespace ddpm::backend {

/// CUDA backend: cuBLAS GEMMs (convolutions as im2col + GEMM, linears, attention) and ddpm's own
/// kernels for everything else; float tensors only. Copies share the device's context. Not
/// thread-safe: one training or sampling loop per device at a time.
///
///   ddpm::backend::Cuda be;       // device 0
///   ddpm::backend::Cuda be1(1);   // device 1 (made the current device of the calling thread)
///   be.tf32 = true;               // allow TF32 tensor cores in the GEMMs (off: true fp32 parity)
///
/// Every result is deterministic for a given device, shape and setting: reductions use fixed
/// block partials added in a fixed order, never atomics.
struct Cuda {
  using memory_space = device_memory;
  static constexpr std::string_view name = "cuda";

  Cuda() : Cuda(0) {}
  explicit Cuda(int device) : context(detail::cuda::Runtime<>::context(device)) {}

  /// Allow TF32 tensor-core math in the GEMMs (about 3 significant digits fewer than fp32).
  bool tf32 = false;
  /// The per-device state shared by every copy of the tag (opaque outside .cu files).
  std::shared_ptr<detail::cuda::Context> context;

  [[nodiscard]] int device() const noexcept { return detail::cuda::Runtime<>::device_of(*context); }
  /// Waits until every queued operation has finished (for timing); throws on a CUDA error.
  void synchronize() const { detail::cuda::Runtime<>::synchronize(*context); }
  [[nodiscard]] detail::cuda::Context& ctx() const noexcept { return *context; }

  /// Number of CUDA devices (0 on a machine without a GPU or driver).
  [[nodiscard]] static int device_count() noexcept { return detail::cuda::Runtime<>::device_count(); }
};

}  // namespace ddpm::backend
