// SPDX-License-Identifier: MIT
// ddpm/io/plot.hpp — simple line plots rendered into an Image8 and saved as PNG (no plot library).
//
// Used for the loss curve, schedule plots (beta, alpha_bar, SNR; log y) and metrics over training.
// The renderer draws a framed plot area with "nice" ticks (1, 2, 5 x 10^k; decades on a log
// axis), light grid lines, tick labels, title, axis labels (y rotated), anti-aliased series
// lines in the tab10 colours and a legend in the plot corner that covers the fewest points.
// Non-finite points, and non-positive y on a log axis, are skipped: the line breaks there.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/font.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// One line of a plot. If x is empty the points are at x = 0, 1, 2, ...
/// @pre x is empty or x.size() == y.size().
struct Series {
  std::string label{};  // legend text; series with an empty label are left out of the legend
  std::vector<double> x{}, y{};
};

struct PlotOptions {
  std::string title{}, xlabel{}, ylabel{};
  bool log_y = false;
  int width = 800, height = 500;  // pixels, each in [200, 8192] x [150, 8192]
};

/// Renders a line plot into an RGB image of opts.width x opts.height.
/// @pre as Series and PlotOptions (std::invalid_argument otherwise).
[[nodiscard]] inline Image8 render_line_plot(std::span<const Series> series,
                                             const PlotOptions& opts = {});

/// Renders a line plot and writes it as PNG (atomically).
/// @throws IoError(path, ...) if the file cannot be written.
inline void write_line_plot(const std::filesystem::path& path, std::span<const Series> series,
                            const PlotOptions& opts = {});

/// Exponential moving average for noisy curves, with alpha the weight of each new value (the
/// usual EMA definition, as pandas' ewm(alpha)): s = (1 - alpha) * s + alpha * v, debiased by
/// dividing by 1 - (1 - alpha)^k (k finite values seen), so out[0] == values[0] and a constant
/// stays constant. Non-finite inputs give NaN at their index and do not update the average.
/// @pre 0 < alpha <= 1 (1: no smoothing; 0.01: heavy).
[[nodiscard]] inline std::vector<double> smooth_ema(std::span<const double> values, double alpha);

// ---------------------------------------------------------------- implementation

namespace detail {

inline constexpr std::array<Rgb, 10> tab10{{{31, 119, 180},
                                            {255, 127, 14},
                                            {44, 160, 44},
                                            {214, 39, 40},
                                            {148, 103, 189},
                                            {140, 86, 75},
                                            {227, 119, 194},
                                            {127, 127, 127},
                                            {188, 189, 34},
                                            {23, 190, 207}}};

/// Blends `color` over pixel (x, y) with coverage a in [0, 1]; ignores pixels outside `clip`.
struct Canvas {
  Image8& img;
  long x0, y0, x1, y1;  // clip rectangle, inclusive-exclusive

  void blend(long x, long y, Rgb color, double a) const noexcept {
    if (x < x0 || y < y0 || x >= x1 || y >= y1 || !(a > 0.0)) return;
    a = std::min(a, 1.0);
    std::uint8_t* p = img.px.data() + (std::size_t(y) * img.w + std::size_t(x)) * 3;
    const std::uint8_t c[3] = {color.r, color.g, color.b};
    for (int k = 0; k < 3; ++k) p[k] = std::uint8_t(std::lround(p[k] + (c[k] - p[k]) * a));
  }
  void fill(long xa, long ya, long xb, long yb, Rgb color) const noexcept {
    for (long y = std::max(ya, y0); y < std::min(yb, y1); ++y)
      for (long x = std::max(xa, x0); x < std::min(xb, x1); ++x) blend(x, y, color, 1.0);
  }
};

/// Anti-aliased segment of width `lw` pixels: coverage from the distance to the segment.
inline void draw_segment(const Canvas& cv, double ax, double ay, double bx, double by, double lw,
                         Rgb color) noexcept {
  const double r = lw / 2 + 0.5;
  const long xa = long(std::floor(std::min(ax, bx) - r)),
             xb = long(std::ceil(std::max(ax, bx) + r));
  const long ya = long(std::floor(std::min(ay, by) - r)),
             yb = long(std::ceil(std::max(ay, by) + r));
  const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  for (long y = std::max(ya, cv.y0); y <= std::min(yb, cv.y1 - 1); ++y)
    for (long x = std::max(xa, cv.x0); x <= std::min(xb, cv.x1 - 1); ++x) {
      const double px = double(x) + 0.5, py = double(y) + 0.5;
      double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0.0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = ax + t * dx - px, ey = ay + t * dy - py;
      const double d = std::sqrt(ex * ex + ey * ey);
      cv.blend(x, y, color, lw / 2 + 0.5 - d);
    }
}

/// A step of 1, 2 or 5 x 10^k close to `raw`.
inline double nice_step(double raw) noexcept {
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

/// Tick label for value v on an axis whose ticks are `step` apart.
inline std::string tick_label(double v, double step) {
  char buf[64];
  if (std::fabs(v) < step * 1e-6) return "0";
  const double mag = std::fabs(v);
  const int vexp = int(std::floor(std::log10(mag)));
  const int sexp = int(std::floor(std::log10(step) + 1e-9));
  if (vexp >= 5 || vexp <= -4) {
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(vexp - sexp, 0, 6), v);
    // "1.5e-05" -> "1.5e-5"
    std::string s = buf;
    const auto e = s.find('e');
    if (e != std::string::npos) {
      std::string mant = s.substr(0, e), ex = s.substr(e + 1);
      const bool neg = ex[0] == '-';
      ex = ex.substr(ex[0] == '-' || ex[0] == '+' ? 1 : 0);
      ex.erase(0, std::min(ex.find_first_not_of('0'), ex.size() - 1));
      s = mant + "e" + (neg ? "-" : "") + ex;
    }
    return s;
  }
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(-sexp, 0, 9), v);
  return buf;
}

