// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/context.cuh — the per-device Context (stream, cuBLAS handle, memory pool,
// scratch arena) and the definitions of detail::cuda::Runtime<>. nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/memory.hpp"
#include "ddpm/backend/cuda/tag.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::detail::cuda {

/// Scratch slots of the Context. An operation may hold several slots at once but never asks for a
/// slot it already holds; no operation keeps a slot across a call into another operation.
namespace slot {
inline constexpr std::size_t col = 0;       ///< conv im2col / column gradient; attention dP
inline constexpr std::size_t tmp = 1;       ///< conv GEMM output before the NCHW transpose / dy transposed
inline constexpr std::size_t partial = 2;   ///< block partials of reductions; GroupNorm per-(n, c) sums
inline constexpr std::size_t rowsum = 3;    ///< conv bias gradient: per-(n, c) sums
inline constexpr std::size_t freq = 4;      ///< timestep embedding frequencies (cached)
inline constexpr std::size_t count = 5;
}  // namespace slot

/// Bytes of conv/attention scratch one call may use before it splits the batch into chunks, unless
/// $DDPM_CUDA_CHUNK_BYTES or backend::Cuda::chunk_bytes says otherwise.
inline constexpr std::size_t chunk_budget_bytes = std::size_t{256} << 20;

/// The value of $DDPM_CUDA_CHUNK_BYTES (a positive decimal integer), or chunk_budget_bytes when it
/// is unset or empty. Read once per process.
/// @throws std::invalid_argument naming the variable when it is set to anything else.
inline std::size_t chunk_bytes_from_env() {
  static const std::size_t v = [] {
    const char* e = std::getenv("DDPM_CUDA_CHUNK_BYTES");
    if (!e || !*e) return chunk_budget_bytes;
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(e, &end, 10);
    if (errno != 0 || end == e || *end != '\0' || n == 0 || e[0] == '-' || e[0] == '+')
      throw std::invalid_argument(cat("ddpm: backend::Cuda: DDPM_CUDA_CHUNK_BYTES=\"", e,
                                      "\" is not a positive integer (bytes of conv/attention scratch per call)"));
    return std::size_t(n);
  }();
  return v;
}

/// Makes a device current for the lifetime of the guard and restores the previous one after it
/// (nothing to do, and no driver call but one cudaGetDevice, when it is current already).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    DDPM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) DDPM_CUDA_CHECK(cudaSetDevice(device));
    else previous_ = -1;
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  ~DeviceGuard() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }

 private:
  int previous_ = -1;
};

