// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/context.hpp — the CPU backend's state: a oneTBB arena (thread count) and
// grow-only scratch buffers, so the steady-state training loop does not allocate.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/host_alloc.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::detail::cpu {

/// A grow-only, 64-byte aligned float buffer.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { host_free(data_); }
  /// At least `count` floats; contents unspecified after growth.
  float* get(std::size_t count) {
    if (count > capacity_) {
      host_free(data_);
      data_ = nullptr;
      data_ = static_cast<float*>(host_alloc(count * sizeof(float)));
      capacity_ = count;
      tensor_allocation_count().fetch_add(1, std::memory_order_relaxed);
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  std::size_t capacity_ = 0;
};

/// Thread count and scratch memory of one CPU backend object (shared by its copies).
///
/// All CPU operations are deterministic and give bitwise the same result for any thread count:
/// parallel loops split work into chunks whose boundaries do not depend on the thread count, and
/// reductions add per-chunk partial sums in a fixed order.
class Context {
 public:
  static constexpr std::size_t scratch_slots = 4;

  /// threads <= 0 means all cores (oneTBB's default concurrency).
  explicit Context(int threads = 0)
      : threads_(threads > 0 ? threads : tbb::info::default_concurrency()), arena_(threads_) {
    thread_scratch_.resize(static_cast<std::size_t>(threads_) * scratch_slots);
    for (auto& p : thread_scratch_) p = std::make_unique<ScratchBuffer>();
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  [[nodiscard]] int threads() const noexcept { return threads_; }

  /// Runs f inside this context's arena (so nested tbb::parallel_for uses threads() workers).
  template <class F>
  decltype(auto) execute(F&& f) {
    return arena_.execute(std::forward<F>(f));
  }

  /// Grows slot `slot` of every thread's scratch to at least `count` floats. Call it outside
  /// parallel regions, before a loop whose tasks ask thread_scratch(slot, <= count): then the
  /// memory a call allocates depends on the shapes only, not on which threads the scheduler
  /// happened to give tasks to (so a second call of the same shapes allocates nothing).
  void reserve_thread_scratch(std::size_t slot, std::size_t count) {
    for (int t = 0; t < threads_; ++t)
      thread_scratch_[static_cast<std::size_t>(t) * scratch_slots + slot]->get(count);
  }

  /// Scratch private to the calling worker thread, slot 0..scratch_slots-1. Call only from inside
  /// execute(). Valid until the same thread asks for the same slot again. Grows when needed; call
  /// reserve_thread_scratch first so that growth does not depend on scheduling.
  float* thread_scratch(std::size_t slot, std::size_t count) {
    int idx = tbb::this_task_arena::current_thread_index();
    if (idx < 0 || idx >= threads_) idx = 0;  // not inside the arena: fall back to slot of worker 0
    return thread_scratch_[static_cast<std::size_t>(idx) * scratch_slots + slot]->get(count);
  }

  /// Scratch shared by all threads, slot 0..scratch_slots-1, for buffers filled in a parallel
  /// loop and read after it. Request it outside parallel regions.
  float* shared_scratch(std::size_t slot, std::size_t count) { return shared_[slot].get(count); }

 private:
  int threads_;
  tbb::task_arena arena_;
  std::vector<std::unique_ptr<ScratchBuffer>> thread_scratch_;
  ScratchBuffer shared_[scratch_slots];
};

}  // namespace ddpm::detail::cpu
