// SPDX-License-Identifier: MIT
// ddpm/io/image.hpp — decoding images (PNG, JPEG, BMP, TGA, GIF, PNM via stb_image), resizing,
// centre cropping, flipping, and loading a folder of images as an NCHW data set.
//
// stb_image's implementation is compiled into libstb (Debian libstb-dev), linked by ddpm::io;
// this header only declares it, so never define STB_IMAGE_IMPLEMENTATION alongside it.
#pragma once

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// Largest image read_image decodes, in pixels (2^26, e.g. 8192 x 8192); checked from the
/// header before stb_image allocates (it may need up to 8 bytes per pixel while decoding).
inline constexpr std::size_t max_image_pixels = std::size_t{1} << 26;

/// Largest encoded image file read_image accepts (stb_image takes an int length).
inline constexpr std::size_t max_image_file_bytes = std::size_t{1} << 30;

/// Decodes an image file, converted to `channels` (1 = luminance, 3 = RGB, 4 = RGBA).
/// @pre channels is 1, 3 or 4 (std::invalid_argument otherwise).
/// @throws IoError(path, ...) if the file is missing, too large, or cannot be decoded
///         ("cannot decode image: <stb_image's reason>").
[[nodiscard]] inline Image8 read_image(const std::filesystem::path& path, std::size_t channels = 3);

/// read_image on bytes in memory; `name` is used in errors (for fuzzing and embedded data).
[[nodiscard]] inline Image8 decode_image(std::span<const std::byte> bytes, const std::string& name,
                                         std::size_t channels = 3);

/// Resizes to h x w, each axis on its own: area averaging (box filter with exact fractional
/// coverage) when shrinking, bilinear with half-pixel centres when growing, copy when equal.
/// Results are rounded to nearest. @pre img is valid; h, w >= 1 and h * w <= max_image_pixels.
[[nodiscard]] inline Image8 resize_area_or_bilinear(const Image8& img, std::size_t h,
                                                    std::size_t w);

/// The largest centred square: side min(h, w), offset ((h - side) / 2, (w - side) / 2).
[[nodiscard]] inline Image8 center_crop_square(const Image8& img);

/// Mirror image left to right.
[[nodiscard]] inline Image8 hflip(const Image8& img);

/// Loads every image of a folder (not its subfolders) as a size x size data set, NCHW, unlabelled.
/// Files are taken in sorted file-name order (deterministic); files whose extension is not
/// .png .jpg .jpeg .bmp .tga .gif .ppm .pgm .pnm (any case), and hidden files (".name", e.g.
/// macOS "._x.png"), are skipped. Each image is centre-cropped to a square if `center_crop`
/// (else squashed), then resized with resize_area_or_bilinear. `max_images` > 0 keeps only the
/// first max_images files.
/// @pre size in [1, 8192]; channels is 1, 3 or 4.
/// @throws IoError(dir, ...) if the folder is missing or holds no image file (the message says
///         whether it is empty, or holds only subfolders or other files, naming one);
///         IoError(file, ...) naming the first image that cannot be read.
[[nodiscard]] inline ImageDataset load_image_folder(const std::filesystem::path& dir,
                                                    std::size_t size, std::size_t channels = 3,
                                                    bool center_crop = true,
                                                    std::size_t max_images = 0);

// ---------------------------------------------------------------- implementation