/// One device's state, shared by all backend::Cuda tags and device tensors of that device. Created
/// once by Runtime<>::context() and never destroyed (see Runtime).
class Context {
 public:
  explicit Context(int dev) : device(dev) {
    DDPM_CUDA_CHECK(cudaSetDevice(dev));
    DDPM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DDPM_CUBLAS_CHECK(cublasCreate(&cublas));
    DDPM_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    DDPM_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));
    DDPM_CUBLAS_CHECK(cublasSetPointerMode(cublas, CUBLAS_POINTER_MODE_HOST));
    // The device's default pool, told to keep freed memory (no release at synchronisation).
    DDPM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    std::uint64_t keep = UINT64_MAX;
    DDPM_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    // The result of a reduction is written by its last block straight into mapped pinned memory:
    // one kernel and one stream synchronisation per value, no copy.
    DDPM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_result), 4 * sizeof(double), cudaHostAllocMapped));
    DDPM_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_result), host_result, 0));
    DDPM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&reduce_counter), sizeof(unsigned)));
    // on this (non-blocking) stream: a plain cudaMemset would be ordered on the legacy stream only
    DDPM_CUDA_CHECK(cudaMemsetAsync(reduce_counter, 0, sizeof(unsigned), stream));
    DDPM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&staging_), staging_slots * staging_slot_bytes));
    for (auto& e : staging_done_) DDPM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    int smem = 0;
    DDPM_CUDA_CHECK(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlock, dev));
    max_shared_per_block = std::size_t(smem);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  /// At least `bytes` of device scratch in slot `s` (grow-only; contents unspecified after growth).
  /// The old buffer is freed in stream order, so queued kernels still using it are safe.
  void* scratch(std::size_t s, std::size_t bytes) {
    Buffer& b = scratch_[s];
    if (bytes > b.bytes) {
      if (b.ptr) DDPM_CUDA_CHECK(cudaFreeAsync(b.ptr, stream));
      b.ptr = nullptr;
      b.bytes = 0;
      const std::size_t rounded = (bytes + 255) / 256 * 256;
      DDPM_CUDA_CHECK(cudaMallocAsync(&b.ptr, rounded, stream));
      b.bytes = rounded;
      tensor_allocation_count().fetch_add(1, std::memory_order_relaxed);
      device_allocation_count().fetch_add(1, std::memory_order_relaxed);
    }
    return b.ptr;
  }
  template <class T>
  T* scratch_as(std::size_t s, std::size_t count) {
    return static_cast<T*>(scratch(s, count * sizeof(T)));
  }

  /// Sets the cuBLAS math mode for the next GEMMs (TF32 tensor cores or strict fp32).
  void set_tf32(bool on) {
    if (on != tf32_) {
      DDPM_CUBLAS_CHECK(cublasSetMathMode(cublas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
      tf32_ = on;
    }
  }

  void synchronize() const { DDPM_CUDA_CHECK(cudaStreamSynchronize(stream)); }

  /// Host to device in stream order, through a ring of pinned staging slots: the host buffer may be
  /// reused when the call returns (a copy from pageable memory with cudaMemcpyAsync is only
  /// documented as "might be synchronous"), and small copies do not wait for the queued kernels.
  /// A slot is reused once the event recorded after its last copy has completed.
  void upload(void* dst, const void* src, std::size_t bytes) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    while (bytes) {
      const std::size_t n = bytes < staging_slot_bytes ? bytes : staging_slot_bytes;
      const std::size_t k = staging_next_;
      staging_next_ = (staging_next_ + 1) % staging_slots;
      if (staging_used_[k]) DDPM_CUDA_CHECK(cudaEventSynchronize(staging_done_[k]));
      unsigned char* buf = staging_ + k * staging_slot_bytes;
      std::memcpy(buf, s, n);
      DDPM_CUDA_CHECK(cudaMemcpyAsync(d, buf, n, cudaMemcpyHostToDevice, stream));
      DDPM_CUDA_CHECK(cudaEventRecord(staging_done_[k], stream));
      staging_used_[k] = true;
      d += n;
      s += n;
      bytes -= n;
    }
  }

  const int device;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudaMemPool_t pool = nullptr;
  double* host_result = nullptr;    ///< mapped pinned memory: reductions write their result here
  double* device_result = nullptr;  ///< the device's address of host_result
  unsigned* reduce_counter = nullptr;  ///< blocks done of the running reduction; 0 between kernels
  int freq_half = -1;             ///< the embedding size whose frequencies slot::freq holds
  std::size_t max_shared_per_block = 0;  ///< cudaDevAttrMaxSharedMemoryPerBlock (bytes)

 private:
  struct Buffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  static constexpr std::size_t staging_slots = 32;
  static constexpr std::size_t staging_slot_bytes = std::size_t{128} << 10;  // 4 MiB pinned in all
  std::array<Buffer, slot::count> scratch_{};
  bool tf32_ = false;
  unsigned char* staging_ = nullptr;
  std::array<cudaEvent_t, staging_slots> staging_done_{};
  std::array<bool, staging_slots> staging_used_{};
  std::size_t staging_next_ = 0;
};

/// The context of a backend tag.
inline Context& ctx(const backend::Cuda& be) {
  DDPM_REQUIRE(be.context != nullptr, "backend::Cuda", "the tag has no device context (moved from?)");
  return *be.context;
}

/// What a launcher holds while it queues work: the tag's device made current (restored after) and
/// its context. `const On on_(be);` opens every Kernels<>, LossKernels<> and TargetKernels<> member.
struct On {
  explicit On(const backend::Cuda& be) : c(ctx(be)), guard(c.device) {}
  Context& c;
  DeviceGuard guard;
};

