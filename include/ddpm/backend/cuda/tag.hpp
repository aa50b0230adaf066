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
/// without further synchronisation. A tensor is allocated on the calling thread's current device
/// (backend::Cuda(d) makes d current); freeing, copying and zeroing act on the device that holds
/// the pointer, whatever the current device is, and leave the current device as it was. Every
/// operation of Ops<backend::Cuda> runs on its tag's device, also when another one is current.
template <class = void>
struct Runtime {
  /// Number of CUDA devices; 0 when there is none or no driver (never throws).
  static int device_count() noexcept;
  /// Why device_count() is 0, or a driver/runtime error met when counting ("" when devices were
  /// found): e.g. "cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA
  /// runtime version)". Never throws.
  static std::string device_error();
  /// The calling thread's current device (0 unless changed).
  /// @throws std::runtime_error on a CUDA error (no device, driver too old).
  static int current_device();
  /// The context of `device` (created on first use; does not change the current device).
  /// @throws std::runtime_error when the device does not exist or cannot be initialised.
  static std::shared_ptr<Context> context(int device);
  /// Device number of a context.
  static int device_of(const Context& c) noexcept;
  /// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"-style description of a device.
  static std::string describe(int device);
  /// Waits for all work queued on the context's stream; throws on an asynchronous CUDA error.
  static void synchronize(const Context& c);

  /// Makes `device` the calling thread's current device.
  static void set_current_device(int device);
  /// Bytes of conv/attention scratch a call may use before it splits its batch into chunks, when
  /// the tag does not set one: $DDPM_CUDA_CHUNK_BYTES if set (a positive integer), else 256 MiB.
  /// @throws std::invalid_argument when DDPM_CUDA_CHUNK_BYTES is not a positive integer.
  static std::size_t default_chunk_bytes();

  /// Stream-ordered allocation from the current device's pool (no cudaMalloc in steady state).
  static void* allocate(std::size_t bytes);
  /// Freed in the order of the stream of the device that holds `p`.
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
///   ddpm::backend::Cuda be;       // the calling thread's current device (0 unless changed);
///                                 // the current device is left as it is
///   ddpm::backend::Cuda be1(1);   // device 1, made the current device of the calling thread (so
///                                 // that the tensors allocated after it are on device 1)
///   be.tf32 = true;               // allow TF32 tensor cores in the GEMMs (off: true fp32 parity)
///   be.chunk_bytes = 64 << 20;    // conv/attention scratch per call before splitting the batch
///
/// A tag keeps its device: its operations run there (the device is made current for the call
/// and restored after it), whichever device the calling thread has made current since.
///
/// Every result is deterministic for a given device, shape and setting: reductions use fixed
/// block partials added in a fixed order, never atomics.
struct Cuda {
  using memory_space = device_memory;
  static constexpr std::string_view name = "cuda";

  Cuda() : context(detail::cuda::Runtime<>::context(detail::cuda::Runtime<>::current_device())) {}
  explicit Cuda(int device) : context(detail::cuda::Runtime<>::context(device)) {
    detail::cuda::Runtime<>::set_current_device(device);
  }

  /// Allow TF32 tensor-core math in the GEMMs (about 3 significant digits fewer than fp32).
  bool tf32 = false;
  /// Bytes of scratch a convolution or attention call may use before it splits its batch into
  /// chunks; 0: Runtime<>::default_chunk_bytes() ($DDPM_CUDA_CHUNK_BYTES or 256 MiB). Smaller
  /// saves device memory, larger makes fewer, bigger GEMMs; results do not depend on it beyond
  /// rounding.
  std::size_t chunk_bytes = 0;
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