namespace detail {

inline void require_image(const Image8& img, std::string_view what) {
  require(img.h > 0 && img.w > 0 && img.c > 0, what, "empty image (", img.h, " x ", img.w, " x ",
          img.c, ")");
  std::size_t n = 0;
  require(checked_mul(img.h, img.w, n) && checked_mul(n, img.c, n) && img.px.size() == n, what,
          "px has ", img.px.size(), " bytes, expected h * w * c = ", img.h, " * ", img.w, " * ",
          img.c);
}

/// Per-output-index taps of a 1-d resampling from n_in to n_out samples.
struct ResampleTaps {
  std::vector<std::size_t> first;   // first input index of each output
  std::vector<std::size_t> count;   // number of taps
  std::vector<std::size_t> offset;  // start of this output's weights in `weight`
  std::vector<float> weight;
};

inline ResampleTaps resample_taps(std::size_t n_in, std::size_t n_out) {
  ResampleTaps t;
  t.first.resize(n_out);
  t.count.resize(n_out);
  t.offset.resize(n_out);
  if (n_out < n_in) {
    // Area: output j covers input [j * s, (j + 1) * s), s = n_in / n_out; each input sample i
    // contributes its overlap with that interval, divided by s.
    const double s = double(n_in) / double(n_out);
    for (std::size_t j = 0; j < n_out; ++j) {
      const double lo = double(j) * s, hi = double(j + 1) * s;
      const auto i0 = static_cast<std::size_t>(std::floor(lo));
      const auto i1 = std::min(n_in, static_cast<std::size_t>(std::ceil(hi)));
      t.first[j] = i0;
      t.offset[j] = t.weight.size();
      for (std::size_t i = i0; i < i1; ++i) {
        const double overlap = std::min(hi, double(i + 1)) - std::max(lo, double(i));
        t.weight.push_back(float(std::max(0.0, overlap) / s));
      }
      t.count[j] = i1 - i0;
    }
  } else {
    // Bilinear, half-pixel centres (align_corners = false): src = (j + 0.5) * n_in / n_out - 0.5.
    const double s = double(n_in) / double(n_out);
    for (std::size_t j = 0; j < n_out; ++j) {
      const double src = std::clamp((double(j) + 0.5) * s - 0.5, 0.0, double(n_in - 1));
      const auto i0 = static_cast<std::size_t>(std::floor(src));
      const std::size_t i1 = std::min(i0 + 1, n_in - 1);
      const double f = src - double(i0);
      t.first[j] = i0;
      t.offset[j] = t.weight.size();
      t.weight.push_back(float(1.0 - f));
      t.count[j] = 1;
      if (i1 != i0) {
        t.weight.push_back(float(f));
        t.count[j] = 2;
      }
    }
  }
  return t;
}

inline std::uint8_t to_u8_rounded(float v) noexcept {
  return static_cast<std::uint8_t>(std::clamp(std::floor(v + 0.5f), 0.0f, 255.0f));
}

inline bool has_image_extension(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".pnm"})
    if (ext == e) return true;
  return false;
}