/// Scratch bytes per conv/attention call before the batch is split: the tag's, else the default.
inline std::size_t chunk_budget(const backend::Cuda& be) {
  return be.chunk_bytes ? be.chunk_bytes : chunk_bytes_from_env();
}

inline constexpr int max_devices = 64;

struct Registry {
  std::array<std::once_flag, max_devices> once;
  std::array<std::shared_ptr<Context>, max_devices> contexts;
};
/// Never destroyed: device tensors may be freed during static destruction.
inline Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

/// cudaGetDeviceCount's answer, asked once per process: the count and, when it failed, its error.
struct DeviceCount {
  int n = 0;
  cudaError_t error = cudaSuccess;
};
inline const DeviceCount& device_count_once() {
  static const DeviceCount d = [] {
    DeviceCount r;
    r.error = cudaGetDeviceCount(&r.n);
    if (r.error != cudaSuccess) {
      (void)cudaGetLastError();  // clear the "no device" / "no driver" error
      r.n = 0;
    }
    return r;
  }();
  return d;
}

/// Device count, asked once per process.
inline int cached_device_count() { return device_count_once().n; }

/// The context of `device`, created on first use (does not change the current device).
inline Context& device_context(int device) {
  const int n = cached_device_count();
  if (n == 0) throw std::runtime_error(cat("ddpm: backend::Cuda: no CUDA device found (", Runtime<>::device_error(), ")"));
  if (device < 0 || device >= n || device >= max_devices)
    throw std::runtime_error(cat("ddpm: backend::Cuda: device ", device, " does not exist (", n,
                                 " device", n == 1 ? "" : "s", " found)"));
  Registry& r = registry();
  std::call_once(r.once[std::size_t(device)], [&] {
    int cur = -1;
    DDPM_CUDA_CHECK(cudaGetDevice(&cur));
    r.contexts[std::size_t(device)] = std::make_shared<Context>(device);  // sets `device` current
    if (cur != device) DDPM_CUDA_CHECK(cudaSetDevice(cur));
  });
  return *r.contexts[std::size_t(device)];
}

/// The context of the calling thread's current device.
inline Context& current_context() {
  int dev = 0;
  DDPM_CUDA_CHECK(cudaGetDevice(&dev));
  return device_context(dev);
}

/// The device that holds device memory `p` (allocated by this backend), or -1 when the runtime
/// cannot tell (e.g. while it is unloading at process exit). With one device, 0 without asking
/// the driver (the common case pays nothing per copy).
inline int device_of_pointer(const void* p) noexcept {
  if (cached_device_count() == 1) return 0;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged ? a.device : -1;
}

/// The context of the device that holds `p` (the current device's when `p` is not device memory).
inline Context& pointer_context(const void* p) {
  const int d = device_of_pointer(p);
  return d >= 0 ? device_context(d) : current_context();
}

// ------------------------------------------------------------------ Runtime<> definitions

template <class D>
int Runtime<D>::device_count() noexcept {
  return device_count_once().n;
}

template <class D>
std::string Runtime<D>::device_error() {
  const DeviceCount& d = device_count_once();
  if (d.error != cudaSuccess)
    return cat(cudaGetErrorName(d.error), " (", cudaGetErrorString(d.error), ")");
  return d.n == 0 ? std::string("cudaGetDeviceCount found 0 devices") : std::string();
}

template <class D>
int Runtime<D>::current_device() {
  if (cached_device_count() == 0)
    throw std::runtime_error(cat("ddpm: backend::Cuda: no CUDA device found (", device_error(), ")"));
  int cur = 0;
  DDPM_CUDA_CHECK(cudaGetDevice(&cur));
  return cur;
}

template <class D>
void Runtime<D>::set_current_device(int device) {
  (void)device_context(device);  // checks the number
  DDPM_CUDA_CHECK(cudaSetDevice(device));
}

template <class D>
std::size_t Runtime<D>::default_chunk_bytes() {
  return chunk_bytes_from_env();
}

template <class D>
std::shared_ptr<Context> Runtime<D>::context(int device) {
  (void)device_context(device);
  return registry().contexts[std::size_t(device)];
}

