// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/memory.hpp — detail::Memory<device_memory>: what Tensor<T, backend::Cuda> uses
// to allocate, free, copy and zero device memory. Readable by g++ (no CUDA header): the functions
// forward to detail::cuda::Runtime<>, defined in ddpm/backend/cuda/context.cuh.
//
// Allocation is stream-ordered from the device's memory pool, which keeps freed blocks cached
// (release threshold: unlimited), so after the first step a training loop calls no cudaMalloc.
#pragma once

#include <atomic>
#include <cstddef>
#include <type_traits>

#include "ddpm/backend/cuda/tag.hpp"
#include "ddpm/backend/tags.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::detail {

/// Device buffers allocated by Tensor and by the CUDA backend's scratch (also counted in
/// tensor_allocation_count(), which covers every memory space).
inline std::atomic<std::size_t>& device_allocation_count() noexcept {
  static std::atomic<std::size_t> n{0};
  return n;
}

template <>
struct Memory<backend::device_memory> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = cuda::Runtime<>::allocate(bytes);
    tensor_allocation_count().fetch_add(1, std::memory_order_relaxed);
    device_allocation_count().fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  static void deallocate(void* p) noexcept {
    if (p) cuda::Runtime<>::deallocate(p);
  }
  static void copy_from_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes) cuda::Runtime<>::copy_from_host(dst, src, bytes);
  }
  static void copy_to_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes) cuda::Runtime<>::copy_to_host(dst, src, bytes);
  }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) cuda::Runtime<>::copy(dst, src, bytes);
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes) cuda::Runtime<>::zero(dst, bytes);
  }
};

}  // namespace ddpm::detail

namespace ddpm::cuda {

/// Device memory statistics of the current device (see detail::cuda::MemoryStats).
inline detail::cuda::MemoryStats memory_stats() { return detail::cuda::Runtime<>::memory_stats(); }
/// Restarts the peak counters of memory_stats().
inline void reset_peak_memory_stats() { detail::cuda::Runtime<>::reset_peak_memory_stats(); }

/// A host tensor's contents copied into a new device tensor (and back with to_host).
template <class T, class B>
Tensor<T, backend::Cuda> to_device(const Tensor<T, B>& t) {
  static_assert(std::is_same_v<typename B::memory_space, backend::host_memory>,
                "ddpm::cuda::to_device: the source must be a host tensor");
  Tensor<T, backend::Cuda> d(t.shape());
  if (t.size()) detail::Memory<backend::device_memory>::copy_from_host(d.data(), t.data(), t.size() * sizeof(T));
  return d;
}
/// A device tensor's contents copied into a new host tensor of backend B.
template <class B, class T>
Tensor<T, B> to_host(const Tensor<T, backend::Cuda>& t) {
  static_assert(std::is_same_v<typename B::memory_space, backend::host_memory>,
                "ddpm::cuda::to_host: the destination backend must use host memory");
  Tensor<T, B> h(t.shape());
  if (t.size()) detail::Memory<backend::device_memory>::copy_to_host(h.data(), t.data(), t.size() * sizeof(T));
  return h;
}

}  // namespace ddpm::cuda
