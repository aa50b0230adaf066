// SPDX-License-Identifier: MIT
// ddpm/io/png.hpp — PNG writing (stb_image_write, compiled in libstb) and image grids.
//
// A grid tiles n images row-major into `cols` columns with `pad` pixels of padding around and
// between them (the layout of ../shared/ref/train.py save_grid): image i lands in row i / cols,
// column i % cols. For class-conditional samples, order the images class by class with
// cols = images per class to get one row per class.
#pragma once

#include <stb/stb_image_write.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// Encodes an image as PNG bytes (8-bit gray, gray+alpha, RGB or RGBA for c = 1, 2, 3, 4).
/// @pre h, w >= 1, h and w * c below 2^31, px.size() == h * w * c (std::invalid_argument).
[[nodiscard]] inline std::vector<std::byte> encode_png(const Image8& img);

/// Writes an image as a PNG file, atomically. @pre as encode_png.
/// @throws IoError(path, ...) if the file cannot be written.
inline void write_png(const std::filesystem::path& path, const Image8& img);

/// Maps one value in [-1, 1] to [0, 255] as round((clamp(x, -1, 1) + 1) * 127.5) in float with
/// round-half-even, like ../shared/ref/train.py to_uint8; NaN maps to 0.
[[nodiscard]] inline std::uint8_t pm1_to_u8(float x) noexcept;

/// Tiles n images (NCHW, values in [-1, 1], clamped) into one HWC image with `cols` columns
/// (at most n are used), `pad` pixels of `pad_value` (in [-1, 1]; 1 = white) around and
/// between tiles, the whole grid then enlarged `upscale` times (nearest neighbour).
/// Size: H = (rows * (h + pad) + pad) * upscale, W = (cols * (w + pad) + pad) * upscale.
/// @pre images.size() == n * c * h * w; n, h, w, cols, upscale >= 1; c is 1, 3 or 4.
[[nodiscard]] inline Image8 make_grid(std::span<const float> images, std::size_t n, std::size_t c,
                                      std::size_t h, std::size_t w, std::size_t cols,
                                      std::size_t pad = 2, float pad_value = 1.0f,
                                      std::size_t upscale = 1);

/// make_grid for 8-bit images (NCHW), e.g. a preview of a data set; pad_value in [0, 255].
[[nodiscard]] inline Image8 make_grid(std::span<const std::uint8_t> images, std::size_t n,
                                      std::size_t c, std::size_t h, std::size_t w, std::size_t cols,
                                      std::size_t pad = 2, std::uint8_t pad_value = 255,
                                      std::size_t upscale = 1);

/// write_png(path, make_grid(images, n, c, h, w, cols, pad, pad_value, upscale)).
inline void write_png_grid(const std::filesystem::path& path, std::span<const float> images,
                           std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                           std::size_t cols, std::size_t pad = 2, float pad_value = 1.0f,
                           std::size_t upscale = 1);

// ---------------------------------------------------------------- implementation