template <class D>
int Runtime<D>::device_of(const Context& c) noexcept {
  return c.device;
}

template <class D>
std::string Runtime<D>::describe(int device) {
  cudaDeviceProp p{};
  DDPM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return cat(p.name, " (sm_", p.major, p.minor, ", ", double(p.totalGlobalMem) / double(1u << 30),
             " GiB, ", p.multiProcessorCount, " SMs)");
}

template <class D>
void Runtime<D>::synchronize(const Context& c) {
  c.synchronize();
}

template <class D>
void* Runtime<D>::allocate(std::size_t bytes) {
  Context& c = current_context();  // the current device: no guard needed
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, c.stream);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw std::bad_alloc();
  }
  DDPM_CUDA_CHECK(e);
  return p;
}

template <class D>
void Runtime<D>::deallocate(void* p) noexcept {
  // Errors are ignored: at process exit the runtime may already be unloading. The memory goes
  // back to the pool of the device that holds it, in the order of that device's stream.
  int dev = device_of_pointer(p);
  if (dev < 0 && cudaGetDevice(&dev) != cudaSuccess) dev = -1;
  if (dev < 0 || dev >= max_devices) {
    (void)cudaGetLastError();
    return;
  }
  const std::shared_ptr<Context>& c = registry().contexts[std::size_t(dev)];
  if (!c) return;
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess) cur = -1;
  if (cur != dev) (void)cudaSetDevice(dev);
  if (cudaFreeAsync(p, c->stream) != cudaSuccess) (void)cudaGetLastError();
  if (cur >= 0 && cur != dev) (void)cudaSetDevice(cur);
}

template <class D>
void Runtime<D>::copy_from_host(void* dst, const void* src, std::size_t bytes) {
  Context& c = pointer_context(dst);
  const DeviceGuard g(c.device);
  c.upload(dst, src, bytes);
}

template <class D>
void Runtime<D>::copy_to_host(void* dst, const void* src, std::size_t bytes) {
  Context& c = pointer_context(src);
  const DeviceGuard g(c.device);
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.stream));
  c.synchronize();
}

template <class D>
void Runtime<D>::copy(void* dst, const void* src, std::size_t bytes) {
  // On the destination's stream; a source on another device is read by a peer copy (cudaMemcpy
  // with unified addressing), ordered after the work queued on the destination's device only.
  Context& c = pointer_context(dst);
  const DeviceGuard g(c.device);
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c.stream));
}

template <class D>
void Runtime<D>::zero(void* dst, std::size_t bytes) {
  Context& c = pointer_context(dst);
  const DeviceGuard g(c.device);
  DDPM_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, c.stream));
}

template <class D>
MemoryStats Runtime<D>::memory_stats() {
  Context& c = current_context();
  MemoryStats s;
  std::uint64_t v = 0;
  DDPM_CUDA_CHECK(cudaMemPoolGetAttribute(c.pool, cudaMemPoolAttrUsedMemCurrent, &v));
  s.in_use = std::size_t(v);
  DDPM_CUDA_CHECK(cudaMemPoolGetAttribute(c.pool, cudaMemPoolAttrUsedMemHigh, &v));
  s.peak_in_use = std::size_t(v);
  DDPM_CUDA_CHECK(cudaMemPoolGetAttribute(c.pool, cudaMemPoolAttrReservedMemCurrent, &v));
  s.reserved = std::size_t(v);
  DDPM_CUDA_CHECK(cudaMemPoolGetAttribute(c.pool, cudaMemPoolAttrReservedMemHigh, &v));
  s.peak_reserved = std::size_t(v);
  return s;
}

template <class D>
void Runtime<D>::reset_peak_memory_stats() {
  Context& c = current_context();
  std::uint64_t zero = 0;  // the only value these attributes accept: resets to the current value
  DDPM_CUDA_CHECK(cudaMemPoolSetAttribute(c.pool, cudaMemPoolAttrUsedMemHigh, &zero));
  DDPM_CUDA_CHECK(cudaMemPoolSetAttribute(c.pool, cudaMemPoolAttrReservedMemHigh, &zero));
}

}  // namespace ddpm::detail::cuda
