// examples/common/outputs.hpp — what the examples write after sampling: a grid PNG, an animated
// GIF of the denoising trajectory, and the intermediate grids as PNGs.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <ddpm/diffusion/sampler/sample.hpp>
#include <ddpm/io/gif.hpp>
#include <ddpm/io/png.hpp>

namespace examples {

inline std::string zero_pad(std::size_t v, std::size_t width) {
  std::string s = std::to_string(v);
  return std::string(width > s.size() ? width - s.size() : 0, '0') + s;
}

/// grid.png (cols columns), denoise.gif (one frame per recorded step, the last held for 2 s),
/// and, if `intermediates`, intermediates/t_XXXX.png. `upscale` enlarges tiny images.
inline void write_sample_outputs(const std::filesystem::path& dir, const ddpm::SampleResult<float>& r,
                                 std::size_t cols, std::size_t upscale, bool intermediates) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const std::size_t n = r.shape.n(), c = r.shape.c(), h = r.shape.h(), w = r.shape.w();
  ddpm::io::write_png_grid(dir / "grid.png", r.images, n, c, h, w, cols, 2, 1.0f, upscale);
  std::printf("wrote %s\n", (dir / "grid.png").c_str());
  if (r.frames.empty()) return;
  std::vector<ddpm::io::Image8> frames;
  for (const auto& f : r.frames) frames.push_back(ddpm::io::make_grid(f, n, c, h, w, cols, 2, 1.0f, upscale));
  frames.push_back(ddpm::io::make_grid(r.images, n, c, h, w, cols, 2, 1.0f, upscale));
  {
    ddpm::io::GifWriter gif(dir / "denoise.gif", frames[0].w, frames[0].h, 8, true);
    for (std::size_t i = 0; i < frames.size(); ++i) gif.add_frame(frames[i], i + 1 == frames.size() ? 200 : 8);
    gif.close();
  }
  std::printf("wrote %s (%zu frames)\n", (dir / "denoise.gif").c_str(), frames.size());
  if (intermediates) {
    fs::create_directories(dir / "intermediates");
    for (std::size_t i = 0; i < r.frames.size(); ++i)
      ddpm::io::write_png(dir / "intermediates" / ("t_" + zero_pad(std::size_t(r.frame_t[i]), 4) + ".png"), frames[i]);
    std::printf("wrote %zu intermediate grids in %s\n", r.frames.size(), (dir / "intermediates").c_str());
  }
}

}  // namespace examples
