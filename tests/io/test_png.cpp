// SPDX-License-Identifier: MIT
// Tests for ddpm/io/png.hpp: PNG bytes decode back exactly; grid layout, clamping, upscaling.
#include <doctest/doctest.h>
#include <stb/stb_image.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "ddpm/io/png.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::Image8;
using ddpm::io::test::TempDir;

namespace {

/// Decodes a PNG file with stb_image in its own channel count.
Image8 decode(const std::filesystem::path& p) {
  int w = 0, h = 0, c = 0;
  stbi_uc* px = stbi_load(p.c_str(), &w, &h, &c, 0);
  REQUIRE(px != nullptr);
  Image8 img{std::size_t(h), std::size_t(w), std::size_t(c),
             std::vector<std::uint8_t>(px, px + std::size_t(w) * std::size_t(h) * std::size_t(c))};
  stbi_image_free(px);
  return img;
}

std::uint8_t at(const Image8& img, std::size_t y, std::size_t x, std::size_t ch = 0) {
  return img.px[(y * img.w + x) * img.c + ch];
}

}  // namespace

TEST_CASE("png: written files decode with stb_image to the same pixels (c = 1, 2, 3, 4)") {
  TempDir dir;
  for (const std::size_t c : {1, 2, 3, 4}) {
    CAPTURE(c);
    Image8 img{9, 13, c, std::vector<std::uint8_t>(9 * 13 * c)};
    for (std::size_t i = 0; i < img.px.size(); ++i) img.px[i] = std::uint8_t(i * 31 + 7);
    const auto p = dir / "x.png";
    ddpm::io::write_png(p, img);
    const Image8 back = decode(p);
    CHECK((back.h == 9 && back.w == 13 && back.c == c));
    CHECK(back.px == img.px);
  }
  CHECK(dir.entries() == std::vector<std::string>{"x.png"});
}

TEST_CASE("png: pm1_to_u8 clamps and rounds like the reference (half to even), NaN -> 0") {
  CHECK(ddpm::io::pm1_to_u8(-1.0f) == 0);
  CHECK(ddpm::io::pm1_to_u8(1.0f) == 255);
  CHECK(ddpm::io::pm1_to_u8(0.0f) == 128);  // 127.5 rounds to even
  CHECK(ddpm::io::pm1_to_u8(-3.0f) == 0);
  CHECK(ddpm::io::pm1_to_u8(7.0f) == 255);
  CHECK(ddpm::io::pm1_to_u8(std::numeric_limits<float>::infinity()) == 255);
  CHECK(ddpm::io::pm1_to_u8(-std::numeric_limits<float>::infinity()) == 0);
  CHECK(ddpm::io::pm1_to_u8(std::nanf("")) == 0);
  // Inverse of to_float_pm1 on every 8-bit value.
  for (int v = 0; v < 256; ++v) CHECK(ddpm::io::pm1_to_u8(float(v) / 127.5f - 1.0f) == v);
}

TEST_CASE("png: make_grid tiles row-major with padding; empty cells are padding") {
  // Three 2x2 gray images with values -1 (0), 0 (128), 1 (255); 2 columns, pad 1, pad value -1.
  const std::vector<float> imgs{-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1};
  const Image8 g =
      ddpm::io::make_grid(imgs, 3, 1, 2, 2, /*cols=*/2, /*pad=*/1, /*pad_value=*/-1.0f);
  CHECK((g.h == 2 * 3 + 1 && g.w == 2 * 3 + 1 && g.c == 1));
  CHECK(at(g, 0, 0) == 0);                            // padding
  CHECK((at(g, 1, 1) == 0 && at(g, 2, 2) == 0));      // image 0 at row 0, col 0
  CHECK((at(g, 1, 4) == 128 && at(g, 2, 5) == 128));  // image 1 at row 0, col 1
  CHECK((at(g, 4, 1) == 255 && at(g, 5, 2) == 255));  // image 2 at row 1, col 0
  CHECK(at(g, 4, 4) == 0);                            // empty cell -> pad value
  // Default padding is 2 white pixels, like ../shared/ref save_grid.
  const Image8 d = ddpm::io::make_grid(imgs, 3, 1, 2, 2, 3);
  CHECK((d.h == 1 * 4 + 2 && d.w == 3 * 4 + 2));
  CHECK((at(d, 0, 0) == 255 && at(d, 2, 2) == 0 && at(d, 2, 6) == 128 && at(d, 2, 10) == 255));
}