namespace detail {

inline void stbi_append(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<std::byte>*>(ctx);
  const auto* p = static_cast<const std::byte*>(data);
  out->insert(out->end(), p, p + size);
}

/// Checks grid arguments; returns the grid's (unscaled) height and width.
inline void check_grid_args(std::size_t size, std::size_t n, std::size_t c, std::size_t h,
                            std::size_t w, std::size_t cols, std::size_t pad, std::size_t upscale,
                            std::size_t& grid_h, std::size_t& grid_w) {
  require(n >= 1, "n", "must be at least 1");
  require(c == 1 || c == 3 || c == 4, "c", "must be 1, 3 or 4, got ", c);
  require(h >= 1 && w >= 1, "h, w", "must be at least 1, got ", h, " x ", w);
  require(cols >= 1, "cols", "must be at least 1");
  require(upscale >= 1 && upscale <= 64, "upscale", "must be in [1, 64], got ", upscale);
  require(pad <= 1024, "pad", "must be at most 1024, got ", pad);
  std::size_t expect = 0;
  require(checked_mul(n, c, expect) && checked_mul(expect, h, expect) &&
              checked_mul(expect, w, expect) && expect == size,
          "images", "has ", size, " values, expected n * c * h * w = ", n, " * ", c, " * ", h,
          " * ", w);
  const std::size_t ncols = std::min(cols, n);
  const std::size_t nrows = (n + ncols - 1) / ncols;
  require(h <= (1u << 20) && w <= (1u << 20), "h, w", "too large");
  grid_h = nrows * (h + pad) + pad;
  grid_w = ncols * (w + pad) + pad;
  std::size_t px = 0;
  require(checked_mul(grid_h * upscale, grid_w * upscale, px) && px <= (std::size_t{1} << 30),
          "images", "the grid would be ", grid_h * upscale, " x ", grid_w * upscale,
          " pixels, more than 2^30");
}

/// Tiles with a per-value conversion `to8` from the source type.
template <class T, class Conv>
Image8 tile_grid(std::span<const T> images, std::size_t n, std::size_t c, std::size_t h,
                 std::size_t w, std::size_t cols, std::size_t pad, std::uint8_t pad8,
                 std::size_t upscale, Conv to8) {
  std::size_t gh = 0, gw = 0;
  check_grid_args(images.size(), n, c, h, w, cols, pad, upscale, gh, gw);
  const std::size_t ncols = std::min(cols, n);
  Image8 grid{gh, gw, c, std::vector<std::uint8_t>(gh * gw * c, pad8)};
  const std::size_t hw = h * w;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = i / ncols, q = i % ncols;
    const std::size_t y0 = pad + r * (h + pad), x0 = pad + q * (w + pad);
    const T* src = images.data() + i * c * hw;  // (C, H, W)
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) {
        std::uint8_t* dst = grid.px.data() + ((y0 + y) * gw + x0 + x) * c;
        for (std::size_t ch = 0; ch < c; ++ch) dst[ch] = to8(src[ch * hw + y * w + x]);
      }
  }
  if (upscale == 1) return grid;
  Image8 big{gh * upscale, gw * upscale, c,
             std::vector<std::uint8_t>(gh * gw * upscale * upscale * c)};
  for (std::size_t y = 0; y < big.h; ++y)
    for (std::size_t x = 0; x < big.w; ++x) {
      const std::uint8_t* s = grid.px.data() + ((y / upscale) * gw + x / upscale) * c;
      std::copy(s, s + c, big.px.data() + (y * big.w + x) * c);
    }
  return big;
}

}  // namespace detail

inline std::vector<std::byte> encode_png(const Image8& img) {
  detail::require(img.c >= 1 && img.c <= 4, "img.c", "must be 1 to 4, got ", img.c);
  detail::require(img.h >= 1 && img.w >= 1, "img", "empty image (", img.h, " x ", img.w, ")");
  detail::require(img.h < INT_MAX && img.w < INT_MAX / img.c, "img", "too large for PNG (", img.h,
                  " x ", img.w, ")");
  detail::require(img.px.size() == img.h * img.w * img.c, "img.px", "has ", img.px.size(),
                  " bytes, expected h * w * c = ", img.h * img.w * img.c);
  std::vector<std::byte> out;
  const int ok = stbi_write_png_to_func(detail::stbi_append, &out, int(img.w), int(img.h),
                                        int(img.c), img.px.data(), int(img.w * img.c));
  if (!ok) throw std::runtime_error("ddpm: stbi_write_png_to_func failed (out of memory?)");
  return out;
}

inline void write_png(const std::filesystem::path& path, const Image8& img) {
  const std::vector<std::byte> bytes = encode_png(img);
  write_file_atomic(path, bytes);
}

inline std::uint8_t pm1_to_u8(float x) noexcept {
  if (std::isnan(x)) return 0;
  const float v = (std::clamp(x, -1.0f, 1.0f) + 1.0f) * 127.5f;
  return static_cast<std::uint8_t>(std::nearbyint(v));  // default rounding: half to even
}

inline Image8 make_grid(std::span<const float> images, std::size_t n, std::size_t c, std::size_t h,
                        std::size_t w, std::size_t cols, std::size_t pad, float pad_value,
                        std::size_t upscale) {
  return detail::tile_grid(images, n, c, h, w, cols, pad, pm1_to_u8(pad_value), upscale,
                           [](float v) { return pm1_to_u8(v); });
}

inline Image8 make_grid(std::span<const std::uint8_t> images, std::size_t n, std::size_t c,
                        std::size_t h, std::size_t w, std::size_t cols, std::size_t pad,
                        std::uint8_t pad_value, std::size_t upscale) {
  return detail::tile_grid(images, n, c, h, w, cols, pad, pad_value, upscale,
                           [](std::uint8_t v) { return v; });
}

inline void write_png_grid(const std::filesystem::path& path, std::span<const float> images,
                           std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                           std::size_t cols, std::size_t pad, float pad_value,
                           std::size_t upscale) {
  write_png(path, make_grid(images, n, c, h, w, cols, pad, pad_value, upscale));
}

}  // namespace ddpm::io
