// SPDX-License-Identifier: MIT
// ddpm/io/gif.hpp — animated GIF writer (giflib), e.g. the denoising trajectory as grids.
//
// Frames are encoded in memory and the file is written atomically by close(). Gray frames
// (c = 1, or RGB frames whose channels are all equal) use a global 256-level gray palette, so
// they are exact. RGB frames with at most 256 distinct colours get an exact local palette; other
// RGB frames are quantised to a local 256-colour palette by median cut on a 5-5-5 bit histogram
// (count-weighted box means, nearest-colour mapping, no dithering).
#pragma once

#include <gif_lib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// Writes an animated GIF frame by frame. Move-only.
///
/// close() writes the file (atomically) and reports errors. If the writer is destroyed without
/// close(), it closes itself and swallows errors — unless it is destroyed by stack unwinding
/// (an exception is in flight), in which case nothing is written.
class GifWriter {
 public:
  /// @pre 1 <= width, height <= 65535; 0 <= delay_cs <= 65535 (hundredths of a second per frame).
  ///      `loop`: repeat forever (NETSCAPE2.0 extension); otherwise play once.
  GifWriter(std::filesystem::path path, std::size_t width, std::size_t height, int delay_cs,
            bool loop = true);
  GifWriter(GifWriter&&) noexcept = default;
  GifWriter& operator=(GifWriter&&) noexcept = delete;
  GifWriter(const GifWriter&) = delete;
  GifWriter& operator=(const GifWriter&) = delete;
  ~GifWriter();

  /// Appends a frame shown for `delay_cs` hundredths of a second (-1: the writer's default).
  /// @pre frame is width x height with c = 1 or 3, px.size() == h * w * c; not closed.
  void add_frame(const Image8& frame, int delay_cs = -1);
  /// Finishes the GIF and writes it. @pre at least one frame. @throws IoError(path, ...).
  void close();
  /// Frames added so far.
  [[nodiscard]] std::size_t frames() const noexcept { return state_ ? state_->frames : 0; }

 private:
  struct State {
    std::filesystem::path path;
    std::size_t width = 0, height = 0;
    int delay_cs = 0;
    std::size_t frames = 0;
    int uncaught_at_start = 0;
    GifFileType* gif = nullptr;
    std::vector<std::byte> bytes;
    ~State() {
      if (gif != nullptr) {
        int err = 0;
        EGifCloseFile(gif, &err);
      }
    }
  };
  void fail(const std::string& what);
  static int output(GifFileType* gif, const GifByteType* data, int len);
  std::unique_ptr<State> state_;
};

/// Writes `frames` (all the same size, c = 1 or 3) as an animated GIF, atomically.
/// @pre frames is non-empty. @throws IoError(path, ...) if the file cannot be written.
inline void write_gif(const std::filesystem::path& path, std::span<const Image8> frames,
                      int delay_cs, bool loop = true);

// ---------------------------------------------------------------- implementation

