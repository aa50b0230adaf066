// SPDX-License-Identifier: MIT
// Tests for ddpm/io/font.hpp: glyph metrics, drawing, clipping, rotation.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "ddpm/io/font.hpp"

using ddpm::io::Image8;

namespace {

/// Bounding box of the pixels that are not 255 in a 1-channel image.
struct Box {
  long x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
  long count = 0;
};

Box ink(const Image8& img) {
  Box b;
  for (std::size_t y = 0; y < img.h; ++y)
    for (std::size_t x = 0; x < img.w; ++x)
      if (img.px[(y * img.w + x) * img.c] != 255) {
        b.x0 = std::min(b.x0, long(x));
        b.y0 = std::min(b.y0, long(y));
        b.x1 = std::max(b.x1, long(x));
        b.y1 = std::max(b.y1, long(y));
        ++b.count;
      }
  return b;
}

Image8 blank(std::size_t h, std::size_t w, std::size_t c = 1) {
  return Image8{h, w, c, std::vector<std::uint8_t>(h * w * c, 255)};
}

}  // namespace

TEST_CASE("font: widths add up glyph advances and scale; unknown characters draw as '?'") {
  CHECK(ddpm::io::text_width("") == 0);
  CHECK(ddpm::io::text_width("A") == 6);
  CHECK(ddpm::io::text_width("AA", 2) == 24);
  CHECK(ddpm::io::text_width("\x01") == ddpm::io::text_width("?"));
  CHECK(ddpm::io::text_width("i") < ddpm::io::text_width("m"));
}

TEST_CASE("font: text lands inside its box, in colour, and is clipped at the borders") {
  Image8 img = blank(20, 40);
  ddpm::io::draw_text(img, 3, 4, "Hi", {0, 0, 0});
  const Box b = ink(img);
  CHECK(b.count > 10);
  CHECK(b.x0 >= 3);
  CHECK(b.y0 >= 4);
  CHECK(b.x1 < 3 + ddpm::io::text_width("Hi"));
  CHECK(b.y1 < 4 + ddpm::io::font_height);

  Image8 rgb = blank(12, 12, 3);
  ddpm::io::draw_text(rgb, 1, 1, "8", {200, 10, 20});
  bool red = false;
  for (std::size_t i = 0; i < rgb.px.size(); i += 3)
    red |= rgb.px[i] == 200 && rgb.px[i + 1] == 10 && rgb.px[i + 2] == 20;
  CHECK(red);

  Image8 small = blank(5, 5);
  ddpm::io::draw_text(small, -3, -4, "WWWWWWWW", {0, 0, 0}, 3);  // mostly outside: no crash
  ddpm::io::draw_text(small, 1000, 1000, "x", {0, 0, 0});
  Image8 broken{4, 4, 1, std::vector<std::uint8_t>(3)};  // inconsistent image: ignored
  ddpm::io::draw_text(broken, 0, 0, "x", {0, 0, 0});
}

TEST_CASE("font: vertical text reads bottom to top from its bottom-left corner") {
  Image8 img = blank(40, 20);
  ddpm::io::draw_text(img, 2, 30, "ab", {0, 0, 0}, 1, true);
  const Box b = ink(img);
  CHECK(b.count > 5);
  CHECK(b.x0 >= 2);
  CHECK(b.x1 < 2 + ddpm::io::font_height);
  CHECK(b.y1 <= 30);
  CHECK(b.y0 > 30 - ddpm::io::text_width("ab"));
}
