// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/parallel.hpp — deterministic parallel loops over a Context's arena.
//
// Every loop here splits [0, n) into chunks whose count and boundaries depend only on n and on the
// constants passed by the caller, never on the thread count or on scheduling. Element-wise work is
// then trivially independent of the thread count, and reductions add one partial per chunk in
// chunk order, so a sum is bitwise the same on 1, 2 or 64 threads. Loops with a single chunk run
// on the calling thread without entering the arena (tiny tensors stay serial).
#pragma once

#include <algorithm>
#include <cstddef>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include "ddpm/backend/cpu/context.hpp"

namespace ddpm::detail::cpu {

/// How [0, n) is cut: `count` chunks of `size` elements (the last one shorter).
struct Chunking {
  std::size_t count = 0;
  std::size_t size = 0;
};

/// Largest chunk count of a reduction (its partials live on the caller's stack).
inline constexpr std::size_t max_reduce_chunks = 256;

/// Splits n items into balanced chunks of at least `min_chunk` items (when n allows), each a
/// multiple of `align` items except the last, at most `max_chunks` of them.
[[nodiscard]] inline Chunking make_chunking(std::size_t n, std::size_t min_chunk,
                                            std::size_t align = 1,
                                            std::size_t max_chunks = 4096) noexcept {
  if (n == 0) return {};
  min_chunk = std::max<std::size_t>(min_chunk, 1);
  align = std::max<std::size_t>(align, 1);
  std::size_t count = std::clamp<std::size_t>(n / min_chunk, 1, max_chunks);
  std::size_t size = (n + count - 1) / count;
  size = (size + align - 1) / align * align;
  count = (n + size - 1) / size;
  return {count, size};
}

/// Calls f(begin, end) once per chunk of make_chunking(n, min_chunk, align), in parallel inside
/// ctx's arena when there is more than one chunk. f must only write data owned by its chunk.
template <class F>
inline void parallel_chunks(Context& ctx, std::size_t n, std::size_t min_chunk, std::size_t align,
                            F&& f) {
  const Chunking ch = make_chunking(n, min_chunk, align);
  if (ch.count == 0) return;
  if (ch.count == 1) {
    f(std::size_t{0}, n);
    return;
  }
  ctx.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, ch.count, 1),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t k = r.begin(); k != r.end(); ++k)
                          f(k * ch.size, std::min(n, (k + 1) * ch.size));
                      });
  });
}

/// Sum over chunks of f(begin, end) -> double, added in chunk order (deterministic for any thread
/// count). At most max_reduce_chunks chunks.
template <class F>
[[nodiscard]] inline double parallel_sum(Context& ctx, std::size_t n, std::size_t min_chunk,
                                         std::size_t align, F&& f) {
  const Chunking ch = make_chunking(n, min_chunk, align, max_reduce_chunks);
  if (ch.count == 0) return 0.0;
  if (ch.count == 1) return f(std::size_t{0}, n);
  double partial[max_reduce_chunks];
  ctx.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, ch.count, 1),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t k = r.begin(); k != r.end(); ++k)
                          partial[k] = f(k * ch.size, std::min(n, (k + 1) * ch.size));
                      });
  });
  double s = 0.0;
  for (std::size_t k = 0; k < ch.count; ++k) s += partial[k];
  return s;
}

/// Splits [begin, end) of a flattened (N, item) tensor into per-sample segments and calls
/// f(n, seg_begin, seg_end) for each (global element indices).
template <class F>
inline void for_each_sample_segment(std::size_t begin, std::size_t end, std::size_t item, F&& f) {
  while (begin < end) {
    const std::size_t n = begin / item;
    const std::size_t seg_end = std::min(end, (n + 1) * item);
    f(n, begin, seg_end);
    begin = seg_end;
  }
}

}  // namespace ddpm::detail::cpu
