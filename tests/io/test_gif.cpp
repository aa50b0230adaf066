// SPDX-License-Identifier: MIT
// Tests for ddpm/io/gif.hpp: files re-open with DGifSlurp with the right frames, sizes, delays,
// looping and colours.
#include <doctest/doctest.h>
#include <gif_lib.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/io/gif.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::Image8;
using ddpm::io::test::TempDir;

namespace {

/// A decoded GIF: frames as RGB via their colour maps, delays, and whether it loops.
struct Decoded {
  int width = 0, height = 0;
  std::vector<Image8> frames;
  std::vector<int> delays;
  bool loops = false;
};

Decoded slurp(const std::filesystem::path& p) {
  int err = 0;
  GifFileType* gif = DGifOpenFileName(p.c_str(), &err);
  REQUIRE(gif != nullptr);
  REQUIRE(DGifSlurp(gif) == GIF_OK);
  Decoded d;
  d.width = gif->SWidth;
  d.height = gif->SHeight;
  for (int i = 0; i < gif->ImageCount; ++i) {
    const SavedImage& si = gif->SavedImages[i];
    const ColorMapObject* map = si.ImageDesc.ColorMap ? si.ImageDesc.ColorMap : gif->SColorMap;
    REQUIRE(map != nullptr);
    Image8 f{std::size_t(si.ImageDesc.Height), std::size_t(si.ImageDesc.Width), 3, {}};
    for (int k = 0; k < si.ImageDesc.Width * si.ImageDesc.Height; ++k) {
      const int idx = si.RasterBits[k];
      REQUIRE(idx < map->ColorCount);
      f.px.insert(f.px.end(),
                  {map->Colors[idx].Red, map->Colors[idx].Green, map->Colors[idx].Blue});
    }
    d.frames.push_back(std::move(f));
    GraphicsControlBlock gcb{};
    d.delays.push_back(DGifSavedExtensionToGCB(gif, i, &gcb) == GIF_OK ? gcb.DelayTime : -1);
    for (int e = 0; e < si.ExtensionBlockCount; ++e) {
      const ExtensionBlock& b = si.ExtensionBlocks[e];
      if (b.Function == APPLICATION_EXT_FUNC_CODE && b.ByteCount == 11 &&
          std::memcmp(b.Bytes, "NETSCAPE2.0", 11) == 0)
        d.loops = true;
    }
  }
  DGifCloseFile(gif, &err);
  return d;
}

Image8 gray_frame(std::size_t h, std::size_t w, int shift) {
  Image8 f{h, w, 1, std::vector<std::uint8_t>(h * w)};
  for (std::size_t i = 0; i < f.px.size(); ++i) f.px[i] = std::uint8_t(i * 13 + std::size_t(shift));
  return f;
}

}  // namespace

TEST_CASE("gif: gray frames round-trip exactly, with frame count, size, delays and looping") {
  TempDir dir;
  const auto p = dir / "traj.gif";
  ddpm::io::GifWriter gif(p, 5, 4, 7);
  for (int k = 0; k < 3; ++k) gif.add_frame(gray_frame(4, 5, 40 * k), k == 2 ? 200 : -1);
  CHECK(gif.frames() == 3);
  gif.close();
  const Decoded d = slurp(p);
  CHECK((d.width == 5 && d.height == 4));
  REQUIRE(d.frames.size() == 3);
  CHECK(d.delays == std::vector<int>{7, 7, 200});
  CHECK(d.loops);
  for (int k = 0; k < 3; ++k) {
    const Image8 g = gray_frame(4, 5, 40 * k);
    for (std::size_t i = 0; i < g.px.size(); ++i) {
      CHECK(d.frames[std::size_t(k)].px[3 * i] == g.px[i]);
      CHECK(d.frames[std::size_t(k)].px[3 * i + 2] == g.px[i]);
    }
  }
  CHECK(dir.entries() == std::vector<std::string>{"traj.gif"});
}

