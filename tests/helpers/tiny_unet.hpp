// tests/helpers/tiny_unet.hpp — the tiny U-Net and the 8x8 line images that the trainer,
// checkpoint and data-parallel tests train on (a few ms per step on the reference backend).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ddpm/io/types.hpp"
#include "ddpm/nn/unet/config.hpp"

namespace ddpm::test {

/// 1x8x8 images, base 8, two levels, attention at 4x4, `classes` classes (0 = unconditional).
inline nn::UNetConfig tiny_unet(double dropout = 0.0, std::size_t classes = 3) {
  nn::UNetConfig c;
  c.in_channels = 1;
  c.image_size = 8;
  c.base_channels = 8;
  c.channel_mults = {1, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {4};
  c.num_classes = classes;
  c.groups = 4;
  c.dropout = dropout;
  return c;
}

/// n 8x8 images with labels i % 3: pixel p of image i is 255 on column i % 8 and row 3i % 8,
/// elsewhere background(i, p).
template <class Background>
io::ImageDataset tiny_lines(std::size_t n, Background background) {
  io::ImageDataset d;
  d.n = n;
  d.c = 1;
  d.h = d.w = 8;
  d.pixels.resize(n * 64);
  d.labels.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    d.labels[i] = std::int32_t(i % 3);
    for (std::size_t p = 0; p < 64; ++p)
      d.pixels[i * 64 + p] =
          std::uint8_t((p % 8 == i % 8 || p / 8 == (i * 3) % 8) ? 255 : background(i, p));
  }
  return d;
}

}  // namespace ddpm::test
