// SPDX-License-Identifier: MIT
// ddpm/io/types.hpp — plain host buffers shared by the io/ readers and writers (no tensors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/core/assert.hpp"

namespace ddpm::io {

/// An 8-bit image in interleaved HWC order: px[(y * w + x) * c + ch].
/// @post (for every Image8 returned by ddpm::io) px.size() == h * w * c and c is 1, 3 or 4.
struct Image8 {
  std::size_t h = 0, w = 0, c = 0;
  std::vector<std::uint8_t> px{};  // (H, W, C)
};

/// A data set of 8-bit images in planar NCHW order, optionally with one integer label per image.
/// @post pixels.size() == n * c * h * w; labels is empty or labels.size() == n.
struct ImageDataset {
  std::size_t n = 0, c = 0, h = 0, w = 0;
  std::vector<std::uint8_t> pixels{};  // (N, C, H, W)
  std::vector<std::int32_t> labels{};  // (N) or empty if unlabelled
};

/// Maps 8-bit pixels [0, 255] to floats [-1, 1] as x / 127.5 - 1, computed in float (the same
/// arithmetic as ../shared/ref/train.py, so values match bit for bit).
[[nodiscard]] inline std::vector<float> to_float_pm1(std::span<const std::uint8_t> pixels) {
  std::vector<float> out(pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) out[i] = float(pixels[i]) / 127.5f - 1.0f;
  return out;
}

namespace detail {

// ddpm::io::detail hides ddpm::detail from code in ddpm::io; bring in the shared helpers.
using ::ddpm::detail::cat;
using ::ddpm::detail::require;

/// a * b, or false when the product does not fit in std::size_t.
[[nodiscard]] inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace detail
}  // namespace ddpm::io