/// Why stb_image must not see a JPEG, or nullptr. stb_image 2.27 (Debian 12's libstb; fixed
/// upstream in 2.28) trusts two things a hostile file controls, both found by
/// tests/fuzz/fuzz_image:
///  * a Huffman table segment (DHT) with more than 256 codes: it writes past its tables;
///  * a scan that uses a Huffman table no DHT defined: it decodes with uninitialised (malloc'ed)
///    tables and indexes memory far out of bounds;
///  * a scan of a component whose quantization table no DQT defined: it multiplies by
///    uninitialised (malloc'ed) values, so the pixels are garbage that changes from run to run
///    and the products overflow int (undefined behaviour).
/// The scan follows the marker segments the way stb_image reads them: lengths between markers,
/// entropy-coded data after a scan header up to the next 0xFF that is not a stuffed 0xFF00 or a
/// restart marker. Files that are not JPEG, or that stb_image rejects anyway, pass.
[[nodiscard]] inline const char* jpeg_hazard(std::span<const std::byte> b) noexcept {
  const std::size_t n = b.size();
  auto at = [&](std::size_t i) { return i < n ? std::to_integer<unsigned>(b[i]) : 0u; };
  // Start of image: 0xFF, any number of 0xFF fill bytes, 0xD8 (stb_image skips fill bytes).
  std::size_t i = 0;
  while (i < n && at(i) == 0xFF) ++i;
  if (i == 0 || at(i) != 0xD8) return nullptr;  // not a JPEG
  ++i;
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool quant_defined[4] = {};
  unsigned frame_id[4] = {}, frame_tq[4] = {}, frame_n = 0;  // the frame's components
  bool progressive = false;
  while (i + 1 < n) {
    if (at(i) != 0xFF) {  // entropy-coded data or junk between segments
      ++i;
      continue;
    }
    const unsigned m = at(i + 1);
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  // no length field
      i += 2;
      continue;
    }
    if (m == 0xD9) return nullptr;  // end of image
    const std::size_t len = (std::size_t(at(i + 2)) << 8) | at(i + 3);
    if (m == 0xC2) progressive = true;  // the only progressive frame stb_image decodes
    if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
      // SOF: P, Y, X, Nf, Nf x (component id, sampling, quantization table)
      frame_n = std::min(at(i + 9), 4u);
      for (unsigned c = 0; c < frame_n; ++c) {
        frame_id[c] = at(i + 10 + 3 * c);
        frame_tq[c] = at(i + 12 + 3 * c);
      }
    }
    if (m == 0xDB) {
      // DQT: (precision << 4 | id, 64 one- or two-byte entries) while the segment lasts.
      long left = long(len) - 2;
      std::size_t p = i + 4;
      while (left > 0) {
        const unsigned pq = at(p) >> 4, tq = at(p) & 15;
        if (pq > 1 || tq > 3) break;  // stb_image refuses the file itself
        quant_defined[tq] = true;
        const std::size_t size = pq ? 129 : 65;
        p += size;
        left -= long(size);
      }
    }
    if (m == 0xC4) {
      // DHT: tables of 1 + 16 + count bytes while the segment's length lasts (as stb reads it).
      long left = long(len) - 2;
      std::size_t p = i + 4;
      while (left > 0) {
        const unsigned tc = at(p) >> 4, th = at(p) & 15;
        unsigned count = 0;
        for (std::size_t k = 1; k <= 16; ++k) count += at(p + k);
        if (count > 256) return "a Huffman table has more than 256 codes";
        if (tc <= 1 && th <= 3) defined[tc][th] = true;
        p += 17 + count;
        left -= long(17 + count);
      }
    }
    if (m == 0xDA) {
      // SOS: Ns, Ns x (component, DC table << 4 | AC table), Ss, Se, Ah << 4 | Al. Which tables
      // the scan decodes with: baseline both; progressive DC first scans the DC table, AC scans
      // the AC table, DC refinement scans none.
      const unsigned ns = at(i + 4);
      const unsigned ss = at(i + 5 + 2 * ns), ah = at(i + 7 + 2 * ns) >> 4;
      for (unsigned c = 0; c < ns && c < 4; ++c) {
        for (unsigned f = 0; f < frame_n; ++f)
          if (frame_id[f] == at(i + 5 + 2 * c) && frame_tq[f] <= 3 && !quant_defined[frame_tq[f]])
            return "a scan uses a quantization table the file does not define";
        const unsigned td = at(i + 6 + 2 * c) >> 4, ta = at(i + 6 + 2 * c) & 15;
        const bool use_dc = !progressive || (ss == 0 && ah == 0);
        const bool use_ac = !progressive || ss != 0;
        if ((use_dc && td <= 3 && !defined[0][td]) || (use_ac && ta <= 3 && !defined[1][ta]))
          return "a scan uses a Huffman table the file does not define";
      }
    }
    i += 2 + len;
  }
  return nullptr;
}

