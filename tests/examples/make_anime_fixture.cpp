// tests/examples/make_anime_fixture.cpp — writes the inputs of the anime_faces smoke test
// (tests/examples/anime_faces_smoke.cmake) into the folder given as argv[1]; all made here, no
// real data:
//   colour/      12 colour PNGs of structured images (a disc on a gradient), sizes 20x16 and 16x16
//   grey/        4 grey PNGs
//   empty/       no image file (a text file only)
//   nested/      no image file, a subfolder faces/ with 2 colour PNGs
//   broken/      2 colour PNGs and one file named .png that is not an image
//   rgb.idx4     12 colour images, 24 x 24 x 3 (idx4)
//   grey.idx3    12 grey images, 24 x 24 (idx3)
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ddpm/io/idx.hpp>
#include <ddpm/io/png.hpp>

namespace fs = std::filesystem;

// Image i: a disc of colour (r, g, b) depending on i, on a diagonal gradient, HWC.
static ddpm::io::Image8 make(std::size_t i, std::size_t h, std::size_t w, std::size_t c) {
  ddpm::io::Image8 img{h, w, c, std::vector<std::uint8_t>(h * w * c)};
  const double cx = 0.3 * double(w) + double(i % 3), cy = 0.4 * double(h) + double(i % 4);
  const double r = 0.25 * double(std::min(h, w));
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x) {
      const bool in = (double(x) - cx) * (double(x) - cx) + (double(y) - cy) * (double(y) - cy) < r * r;
      for (std::size_t ch = 0; ch < c; ++ch) {
        const double bg = 40.0 + 150.0 * double(x + y) / double(h + w) + 20.0 * double(ch);
        const double fg = 60.0 + double((i * 53 + ch * 97) % 190);
        img.px[(y * w + x) * c + ch] = std::uint8_t(in ? fg : bg);
      }
    }
  return img;
}

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_anime_fixture OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  for (const char* d : {"colour", "grey", "empty", "broken", "nested/faces"}) fs::create_directories(out / d);
  for (std::size_t i = 0; i < 12; ++i)
    ddpm::io::write_png(out / "colour" / ("img" + std::to_string(i) + ".png"),
                        make(i, 16, i % 2 ? 20 : 16, 3));
  for (std::size_t i = 0; i < 4; ++i)
    ddpm::io::write_png(out / "grey" / ("g" + std::to_string(i) + ".png"), make(i, 16, 16, 1));
  std::ofstream(out / "empty" / "readme.txt") << "no images here\n";
  for (std::size_t i = 0; i < 2; ++i)
    ddpm::io::write_png(out / "nested" / "faces" / ("n" + std::to_string(i) + ".png"), make(i, 16, 16, 3));
  for (std::size_t i = 0; i < 2; ++i)
    ddpm::io::write_png(out / "broken" / ("a" + std::to_string(i) + ".png"), make(i, 16, 16, 3));
  std::ofstream(out / "broken" / "b_not_an_image.png") << "this is text, not a PNG\n";
  for (std::size_t c : {std::size_t{3}, std::size_t{1}}) {
    ddpm::io::IdxArray a;
    a.dims = c == 3 ? std::vector<std::size_t>{12, 24, 24, 3} : std::vector<std::size_t>{12, 24, 24};
    for (std::size_t i = 0; i < 12; ++i) {
      const auto img = make(i, 24, 24, c);
      a.data.insert(a.data.end(), img.px.begin(), img.px.end());
    }
    ddpm::io::write_idx(out / (c == 3 ? "rgb.idx4" : "grey.idx3"), a);
  }
  std::printf("fixture written to %s\n", out.string().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_anime_fixture: %s\n", e.what());
  return 1;
}