struct Tick {
  double value;  // in axis space (log10 for a log axis)
  std::string label;
};

/// Linear ticks on [lo, hi], about `target` of them.
inline std::vector<Tick> linear_ticks(double lo, double hi, int target) {
  std::vector<Tick> ticks;
  const double step = nice_step((hi - lo) / std::max(1, target));
  if (!std::isfinite(step) || !(step > 0)) return ticks;
  const double first = std::ceil(lo / step - 1e-9);
  for (int i = 0; i < 100; ++i) {
    const double v = (first + i) * step;
    if (v > hi + step * 1e-9) break;
    ticks.push_back({v, tick_label(v, step)});
  }
  return ticks;
}

/// Ticks for a log axis whose range [lo, hi] is in log10 units.
inline std::vector<Tick> log_ticks(double lo, double hi, int target) {
  std::vector<Tick> ticks;
  const double decades = hi - lo;
  if (!std::isfinite(decades) || !(decades > 0)) return ticks;
  auto label = [](double v) {
    char buf[32];
    const int k = int(std::lround(std::floor(v + 1e-9)));
    const double m = std::pow(10.0, v - k);
    if (k >= -3 && k <= 4)
      std::snprintf(buf, sizeof buf, "%g", std::pow(10.0, v));
    else if (std::fabs(m - 1.0) < 1e-6)
      std::snprintf(buf, sizeof buf, "1e%d", k);
    else
      std::snprintf(buf, sizeof buf, "%.0fe%d", m, k);
    return std::string(buf);
  };
  if (decades >= 2.0) {
    const int every = std::max(1, int(std::ceil(decades / std::max(1, target))));
    for (double k = std::ceil(lo - 1e-9); k <= hi + 1e-9 && ticks.size() < 100; k += every)
      ticks.push_back({k, label(k)});
  } else {
    for (double k = std::floor(lo) - 1; k <= hi && ticks.size() < 100; k += 1)
      for (const double m : {1.0, 2.0, 5.0}) {
        const double v = k + std::log10(m);
        if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push_back({v, label(v)});
      }
  }
  return ticks;
}

/// Finite data range of the points to plot (y in log10 if log_y).
struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) noexcept {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  [[nodiscard]] bool empty() const noexcept { return !(lo <= hi); }
};

/// The point's plotted coordinates, or false if it is skipped.
inline bool plot_point(const Series& s, std::size_t i, bool log_y, double& x, double& y) noexcept {
  x = s.x.empty() ? double(i) : s.x[i];
  y = s.y[i];
  if (log_y) {
    if (!(y > 0)) return false;
    y = std::log10(y);
  }
  return std::isfinite(x) && std::isfinite(y);
}

/// Pads a range: empty -> default; zero width -> widened; otherwise `frac` of the span each side.
/// Computed in halves so that spans of values near +-DBL_MAX do not overflow.
inline void pad_range(Range& r, double frac, double empty_lo, double empty_hi) noexcept {
  if (r.empty()) {
    r.lo = empty_lo;
    r.hi = empty_hi;
    return;
  }
  if (r.hi / 2 - r.lo / 2 <= std::fabs(r.lo) * 1e-12 || r.hi == r.lo) {
    const double d = std::max(std::fabs(r.lo) * 0.1, 0.5);
    r.lo -= d;
    r.hi += d;
    return;
  }
  const double half_span = r.hi / 2 - r.lo / 2;
  r.lo -= 2 * frac * half_span;
  r.hi += 2 * frac * half_span;
  if (!std::isfinite(r.lo)) r.lo = -1.7e308;
  if (!std::isfinite(r.hi)) r.hi = 1.7e308;
}