/// Why stb_image (2.27) must not see a binary PNM (P5/P6), or nullptr. Its header reader
/// accumulates each decimal number (width, height, maximum value) in an int without a bound, so a
/// number of ten or more digits overflows (undefined behaviour; fixed upstream in 2.28): found by
/// fuzz_image. Such a header is corrupt anyway (max_image_pixels is far smaller). The scan
/// follows stb_image: whitespace and '#' comments to the end of the line before each number.
[[nodiscard]] inline const char* pnm_hazard(std::span<const std::byte> b) noexcept {
  const std::size_t n = b.size();
  auto at = [&](std::size_t i) { return i < n ? std::to_integer<char>(b[i]) : '\0'; };
  if (n < 2 || at(0) != 'P' || (at(1) != '5' && at(1) != '6')) return nullptr;
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  std::size_t i = 2;
  for (int number = 0; number < 3 && i < n; ++number) {
    for (;;) {  // whitespace and comments
      while (i < n && space(at(i))) ++i;
      if (i >= n || at(i) != '#') break;
      while (i < n && at(i) != '\n' && at(i) != '\r') ++i;
    }
    long long v = 0;
    for (; i < n && at(i) >= '0' && at(i) <= '9'; ++i) {
      v = v * 10 + (at(i) - '0');
      if (v > INT_MAX) return "a header number does not fit in an int";
    }
  }
  return nullptr;
}

/// Why stb_image (2.27) must not see a PNG, or nullptr. A chunk whose declared length runs past
/// the end of the file makes stb_image grow its IDAT buffer to that length first (up to 2 GiB for
/// a 100-byte file: found by fuzz_image) and only then find the data missing; such a file is
/// truncated or corrupt anyway, so it is refused before any allocation. Files that are not PNG
/// pass.
[[nodiscard]] inline const char* png_hazard(std::span<const std::byte> b) noexcept {
  static constexpr unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  const std::size_t n = b.size();
  if (n < 8) return nullptr;
  for (std::size_t k = 0; k < 8; ++k)
    if (std::to_integer<unsigned char>(b[k]) != sig[k]) return nullptr;
  auto u8 = [&](std::size_t i) { return std::uint32_t(std::to_integer<unsigned char>(b[i])); };
  std::size_t i = 8;
  while (i + 8 <= n) {
    const std::uint32_t len = (u8(i) << 24) | (u8(i + 1) << 16) | (u8(i + 2) << 8) | u8(i + 3);
    if (len > 0x7FFFFFFFu) return "a chunk length is over 2^31 - 1";
    if (std::size_t(len) + 12 > n - i) return "a chunk is longer than the rest of the file";
    const bool iend = u8(i + 4) == 'I' && u8(i + 5) == 'E' && u8(i + 6) == 'N' && u8(i + 7) == 'D';
    if (iend) return nullptr;
    i += std::size_t(len) + 12;  // length, type, data, CRC
  }
  return nullptr;  // no IEND: stb_image decides (it reports missing data itself)
}

/// The first reason stb_image (2.27) must not see these bytes, with the format it concerns.
struct StbHazard {
  const char* format = nullptr;  ///< "JPEG", "PNG" or "PNM"
  const char* reason = nullptr;  ///< nullptr: no known hazard
};
[[nodiscard]] inline StbHazard stb_hazard(std::span<const std::byte> b) noexcept {
  if (const char* r = jpeg_hazard(b)) return {"JPEG", r};
  if (const char* r = png_hazard(b)) return {"PNG", r};
  if (const char* r = pnm_hazard(b)) return {"PNM", r};
  return {};
}

/// HWC image into an NCHW slot.
inline void hwc_to_chw(const Image8& img, std::uint8_t* dst) {
  const std::size_t hw = img.h * img.w;
  for (std::size_t p = 0; p < hw; ++p)
    for (std::size_t ch = 0; ch < img.c; ++ch) dst[ch * hw + p] = img.px[p * img.c + ch];
}

}  // namespace detail