TEST_CASE("gif: RGB frames with few colours are exact; gray RGB frames use the gray palette") {
  TempDir dir;
  Image8 few{6, 6, 3, {}};
  const std::uint8_t colors[5][3] = {
      {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {12, 34, 56}, {250, 250, 10}};
  for (int i = 0; i < 36; ++i) few.px.insert(few.px.end(), colors[i % 5], colors[i % 5] + 3);
  Image8 grayish{6, 6, 3, {}};
  for (int i = 0; i < 36; ++i) grayish.px.insert(grayish.px.end(), 3, std::uint8_t(i * 7));
  const std::vector<Image8> frames{few, grayish};
  ddpm::io::write_gif(dir / "c.gif", frames, 10, /*loop=*/false);
  const Decoded d = slurp(dir / "c.gif");
  REQUIRE(d.frames.size() == 2);
  CHECK(d.frames[0].px == few.px);
  CHECK(d.frames[1].px == grayish.px);
  CHECK_FALSE(d.loops);
}

TEST_CASE("gif: RGB frames with many colours are quantised closely") {
  TempDir dir;
  Image8 grad{64, 64, 3, {}};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      grad.px.insert(grad.px.end(),
                     {std::uint8_t(4 * x), std::uint8_t(4 * y), std::uint8_t(255 - 2 * (x + y))});
  ddpm::io::write_gif(dir / "g.gif", std::vector<Image8>{grad}, 5);
  const Decoded d = slurp(dir / "g.gif");
  REQUIRE(d.frames.size() == 1);
  REQUIRE(d.frames[0].px.size() == grad.px.size());
  double sum = 0;
  int worst = 0;
  for (std::size_t i = 0; i < grad.px.size(); ++i) {
    const int e = std::abs(int(d.frames[0].px[i]) - int(grad.px[i]));
    sum += e;
    worst = std::max(worst, e);
  }
  CHECK(sum / double(grad.px.size()) < 6.0);
  CHECK(worst <= 32);
}

TEST_CASE("gif: the destructor finishes an unclosed writer, but not while unwinding") {
  TempDir dir;
  {
    ddpm::io::GifWriter gif(dir / "auto.gif", 2, 2, 1);
    gif.add_frame(gray_frame(2, 2, 0));
  }
  CHECK(slurp(dir / "auto.gif").frames.size() == 1);
  try {
    ddpm::io::GifWriter gif(dir / "unwound.gif", 2, 2, 1);
    gif.add_frame(gray_frame(2, 2, 0));
    throw std::runtime_error("training failed");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(std::filesystem::exists(dir / "unwound.gif"));
}

TEST_CASE("gif: misuse is a parameter error; an unwritable path is an IoError on close") {
  TempDir dir;
  CHECK_THROWS_AS(ddpm::io::GifWriter(dir / "x.gif", 0, 2, 1), std::invalid_argument);
  CHECK_THROWS_AS(ddpm::io::GifWriter(dir / "x.gif", 70000, 2, 1), std::invalid_argument);
  CHECK_THROWS_AS(ddpm::io::GifWriter(dir / "x.gif", 2, 2, -1), std::invalid_argument);
  ddpm::io::GifWriter gif(dir / "x.gif", 2, 2, 1);
  CHECK_THROWS_AS(gif.add_frame(gray_frame(3, 2, 0)), std::invalid_argument);  // wrong size
  CHECK_THROWS_AS(gif.add_frame(Image8{2, 2, 4, std::vector<std::uint8_t>(16)}),
                  std::invalid_argument);
  CHECK_THROWS_AS(gif.add_frame(Image8{2, 2, 1, std::vector<std::uint8_t>(3)}),
                  std::invalid_argument);
  CHECK_THROWS_AS(gif.close(), std::invalid_argument);  // no frames
  gif.add_frame(gray_frame(2, 2, 0));
  gif.close();
  CHECK_THROWS_AS(gif.close(), std::invalid_argument);
  CHECK_THROWS_AS(gif.add_frame(gray_frame(2, 2, 0)), std::invalid_argument);
  CHECK_THROWS_AS(ddpm::io::write_gif(dir / "e.gif", std::vector<Image8>{}, 1),
                  std::invalid_argument);

  const auto p = dir / "missing" / "t.gif";
  ddpm::io::GifWriter bad(p, 2, 2, 1);
  bad.add_frame(gray_frame(2, 2, 0));
  DDPM_CHECK_IO_ERROR(bad.close(), p.string(), "No such file or directory");
}