/// Maps v in [lo, hi] to [a, b] without overflowing; clamps far-out values to keep casts defined.
inline double map_axis(double v, double lo, double hi, double a, double b) noexcept {
  const double t = (v / 2 - lo / 2) / (hi / 2 - lo / 2);
  return std::clamp(a + t * (b - a), -1e6, 1e6);
}

}  // namespace detail

inline Image8 render_line_plot(std::span<const Series> series, const PlotOptions& opts) {
  detail::require(
      opts.width >= 200 && opts.width <= 8192 && opts.height >= 150 && opts.height <= 8192,
      "PlotOptions::width, height", "must be in [200, 8192] x [150, 8192], got ", opts.width, " x ",
      opts.height);
  for (const Series& s : series)
    detail::require(s.x.empty() || s.x.size() == s.y.size(), "Series::x", "has ", s.x.size(),
                    " values but y has ", s.y.size(), " (series '", s.label, "')");

  // ---- data ranges
  detail::Range rx, ry;
  for (const Series& s : series)
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      double x = 0, y = 0;
      if (detail::plot_point(s, i, opts.log_y, x, y)) {
        rx.add(x);
        ry.add(y);
      }
    }
  // x: no padding (curves start and end at the frame) unless empty or a single value;
  // y: 5% each side. An empty log axis shows 1..10.
  if (rx.empty() || !(rx.hi > rx.lo)) detail::pad_range(rx, 0.0, 0.0, 1.0);
  detail::pad_range(ry, 0.05, 0.0, 1.0);

  const Rgb black{0, 0, 0}, axis_gray{80, 80, 80}, grid_gray{225, 225, 225}, white{255, 255, 255};
  const int W = opts.width, H = opts.height;
  Image8 img{std::size_t(H), std::size_t(W), 3,
             std::vector<std::uint8_t>(std::size_t(W) * H * 3, 255)};
  const detail::Canvas full{img, 0, 0, W, H};

  // ---- layout: y ticks need their label width, so compute them first
  const int title_scale = 2;
  const int top = opts.title.empty() ? 16 : 16 + font_height * title_scale + 8;
  const int bottom = 16 + font_height + 6 + (opts.xlabel.empty() ? 0 : font_height + 8);
  const int plot_h_guess = std::max(20, H - top - bottom);
  const auto yticks = opts.log_y
                          ? detail::log_ticks(ry.lo, ry.hi, std::max(2, plot_h_guess / 50))
                          : detail::linear_ticks(ry.lo, ry.hi, std::max(2, plot_h_guess / 50));
  int ylab_w = 0;
  for (const auto& t : yticks) ylab_w = std::max(ylab_w, text_width(t.label));
  const int left = 12 + (opts.ylabel.empty() ? 0 : font_height + 8) + ylab_w + 8;
  const int right = 24;
  const long px0 = left, py0 = top, px1 = W - right, py1 = H - bottom;  // plot area
  const auto xticks = detail::linear_ticks(rx.lo, rx.hi, std::max(2, int(px1 - px0) / 90));

  auto X = [&](double v) { return detail::map_axis(v, rx.lo, rx.hi, double(px0), double(px1)); };
  auto Y = [&](double v) { return detail::map_axis(v, ry.lo, ry.hi, double(py1), double(py0)); };

  // ---- grid, ticks and labels
  for (const auto& t : yticks) {
    const long y = long(std::lround(Y(t.value)));
    if (y < py0 || y > py1) continue;
    full.fill(px0, y, px1, y + 1, grid_gray);
    full.fill(px0 - 5, y, px0, y + 1, axis_gray);
    draw_text(img, px0 - 8 - text_width(t.label), y - 4, t.label, black);
  }
  for (const auto& t : xticks) {
    const long x = long(std::lround(X(t.value)));
    if (x < px0 || x > px1) continue;
    full.fill(x, py0, x + 1, py1, grid_gray);
    full.fill(x, py1, x + 1, py1 + 5, axis_gray);
    draw_text(img, x - text_width(t.label) / 2, py1 + 8, t.label, black);
  }
  // frame
  full.fill(px0, py0, px1 + 1, py0 + 1, axis_gray);
  full.fill(px0, py1, px1 + 1, py1 + 1, axis_gray);
  full.fill(px0, py0, px0 + 1, py1 + 1, axis_gray);
  full.fill(px1, py0, px1 + 1, py1 + 1, axis_gray);

  if (!opts.title.empty())
    draw_text(img, (W - text_width(opts.title, title_scale)) / 2, 12, opts.title, black,
              title_scale);
  if (!opts.xlabel.empty())
    draw_text(img, (px0 + px1 - text_width(opts.xlabel)) / 2, H - 8 - font_height, opts.xlabel,
              black);
  if (!opts.ylabel.empty())
    draw_text(img, 10, (py0 + py1 + text_width(opts.ylabel)) / 2, opts.ylabel, black, 1, true);

  // ---- series
  const detail::Canvas plot{img, px0 + 1, py0 + 1, px1, py1};
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const Rgb color = detail::tab10[k % detail::tab10.size()];
    bool have_prev = false;
    double qx = 0, qy = 0;
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      double x = 0, y = 0;
      if (!detail::plot_point(s, i, opts.log_y, x, y)) {
        have_prev = false;
        continue;
      }
      const double cx = X(x), cy = Y(y);
      const bool isolated = !have_prev && (i + 1 >= s.y.size() || [&] {
        double nx = 0, ny = 0;
        return !detail::plot_point(s, i + 1, opts.log_y, nx, ny);
      }());
      if (have_prev) detail::draw_segment(plot, qx, qy, cx, cy, 1.8, color);
      if (isolated) detail::draw_segment(plot, cx, cy, cx, cy, 3.5, color);  // a dot
      qx = cx;
      qy = cy;
      have_prev = true;
    }
  }

  // ---- legend, in the corner that hides the fewest points
  std::vector<std::size_t> shown;
  int legend_text_w = 0;
  for (std::size_t k = 0; k < series.size(); ++k)
    if (!series[k].label.empty()) {
      shown.push_back(k);
      legend_text_w = std::max(legend_text_w, text_width(series[k].label));
    }
  if (!shown.empty()) {
    const long line_h = font_height + 5;
    const long lw = 8 + 24 + 6 + legend_text_w + 8, lh = 6 + long(shown.size()) * line_h + 2;
    const long mx = 10;
    std::array<std::array<long, 2>, 4> corners{{{px1 - mx - lw, py0 + mx},
                                                {px0 + mx, py0 + mx},
                                                {px1 - mx - lw, py1 - mx - lh},
                                                {px0 + mx, py1 - mx - lh}}};
    std::array<std::size_t, 4> hidden{};
    for (const Series& s : series)
      for (std::size_t i = 0; i < s.y.size(); ++i) {
        double x = 0, y = 0;
        if (!detail::plot_point(s, i, opts.log_y, x, y)) continue;
        const double cx = X(x), cy = Y(y);
        for (std::size_t c = 0; c < 4; ++c)
          if (cx >= corners[c][0] && cx < corners[c][0] + lw && cy >= corners[c][1] &&
              cy < corners[c][1] + lh)
            ++hidden[c];
      }
    const std::size_t best =
        std::size_t(std::min_element(hidden.begin(), hidden.end()) - hidden.begin());
    const long lx = corners[best][0], ly = corners[best][1];
    plot.fill(lx, ly, lx + lw, ly + lh, white);
    plot.fill(lx, ly, lx + lw, ly + 1, axis_gray);
    plot.fill(lx, ly + lh - 1, lx + lw, ly + lh, axis_gray);
    plot.fill(lx, ly, lx + 1, ly + lh, axis_gray);
    plot.fill(lx + lw - 1, ly, lx + lw, ly + lh, axis_gray);
    for (std::size_t j = 0; j < shown.size(); ++j) {
      const long ty = ly + 6 + long(j) * line_h;
      const Rgb color = detail::tab10[shown[j] % detail::tab10.size()];
      detail::draw_segment(plot, double(lx + 8), double(ty) + 3.5, double(lx + 32),
                           double(ty) + 3.5, 2.0, color);
      draw_text(img, lx + 38, ty, series[shown[j]].label, black);
    }
  }
  return img;
}

inline void write_line_plot(const std::filesystem::path& path, std::span<const Series> series,
                            const PlotOptions& opts) {
  write_png(path, render_line_plot(series, opts));
}

inline std::vector<double> smooth_ema(std::span<const double> values, double alpha) {
  detail::require(alpha > 0.0 && alpha <= 1.0, "alpha", "must be in (0, 1], got ", alpha);
  std::vector<double> out(values.size());
  double acc = 0.0, weight = 0.0;  // weight = 1 - (1 - alpha)^k, the debiasing factor
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) {
      out[i] = NAN;
      continue;
    }
    acc = (1.0 - alpha) * acc + alpha * v;
    weight = (1.0 - alpha) * weight + alpha;
    out[i] = acc / weight;
  }
  return out;
}

}  // namespace ddpm::io