inline Image8 decode_image(std::span<const std::byte> bytes, const std::string& name,
                           std::size_t channels) {
  detail::require(channels == 1 || channels == 3 || channels == 4, "channels",
                  "must be 1, 3 or 4, got ", channels);
  if (bytes.size() > max_image_file_bytes)
    throw IoError(name, detail::cat("image file of ", bytes.size(),
                                    " bytes is larger than the limit of ", max_image_file_bytes));
  if (bytes.empty()) throw IoError(name, "cannot decode image: the file is empty");
  if (const detail::StbHazard hz = detail::stb_hazard(bytes); hz.reason)
    throw IoError(name, std::string("cannot decode image: corrupt ") + hz.format + " (" +
                            hz.reason + ")");
  const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(buf, len, &w, &h, &comp))
    throw IoError(name, std::string("cannot decode image: ") + stbi_failure_reason());
  if (w <= 0 || h <= 0 || std::size_t(w) * std::size_t(h) > max_image_pixels)
    throw IoError(name,
                  detail::cat("image of ", w, " x ", h, " pixels is larger than the limit of ",
                              max_image_pixels, " pixels"));
  int w2 = 0, h2 = 0;
  stbi_uc* px = stbi_load_from_memory(buf, len, &w2, &h2, &comp, static_cast<int>(channels));
  if (px == nullptr)
    throw IoError(name, std::string("cannot decode image: ") + stbi_failure_reason());
  struct Free {
    stbi_uc* p;
    ~Free() { stbi_image_free(p); }
  } free_px{px};
  if (w2 != w || h2 != h)  // the header and the decoder disagree: do not trust either
    throw IoError(name, "cannot decode image: inconsistent dimensions");
  Image8 img{std::size_t(h), std::size_t(w), channels, {}};
  img.px.assign(px, px + img.h * img.w * channels);
  return img;
}

inline Image8 read_image(const std::filesystem::path& path, std::size_t channels) {
  detail::require(channels == 1 || channels == 3 || channels == 4, "channels",
                  "must be 1, 3 or 4, got ", channels);
  return decode_image(read_file(path, max_image_file_bytes), path.string(), channels);
}

inline Image8 resize_area_or_bilinear(const Image8& img, std::size_t h, std::size_t w) {
  detail::require_image(img, "img");
  std::size_t n = 0;
  detail::require(h > 0 && w > 0 && detail::checked_mul(h, w, n) && n <= max_image_pixels, "h, w",
                  "output size ", h, " x ", w, " must be positive and at most ", max_image_pixels,
                  " pixels");
  if (h == img.h && w == img.w) return img;
  const std::size_t c = img.c;
  // Horizontal pass into floats (img.h x w x c), then vertical pass (h x w x c).
  const detail::ResampleTaps tx = detail::resample_taps(img.w, w);
  std::vector<float> mid(img.h * w * c);
  for (std::size_t y = 0; y < img.h; ++y) {
    const std::uint8_t* row = img.px.data() + y * img.w * c;
    float* out = mid.data() + y * w * c;
    for (std::size_t x = 0; x < w; ++x)
      for (std::size_t ch = 0; ch < c; ++ch) {
        float acc = 0.0f;
        for (std::size_t k = 0; k < tx.count[x]; ++k)
          acc += tx.weight[tx.offset[x] + k] * float(row[(tx.first[x] + k) * c + ch]);
        out[x * c + ch] = acc;
      }
  }
  const detail::ResampleTaps ty = detail::resample_taps(img.h, h);
  Image8 res{h, w, c, std::vector<std::uint8_t>(h * w * c)};
  const std::size_t stride = w * c;
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t i = 0; i < stride; ++i) {
      float acc = 0.0f;
      for (std::size_t k = 0; k < ty.count[y]; ++k)
        acc += ty.weight[ty.offset[y] + k] * mid[(ty.first[y] + k) * stride + i];
      res.px[y * stride + i] = detail::to_u8_rounded(acc);
    }
  return res;
}