namespace detail {

/// A palette of up to 256 colours and the per-pixel indices into it.
struct PalettedFrame {
  std::vector<GifColorType> palette;
  std::vector<GifPixelType> indices;
};

inline std::uint32_t pack_rgb(const std::uint8_t* p) noexcept {
  return (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | std::uint32_t(p[2]);
}

/// Exact palette if the RGB frame has at most 256 distinct colours; empty palette otherwise.
inline PalettedFrame exact_palette(const Image8& f) {
  const std::size_t n = f.h * f.w;
  std::vector<std::uint32_t> colors(n);
  for (std::size_t i = 0; i < n; ++i) colors[i] = pack_rgb(&f.px[3 * i]);
  std::vector<std::uint32_t> uniq = colors;
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  PalettedFrame out;
  if (uniq.size() > 256) return out;
  for (const std::uint32_t c : uniq)
    out.palette.push_back({GifByteType(c >> 16), GifByteType(c >> 8), GifByteType(c)});
  out.indices.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    out.indices[i] =
        GifPixelType(std::lower_bound(uniq.begin(), uniq.end(), colors[i]) - uniq.begin());
  return out;
}

/// Median cut on a 5-5-5 histogram: repeatedly split the box with the widest channel range at
/// its count-weighted median until 256 boxes (or no box can be split).
inline PalettedFrame median_cut(const Image8& f) {
  constexpr std::size_t bins = 1u << 15;
  const std::size_t n = f.h * f.w;
  auto bin_of = [](const std::uint8_t* p) {
    return (std::size_t(p[0] >> 3) << 10) | (std::size_t(p[1] >> 3) << 5) | std::size_t(p[2] >> 3);
  };
  std::vector<std::uint64_t> count(bins, 0);
  std::vector<std::array<std::uint64_t, 3>> sum(bins, {0, 0, 0});
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* p = &f.px[3 * i];
    const std::size_t b = bin_of(p);
    ++count[b];
    for (int ch = 0; ch < 3; ++ch) sum[b][ch] += p[ch];
  }
  std::vector<std::uint32_t> used;
  for (std::size_t b = 0; b < bins; ++b)
    if (count[b]) used.push_back(std::uint32_t(b));
  auto chan = [](std::uint32_t b, int ch) { return int((b >> (10 - 5 * ch)) & 31); };

  struct Box {
    std::size_t begin, end;  // range in `used`
  };
  std::vector<Box> boxes{{0, used.size()}};
  auto widest = [&](const Box& bx, int& axis) {
    int best = -1;
    for (int ch = 0; ch < 3; ++ch) {
      int lo = 31, hi = 0;
      for (std::size_t i = bx.begin; i < bx.end; ++i) {
        lo = std::min(lo, chan(used[i], ch));
        hi = std::max(hi, chan(used[i], ch));
      }
      if (hi - lo > best) {
        best = hi - lo;
        axis = ch;
      }
    }
    return best;
  };
  while (boxes.size() < 256) {
    std::size_t pick = boxes.size();
    int axis = 0, best = 0;
    for (std::size_t k = 0; k < boxes.size(); ++k) {
      if (boxes[k].end - boxes[k].begin < 2) continue;
      int ax = 0;
      const int r = widest(boxes[k], ax);
      if (r > best) {
        best = r;
        pick = k;
        axis = ax;
      }
    }
    if (pick == boxes.size()) break;
    Box& bx = boxes[pick];
    std::sort(used.begin() + std::ptrdiff_t(bx.begin), used.begin() + std::ptrdiff_t(bx.end),
              [&](std::uint32_t a, std::uint32_t b) { return chan(a, axis) < chan(b, axis); });
    std::uint64_t total = 0, acc = 0;
    for (std::size_t i = bx.begin; i < bx.end; ++i) total += count[used[i]];
    std::size_t split = bx.begin + 1;
    for (std::size_t i = bx.begin; i + 1 < bx.end; ++i) {
      acc += count[used[i]];
      split = i + 1;
      if (2 * acc >= total) break;
    }
    const Box right{split, bx.end};
    bx.end = split;
    boxes.push_back(right);
  }
  PalettedFrame out;
  std::vector<GifPixelType> bin_index(bins, 0);
  for (const Box& bx : boxes) {
    std::array<std::uint64_t, 3> s{0, 0, 0};
    std::uint64_t c = 0;
    for (std::size_t i = bx.begin; i < bx.end; ++i) {
      c += count[used[i]];
      for (int ch = 0; ch < 3; ++ch) s[ch] += sum[used[i]][ch];
    }
    if (c == 0) continue;
    out.palette.push_back({GifByteType((s[0] + c / 2) / c), GifByteType((s[1] + c / 2) / c),
                           GifByteType((s[2] + c / 2) / c)});
  }
  // Nearest palette colour for each used bin (by the bin's mean colour).
  for (const std::uint32_t b : used) {
    long best = -1;
    std::size_t arg = 0;
    const auto c = count[b];
    const long r = long((sum[b][0] + c / 2) / c), g = long((sum[b][1] + c / 2) / c),
               bl = long((sum[b][2] + c / 2) / c);
    for (std::size_t k = 0; k < out.palette.size(); ++k) {
      const long dr = r - out.palette[k].Red, dg = g - out.palette[k].Green,
                 db = bl - out.palette[k].Blue;
      const long d = 2 * dr * dr + 4 * dg * dg + db * db;  // rough perceptual weights
      if (best < 0 || d < best) {
        best = d;
        arg = k;
      }
    }
    bin_index[b] = GifPixelType(arg);
  }
  out.indices.resize(n);
  for (std::size_t i = 0; i < n; ++i) out.indices[i] = bin_index[bin_of(&f.px[3 * i])];
  return out;
}

inline bool is_gray_rgb(const Image8& f) noexcept {
  for (std::size_t i = 0; i < f.h * f.w; ++i)
    if (f.px[3 * i] != f.px[3 * i + 1] || f.px[3 * i] != f.px[3 * i + 2]) return false;
  return true;
}

/// GifMakeMapObject needs a power-of-two size: pad with black.
inline ColorMapObject* make_color_map(std::vector<GifColorType> colors) {
  std::size_t size = 2;
  while (size < colors.size()) size *= 2;
  colors.resize(size, GifColorType{0, 0, 0});
  return GifMakeMapObject(int(size), colors.data());
}

}  // namespace detail

