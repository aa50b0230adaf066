// SPDX-License-Identifier: MIT
// ddpm/nn/unet/workspace.hpp — scratch tensors shared by all blocks of one U-Net.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>

#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// A fixed set of scratch tensors ("slots") that the blocks of one U-Net share. Each use asks for
/// a slot with a shape; the slot's buffer grows to the largest shape ever asked for and is then
/// reused, so after the first forward/backward of a batch size nothing is allocated.
///
/// A view returned by get() stays valid until the same slot is asked for again. Who uses which
/// slot at a time is fixed by convention (see the `slot` constants); a block documents the slots
/// it overwrites, and its caller keeps live data out of them.
template <std::floating_point T, class B>
class Workspace {
 public:
  /// Slot numbers.
  struct slot {
    // Block-internal: overwritten by ResBlock (a, b, c, vec), AttnBlock (a..f), Upsample (a, c),
    // the output layers (a, c).
    static constexpr std::size_t a = 0, b = 1, c = 2, d = 3, e = 4, f = 5;
    static constexpr std::size_t vec = 6;   ///< (N, C) vectors: emb_proj output / its gradient
    // U-Net level: never touched by the blocks.
    static constexpr std::size_t cat = 7;   ///< decoder input [h, skip]
    static constexpr std::size_t dcat = 8;  ///< its gradient
    static constexpr std::size_t y0 = 9;    ///< main path (inference) / gradient ping-pong (backward)
    static constexpr std::size_t y1 = 10;
    static constexpr std::size_t count = 11;
  };

  /// Slot `i` with `shape` (reallocates only if it has never been that large).
  [[nodiscard]] View<T> get(std::size_t i, const Shape& shape) {
    Tensor<T, B>& t = buffers_[i];
    t.resize(shape);
    return t.view();
  }
  /// Bytes held by all slots.
  [[nodiscard]] std::size_t bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& t : buffers_) n += t.capacity() * sizeof(T);
    return n;
  }
  /// Frees every slot.
  void release() noexcept {
    for (auto& t : buffers_) t.release();
  }

 private:
  std::array<Tensor<T, B>, slot::count> buffers_;
};

}  // namespace ddpm::nn
