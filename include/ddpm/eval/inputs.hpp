// SPDX-License-Identifier: MIT
// ddpm/eval/inputs.hpp — images to score, from a sample grid PNG (as io::write_png_grid writes
// it), a folder of image files (any generator's output), or an IDX file; and their requested
// labels. Needs ddpm::io.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::eval {

namespace detail {
// ddpm::eval::detail hides ddpm::detail from code in ddpm::eval; bring in the shared helpers.
using ::ddpm::detail::cat;
using ::ddpm::detail::require;
}  // namespace detail

/// Images to score: NCHW floats in [-1, 1] (8-bit pixels mapped as x / 127.5 - 1).
struct SampleSet {
  std::string source{};  ///< the path they came from
  std::string kind{};    ///< "grid", "folder" or "idx"
  std::size_t n = 0, c = 0, h = 0, w = 0;
  std::vector<float> images{};               ///< (n, c, h, w)
  std::vector<std::int32_t> labels{};        ///< from an IDX labels file, else empty
  std::size_t grid_rows = 0, grid_cols = 0;  ///< layout of a grid (0 otherwise)
  std::vector<std::string> files{};          ///< one file name per image (folders only)
};

/// How tiles sit in a grid image: H = (rows (h + pad) + pad) upscale, likewise W.
struct GridLayout {
  std::size_t rows = 0, cols = 0, pad = 0, upscale = 1;
};

/// Finds the layout of a grid of h x w tiles: every upscale in [1, 8] and pad in [0, 8] (or the
/// given ones) whose sizes fit and whose pixels agree — upscale x upscale blocks constant, the
/// padding stripes one colour — is a candidate; the largest upscale wins, then the largest pad.
/// @throws IoError(name, ...) if no layout fits, suggesting --grid-pad / --grid-upscale.
[[nodiscard]] inline GridLayout detect_grid(const io::Image8& img, std::size_t h, std::size_t w,
                                            std::optional<std::size_t> pad,
                                            std::optional<std::size_t> upscale,
                                            const std::string& name);

/// Loads images to score from `path`:
///   * a folder: every image file in it (.png .jpg .jpeg .bmp .pgm .ppm .pnm .tga .gif, sorted
///     by name, hidden files skipped), each exactly size x size;
///   * an image file: a grid of size x size tiles (see detect_grid); trailing tiles that are
///     entirely the padding colour (an incomplete last row) are dropped;
///   * any other file: an IDX file of (N, size, size) or (N, size, size, channels) images, with
///     labels from `idx_labels` if given.
/// Images are read as `channels` channels (gray or RGB conversion as stb_image does).
/// @throws IoError naming the file: missing, empty folder, undecodable, or an image of another
///         size than size x size.
[[nodiscard]] inline SampleSet load_samples(const std::filesystem::path& path, std::size_t channels,
                                            std::size_t size,
                                            std::optional<std::size_t> grid_pad = std::nullopt,
                                            std::optional<std::size_t> grid_upscale = std::nullopt,
                                            const std::filesystem::path& idx_labels = {});

/// Parses "3,1,4" into labels. @throws std::invalid_argument naming `what` on a bad entry.
[[nodiscard]] inline std::vector<std::int32_t> parse_labels(std::string_view text,
                                                            std::string_view what = "--labels");

/// Labels of a grid whose row r (or column, if `columns`) shows class r.
[[nodiscard]] inline std::vector<std::int32_t> grid_labels(const SampleSet& s, bool columns);

// ---------------------------------------------------------------- implementation

namespace detail {
inline bool is_image_file_name(const std::filesystem::path& p) {
  const std::string fn = p.filename().string();
  if (fn.empty() || fn[0] == '.') return false;
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".pnm"})
    if (ext == e) return true;
  return false;
}