inline Image8 center_crop_square(const Image8& img) {
  detail::require_image(img, "img");
  const std::size_t side = std::min(img.h, img.w);
  const std::size_t y0 = (img.h - side) / 2, x0 = (img.w - side) / 2;
  Image8 out{side, side, img.c, std::vector<std::uint8_t>(side * side * img.c)};
  for (std::size_t y = 0; y < side; ++y) {
    const auto* src = img.px.data() + ((y0 + y) * img.w + x0) * img.c;
    std::copy(src, src + side * img.c, out.px.data() + y * side * img.c);
  }
  return out;
}

inline Image8 hflip(const Image8& img) {
  detail::require_image(img, "img");
  Image8 out{img.h, img.w, img.c, std::vector<std::uint8_t>(img.px.size())};
  for (std::size_t y = 0; y < img.h; ++y)
    for (std::size_t x = 0; x < img.w; ++x) {
      const auto* src = img.px.data() + (y * img.w + x) * img.c;
      std::copy(src, src + img.c, out.px.data() + (y * img.w + (img.w - 1 - x)) * img.c);
    }
  return out;
}

inline ImageDataset load_image_folder(const std::filesystem::path& dir, std::size_t size,
                                      std::size_t channels, bool center_crop,
                                      std::size_t max_images) {
  detail::require(size >= 1 && size <= 8192, "size", "must be in [1, 8192], got ", size);
  detail::require(channels == 1 || channels == 3 || channels == 4, "channels",
                  "must be 1, 3 or 4, got ", channels);
  const std::string dname = dir.string();
  {
    std::error_code ec;
    const auto st = std::filesystem::status(dir, ec);
    if (!std::filesystem::exists(st)) throw IoError(dname, "folder does not exist");
    if (!std::filesystem::is_directory(st)) throw IoError(dname, "is not a folder");
  }
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  std::size_t subdirs = 0, others = 0;  // for the message when no image file is found
  std::string first_subdir, first_other;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::filesystem::path& p = it->path();
    const std::string fname = p.filename().string();
    std::error_code ec2;
    if (it->is_directory(ec2)) {
      if (subdirs++ == 0) first_subdir = fname;
      continue;
    }
    if (fname.empty() || fname[0] == '.' || !detail::has_image_extension(p) ||
        !it->is_regular_file(ec2)) {
      if (others++ == 0) first_other = fname;
      continue;
    }
    files.push_back(p);
  }
  if (ec) throw IoError(dname, "cannot list the folder: " + ec.message());
  if (files.empty()) {
    std::string msg = "no image files (.png .jpg .jpeg .bmp .tga .gif .ppm .pgm .pnm) in the folder";
    if (subdirs > 0)
      msg += detail::cat("; it holds ", subdirs, " subfolder", subdirs > 1 ? "s" : "", " (e.g. '",
                         first_subdir,
                         "'): subfolders are not searched, give the folder that holds the images");
    if (others > 0)
      msg += detail::cat("; it holds ", others, " other file", others > 1 ? "s" : "", " (e.g. '",
                         first_other, "')");
    if (subdirs == 0 && others == 0) msg += " (it is empty)";
    throw IoError(dname, msg);
  }
  std::sort(files.begin(), files.end());
  if (max_images > 0 && files.size() > max_images) files.resize(max_images);

  ImageDataset ds;
  ds.n = files.size();
  ds.c = channels;
  ds.h = ds.w = size;
  const std::size_t per_image = channels * size * size;
  std::size_t total = 0;
  detail::require(detail::checked_mul(ds.n, per_image, total), "max_images",
                  "the data set size overflows");
  ds.pixels.resize(total);
  for (std::size_t i = 0; i < ds.n; ++i) {
    Image8 img = read_image(files[i], channels);
    if (center_crop) img = center_crop_square(img);
    img = resize_area_or_bilinear(img, size, size);
    detail::hwc_to_chw(img, ds.pixels.data() + i * per_image);
  }
  return ds;
}

}  // namespace ddpm::io