TEST_CASE("png: make_grid with RGB, more columns than images, and upscaling") {
  // One 1x2 RGB image (planar): R = [-1, 1], G = [1, -1], B = [0, 0].
  const std::vector<float> img{-1, 1, 1, -1, 0, 0};
  const Image8 g = ddpm::io::make_grid(img, 1, 3, 1, 2, /*cols=*/8, /*pad=*/0, 1.0f, /*upscale=*/3);
  CHECK((g.h == 3 && g.w == 6 && g.c == 3));  // cols clamps to n = 1
  for (std::size_t y = 0; y < 3; ++y)
    for (std::size_t x = 0; x < 6; ++x) {
      const bool left = x < 3;
      CHECK(at(g, y, x, 0) == (left ? 0 : 255));
      CHECK(at(g, y, x, 1) == (left ? 255 : 0));
      CHECK(at(g, y, x, 2) == 128);
    }
}

TEST_CASE("png: make_grid for 8-bit data sets and write_png_grid") {
  const std::vector<std::uint8_t> px{10, 20, 30, 40};  // two 1x2 gray images
  const Image8 g = ddpm::io::make_grid(px, 2, 1, 1, 2, 1, 1, std::uint8_t{7});
  CHECK((g.h == 5 && g.w == 4));
  CHECK((at(g, 1, 1) == 10 && at(g, 1, 2) == 20 && at(g, 3, 1) == 30 && at(g, 3, 2) == 40 &&
         at(g, 2, 1) == 7));

  TempDir dir;
  std::vector<float> imgs(4 * 3 * 5 * 6);
  for (std::size_t i = 0; i < imgs.size(); ++i) imgs[i] = std::sin(float(i));
  ddpm::io::write_png_grid(dir / "grid.png", imgs, 4, 3, 5, 6, 2, 2, 1.0f, 2);
  const Image8 expect = ddpm::io::make_grid(imgs, 4, 3, 5, 6, 2, 2, 1.0f, 2);
  const Image8 back = decode(dir / "grid.png");
  CHECK((back.h == expect.h && back.w == expect.w && back.c == 3));
  CHECK(back.px == expect.px);
}

TEST_CASE("png: bad arguments are parameter errors; unwritable paths are IoErrors") {
  const std::vector<float> imgs(2 * 1 * 2 * 2, 0.0f);
  CHECK_THROWS_AS((void)ddpm::io::make_grid(imgs, 3, 1, 2, 2, 2), std::invalid_argument);  // size
  CHECK_THROWS_AS((void)ddpm::io::make_grid(imgs, 2, 1, 2, 2, 0), std::invalid_argument);  // cols
  CHECK_THROWS_AS((void)ddpm::io::make_grid(imgs, 1, 2, 2, 2, 1), std::invalid_argument);  // c = 2
  CHECK_THROWS_AS((void)ddpm::io::make_grid(imgs, 2, 1, 2, 2, 1, 2, 1.0f, 0),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::make_grid(std::span<const float>{}, 0, 1, 2, 2, 1),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::encode_png(Image8{2, 2, 3, std::vector<std::uint8_t>(5)}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::encode_png(Image8{0, 2, 3, {}}), std::invalid_argument);
  TempDir dir;
  const auto p = dir / "missing" / "x.png";
  DDPM_CHECK_IO_ERROR(ddpm::io::write_png(p, Image8{1, 1, 1, {0}}), p.string(),
                      "No such file or directory");
}