inline int GifWriter::output(GifFileType* gif, const GifByteType* data, int len) {
  auto* bytes = static_cast<std::vector<std::byte>*>(gif->UserData);
  const auto* p = reinterpret_cast<const std::byte*>(data);
  bytes->insert(bytes->end(), p, p + len);
  return len;
}

inline void GifWriter::fail(const std::string& what) {
  const int code = state_->gif != nullptr ? state_->gif->Error : 0;
  const std::string path = state_->path.string();
  state_.reset();
  throw IoError(path, "GIF encoding failed (" + what + "): " + GifErrorString(code));
}

inline GifWriter::GifWriter(std::filesystem::path path, std::size_t width, std::size_t height,
                            int delay_cs, bool loop) {
  detail::require(width >= 1 && width <= 65535 && height >= 1 && height <= 65535, "width, height",
                  "must be in [1, 65535], got ", width, " x ", height);
  detail::require(delay_cs >= 0 && delay_cs <= 65535, "delay_cs", "must be in [0, 65535], got ",
                  delay_cs);
  state_ = std::make_unique<State>();
  state_->path = std::move(path);
  state_->width = width;
  state_->height = height;
  state_->delay_cs = delay_cs;
  state_->uncaught_at_start = std::uncaught_exceptions();
  int err = 0;
  state_->gif = EGifOpen(&state_->bytes, &GifWriter::output, &err);
  if (state_->gif == nullptr) {
    const std::string p = state_->path.string();
    state_.reset();
    throw IoError(p, std::string("cannot start GIF encoder: ") + GifErrorString(err));
  }
  EGifSetGifVersion(state_->gif, true);  // GIF89a: needed for delays and looping
  std::vector<GifColorType> gray(256);
  for (int i = 0; i < 256; ++i) gray[i] = {GifByteType(i), GifByteType(i), GifByteType(i)};
  ColorMapObject* map = detail::make_color_map(std::move(gray));
  const int rc = EGifPutScreenDesc(state_->gif, int(width), int(height), 8, 0, map);
  GifFreeMapObject(map);  // giflib copies it
  if (rc != GIF_OK) fail("screen descriptor");
  if (loop) {
    static constexpr unsigned char app[] = {'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0'};
    static constexpr unsigned char params[] = {1, 0, 0};  // sub-block 1: loop count 0 = forever
    if (EGifPutExtensionLeader(state_->gif, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
        EGifPutExtensionBlock(state_->gif, sizeof app, app) != GIF_OK ||
        EGifPutExtensionBlock(state_->gif, sizeof params, params) != GIF_OK ||
        EGifPutExtensionTrailer(state_->gif) != GIF_OK)
      fail("loop extension");
  }
}

inline GifWriter::~GifWriter() {
  if (!state_) return;
  if (std::uncaught_exceptions() > state_->uncaught_at_start || state_->frames == 0) {
    state_.reset();  // unwinding (or nothing to write): leave the disk alone
    return;
  }
  try {
    close();
  } catch (...) {  // a destructor must not throw; call close() to see errors
  }
}

inline void GifWriter::add_frame(const Image8& frame, int delay_cs) {
  detail::require(state_ != nullptr, "GifWriter", "add_frame after close()");
  detail::require(frame.h == state_->height && frame.w == state_->width, "frame", "is ", frame.h,
                  " x ", frame.w, ", the GIF is ", state_->height, " x ", state_->width);
  detail::require(frame.c == 1 || frame.c == 3, "frame.c", "must be 1 or 3, got ", frame.c);
  detail::require(frame.px.size() == frame.h * frame.w * frame.c, "frame.px", "has ",
                  frame.px.size(), " bytes, expected h * w * c = ", frame.h * frame.w * frame.c);
  detail::require(delay_cs >= -1 && delay_cs <= 65535, "delay_cs", "must be in [-1, 65535], got ",
                  delay_cs);
  const std::size_t n = frame.h * frame.w;
  detail::PalettedFrame pf;
  if (frame.c == 1) {
    pf.indices.assign(frame.px.begin(), frame.px.end());
  } else if (detail::is_gray_rgb(frame)) {
    pf.indices.resize(n);
    for (std::size_t i = 0; i < n; ++i) pf.indices[i] = frame.px[3 * i];
  } else {
    pf = detail::exact_palette(frame);
    if (pf.palette.empty()) pf = detail::median_cut(frame);
  }

  GraphicsControlBlock gcb{};
  gcb.DisposalMode = DISPOSE_DO_NOT;
  gcb.UserInputFlag = false;
  gcb.DelayTime = delay_cs < 0 ? state_->delay_cs : delay_cs;
  gcb.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType ext[4];
  const std::size_t ext_len = EGifGCBToExtension(&gcb, ext);
  if (EGifPutExtension(state_->gif, GRAPHICS_EXT_FUNC_CODE, int(ext_len), ext) != GIF_OK)
    fail("graphics control");

  ColorMapObject* local = pf.palette.empty() ? nullptr : detail::make_color_map(pf.palette);
  if (local == nullptr && state_->gif->Image.ColorMap != nullptr) {
    // giflib 5.2 drops (leaks) the previous frame's local map when given none: free it here.
    GifFreeMapObject(state_->gif->Image.ColorMap);
    state_->gif->Image.ColorMap = nullptr;
  }
  const int rc = EGifPutImageDesc(state_->gif, 0, 0, int(frame.w), int(frame.h), false, local);
  if (local != nullptr) GifFreeMapObject(local);  // giflib copies it
  if (rc != GIF_OK) fail("image descriptor");
  for (std::size_t y = 0; y < frame.h; ++y)
    if (EGifPutLine(state_->gif, pf.indices.data() + y * frame.w, int(frame.w)) != GIF_OK)
      fail("pixels");
  ++state_->frames;
}

inline void GifWriter::close() {
  detail::require(state_ != nullptr, "GifWriter", "close() called twice");
  detail::require(state_->frames > 0, "GifWriter", "close() with no frames added");
  int err = 0;
  const int rc = EGifCloseFile(state_->gif, &err);
  state_->gif = nullptr;  // freed by EGifCloseFile, even on error
  std::unique_ptr<State> st = std::move(state_);
  if (rc != GIF_OK)
    throw IoError(st->path.string(), std::string("GIF encoding failed: ") + GifErrorString(err));
  write_file_atomic(st->path, st->bytes);
}

inline void write_gif(const std::filesystem::path& path, std::span<const Image8> frames,
                      int delay_cs, bool loop) {
  detail::require(!frames.empty(), "frames", "must not be empty");
  GifWriter gif(path, frames[0].w, frames[0].h, delay_cs, loop);
  for (const Image8& f : frames) gif.add_frame(f);
  gif.close();
}

}  // namespace ddpm::io