/// Does the layout fit the pixels? (sizes, constant upscale blocks, one-colour padding)
inline bool grid_layout_fits(const io::Image8& img, std::size_t h, std::size_t w, std::size_t pad,
                             std::size_t up, GridLayout& out) {
  if (up == 0 || img.h % up || img.w % up) return false;
  const std::size_t gh = img.h / up, gw = img.w / up;
  if (gh < pad || gw < pad || (gh - pad) % (h + pad) || (gw - pad) % (w + pad)) return false;
  const std::size_t rows = (gh - pad) / (h + pad), cols = (gw - pad) / (w + pad);
  if (rows == 0 || cols == 0) return false;
  const std::size_t c = img.c;
  auto at = [&](std::size_t y, std::size_t x, std::size_t ch) {
    return img.px[(y * img.w + x) * c + ch];
  };
  if (up > 1)
    for (std::size_t y = 0; y < img.h; ++y)
      for (std::size_t x = 0; x < img.w; ++x)
        for (std::size_t ch = 0; ch < c; ++ch)
          if (at(y, x, ch) != at(y - y % up, x - x % up, ch)) return false;
  if (pad > 0) {
    // Grid coordinates (gy, gx) are padding unless inside a tile.
    const std::uint8_t* ref = nullptr;
    for (std::size_t gy = 0; gy < gh; ++gy) {
      const bool pad_row = (gy % (h + pad)) < pad;
      for (std::size_t gx = 0; gx < gw; ++gx) {
        const bool pad_col = (gx % (w + pad)) < pad;
        if (!pad_row && !pad_col) continue;
        const std::uint8_t* p = img.px.data() + ((gy * up) * img.w + gx * up) * c;
        if (!ref)
          ref = p;
        else if (!std::equal(p, p + c, ref))
          return false;
      }
    }
  }
  out = GridLayout{rows, cols, pad, up};
  return true;
}
}  // namespace detail

inline GridLayout detect_grid(const io::Image8& img, std::size_t h, std::size_t w,
                              std::optional<std::size_t> pad, std::optional<std::size_t> upscale,
                              const std::string& name) {
  GridLayout best;
  bool found = false;
  for (std::size_t up = upscale.value_or(8); up >= (upscale ? *upscale : 1) && up > 0; --up) {
    for (std::size_t p = pad.value_or(8) + 1; p-- > (pad ? *pad : 0);) {
      GridLayout g;
      if (detail::grid_layout_fits(img, h, w, p, up, g)) {
        best = g;
        found = true;
        break;
      }
    }
    if (found) break;
  }
  if (!found)
    throw IoError(
        name, detail::cat("a ", img.w, "x", img.h, " image is not a grid of ", w, "x", h,
                          " tiles (tried upscale ",
                          upscale ? std::to_string(*upscale) : std::string("1..8"), ", padding ",
                          pad ? std::to_string(*pad) : std::string("0..8"),
                          "; expected width = (cols * (", w,
                          " + pad) + pad) * upscale with uniform padding); pass "
                          "--grid-pad and --grid-upscale, or score a folder or IDX file"));
  return best;
}

inline SampleSet load_samples(const std::filesystem::path& path, std::size_t channels,
                              std::size_t size, std::optional<std::size_t> grid_pad,
                              std::optional<std::size_t> grid_upscale,
                              const std::filesystem::path& idx_labels) {
  namespace fs = std::filesystem;
  const std::string name = path.string();
  detail::require(channels == 1 || channels == 3 || channels == 4, "eval::load_samples",
                  "channels must be 1, 3 or 4, got ", channels);
  detail::require(size >= 1, "eval::load_samples", "size must be >= 1");
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw IoError(name, "no such file or folder");
  SampleSet s;
  s.source = name;
  s.c = channels;
  s.h = s.w = size;
  const std::size_t item = channels * size * size;
  auto to_pm1 = [](std::uint8_t v) { return float(v) / 127.5f - 1.0f; };
  if (fs::is_directory(st)) {
    if (!idx_labels.empty())
      throw IoError(idx_labels.string(),
                    "labels from an IDX file go with IDX images, not a folder");
    s.kind = "folder";
    std::vector<fs::path> files;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code e2;
      if (it->is_regular_file(e2) && detail::is_image_file_name(it->path()))
        files.push_back(it->path());
    }
    if (ec) throw IoError(name, "cannot list the folder: " + ec.message());
    if (files.empty())
      throw IoError(
          name, "the folder holds no image files (.png .jpg .jpeg .bmp .pgm .ppm .pnm .tga .gif)");
    std::sort(files.begin(), files.end());
    s.n = files.size();
    s.images.resize(s.n * item);
    for (std::size_t i = 0; i < files.size(); ++i) {
      const io::Image8 img = io::read_image(files[i], channels);
      if (img.h != size || img.w != size)
        throw IoError(files[i].string(), detail::cat("image is ", img.w, "x", img.h,
                                                     ", the classifier takes ", size, "x", size));
      for (std::size_t p = 0; p < size * size; ++p)
        for (std::size_t ch = 0; ch < channels; ++ch)
          s.images[i * item + ch * size * size + p] = to_pm1(img.px[p * channels + ch]);
      s.files.push_back(files[i].filename().string());
    }
    return s;
  }
  if (detail::is_image_file_name(path) || path.extension() == ".png") {
    if (!idx_labels.empty())
      throw IoError(idx_labels.string(), "labels from an IDX file go with IDX images, not a grid");
    s.kind = "grid";
    const io::Image8 img = io::read_image(path, channels);
    const GridLayout g = detect_grid(img, size, size, grid_pad, grid_upscale, name);
    s.grid_rows = g.rows;
    s.grid_cols = g.cols;
    auto px = [&](std::size_t gy, std::size_t gx, std::size_t ch) {
      return img.px[((gy * g.upscale) * img.w + gx * g.upscale) * channels + ch];
    };
    std::vector<std::uint8_t> pad_colour(channels, 0);
    const bool has_pad = g.pad > 0;
    if (has_pad)
      for (std::size_t ch = 0; ch < channels; ++ch) pad_colour[ch] = px(0, 0, ch);
    std::vector<std::uint8_t> tile(item);
    std::size_t kept_tiles = 0;  // tiles up to the last non-blank one
    std::vector<std::vector<std::uint8_t>> tiles;
    for (std::size_t r = 0; r < g.rows; ++r)
      for (std::size_t q = 0; q < g.cols; ++q) {
        const std::size_t y0 = g.pad + r * (size + g.pad), x0 = g.pad + q * (size + g.pad);
        bool blank = has_pad;
        for (std::size_t y = 0; y < size; ++y)
          for (std::size_t x = 0; x < size; ++x)
            for (std::size_t ch = 0; ch < channels; ++ch) {
              const std::uint8_t v = px(y0 + y, x0 + x, ch);
              tile[ch * size * size + y * size + x] = v;
              blank = blank && v == pad_colour[ch];
            }
        tiles.push_back(tile);
        if (!blank) kept_tiles = tiles.size();  // drop only trailing blank tiles
      }
    tiles.resize(kept_tiles);
    if (tiles.empty()) throw IoError(name, "the grid holds no images (every tile is blank)");
    s.n = tiles.size();
    s.images.resize(s.n * item);
    for (std::size_t i = 0; i < s.n; ++i)
      for (std::size_t k = 0; k < item; ++k) s.images[i * item + k] = to_pm1(tiles[i][k]);
    return s;
  }
  s.kind = "idx";
  const io::ImageDataset d = io::load_idx_images(path, idx_labels);
  if (d.h != size || d.w != size || d.c != channels)
    throw IoError(
        name, detail::cat("images are ", d.c, "x", d.h, "x", d.w, " (CxHxW), the classifier takes ",
                          channels, "x", size, "x", size));
  s.n = d.n;
  s.images = io::to_float_pm1(d.pixels);
  s.labels = d.labels;
  return s;
}

inline std::vector<std::int32_t> parse_labels(std::string_view text, std::string_view what) {
  std::vector<std::int32_t> out;
  std::size_t i = 0;
  while (i <= text.size()) {
    const std::size_t j = std::min(text.find(',', i), text.size());
    std::string item(text.substr(i, j - i));
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    std::size_t pos = 0;
    long v = -1;
    try {
      v = std::stol(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    detail::require(!item.empty() && pos == item.size() && v >= 0 && v < (1L << 30), what, "entry ",
                    out.size() + 1, " ('", item, "') is not a class index >= 0");
    out.push_back(std::int32_t(v));
    i = j + 1;
  }
  return out;
}

inline std::vector<std::int32_t> grid_labels(const SampleSet& s, bool columns) {
  detail::require(s.kind == "grid" && s.grid_cols > 0,
                  columns ? "--grid-cols-are-classes" : "--grid-rows-are-classes", "the samples (",
                  s.source, ") were read as ", s.kind == "idx" ? "an IDX file" : "a folder",
                  ", not as a grid PNG");
  std::vector<std::int32_t> out(s.n);
  for (std::size_t i = 0; i < s.n; ++i)
    out[i] = std::int32_t(columns ? i % s.grid_cols : i / s.grid_cols);
  return out;
}

}  // namespace ddpm::eval
