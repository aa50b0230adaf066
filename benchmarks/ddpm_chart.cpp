// ddpm-chart: grouped bar chart PNG from a JSON description, drawn with ddpm's own PNG writer and
// bitmap font (no plotting library). benchmarks/compare.py writes the JSON and calls this tool.
//
//   ddpm-chart chart.json chart.png
//
// Input:
//   {"title": "...", "subtitle": ["line", ...], "footer": ["line", ...],
//    "series": [{"name": "ddpm CPU", "color": [31, 119, 180]}, ...],
//    "panels": [{"title": "mnist train", "unit": "img/s", "notes": ["ddpm/PyTorch CPU 1.3x"],
//                "bars": [{"value": 61.2, "lo": 55.0, "hi": 66.0, "label": "61.2",
//                          "contended": false, "na": ""}, ...]}]}      // one bar per series
// A bar with a non-empty "na" is drawn as that text instead of a bar; a contended bar is hatched
// and its label gets a '*'. Each panel has its own linear y axis from 0.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ddpm/io/font.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"

namespace {

using ddpm::io::draw_text;
using ddpm::io::font_height;
using ddpm::io::Image8;
using ddpm::io::Rgb;
using ddpm::io::text_width;
using Canvas = ddpm::io::detail::Canvas;

struct Bar {
  double value = NAN, lo = NAN, hi = NAN;
  std::string label, na;
  bool contended = false;
};
struct Panel {
  std::string title, unit;
  std::vector<std::string> notes;
  std::vector<Bar> bars;
};
struct Series {
  std::string name;
  Rgb color;
};

double num(const nlohmann::json& j, const char* k) {
  return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN;
}
std::string str(const nlohmann::json& j, const char* k) {
  return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string{};
}
std::vector<std::string> lines(const nlohmann::json& j, const char* k) {
  std::vector<std::string> v;
  if (j.contains(k) && j[k].is_array())
    for (const auto& s : j[k]) v.push_back(s.get<std::string>());
  return v;
}

Rgb lighter(Rgb c, double t) {
  auto f = [t](std::uint8_t v) { return std::uint8_t(std::lround(v + (255 - v) * t)); };
  return {f(c.r), f(c.g), f(c.b)};
}

/// Splits "ddpm CPU" into two lines to fit under a narrow bar.
std::vector<std::string> two_lines(const std::string& s) {
  const auto sp = s.find(' ');
  if (sp == std::string::npos) return {s};
  return {s.substr(0, sp), s.substr(sp + 1)};
}

void draw_panel(Image8& img, const Panel& p, const std::vector<Series>& series, long x0, long y0,
                long w, long h) {
  const Canvas full{img, 0, 0, long(img.w), long(img.h)};
  const Rgb black{0, 0, 0}, axis{80, 80, 80}, grid{225, 225, 225}, gray{130, 130, 130};
  draw_text(img, x0 + (w - text_width(p.title, 2)) / 2, y0 + 4, p.title, black, 2);
  long ty = y0 + 4 + 2 * font_height + 6;
  for (const auto& n : p.notes) {
    draw_text(img, x0 + (w - text_width(n)) / 2, ty, n, black);
    ty += font_height + 4;
  }
  double top = 0;
  for (const Bar& b : p.bars)
    if (b.na.empty())
      for (double v : {b.value, b.hi})
        if (std::isfinite(v)) top = std::max(top, v);
  if (!(top > 0)) top = 1;
  top *= 1.18;  // room for the value labels
  const long label_h = 2 * (font_height + 2) + 6;
  const long py0 = ty + 6, py1 = y0 + h - label_h;
  const auto ticks = ddpm::io::detail::linear_ticks(0.0, top, std::max(2, int(py1 - py0) / 45));
  int tick_w = 0;
  for (const auto& t : ticks) tick_w = std::max(tick_w, text_width(t.label));
  const long px0 = x0 + 14 + font_height + tick_w + 6, px1 = x0 + w - 10;
  auto Y = [&](double v) { return long(std::lround(double(py1) - v / top * double(py1 - py0))); };
  for (const auto& t : ticks) {
    const long y = Y(t.value);
    if (y < py0) continue;
    full.fill(px0, y, px1, y + 1, grid);
    full.fill(px0 - 4, y, px0, y + 1, axis);
    draw_text(img, px0 - 6 - text_width(t.label), y - 4, t.label, black);
  }
  if (!p.unit.empty())
    draw_text(img, x0 + 6, (py0 + py1 + text_width(p.unit)) / 2, p.unit, black, 1, true);
  full.fill(px0, py1, px1, py1 + 1, axis);
  full.fill(px0, py0, px0 + 1, py1 + 1, axis);

  const std::size_t n = std::max<std::size_t>(1, p.bars.size());
  const double slot = double(px1 - px0) / double(n);
  for (std::size_t i = 0; i < p.bars.size(); ++i) {
    const Bar& b = p.bars[i];
    const Series& s = series[std::min(i, series.size() - 1)];
    const long cx = px0 + long(std::lround(slot * (double(i) + 0.5)));
    const long bw = std::max(6L, long(slot * 0.62));
    const long bx0 = cx - bw / 2, bx1 = bx0 + bw;
    long ly = py1 + 5;
    for (const auto& l : two_lines(s.name)) {
      draw_text(img, cx - text_width(l) / 2, ly, l, black);
      ly += font_height + 2;
    }
    if (!b.na.empty() || !std::isfinite(b.value)) {
      const std::string t = b.na.empty() ? "n/a" : b.na;
      draw_text(img, cx - font_height / 2, py1 - 6, t, gray, 1, true);
      continue;
    }
    const long yb = Y(b.value);
    const Rgb light = lighter(s.color, 0.55);
    for (long y = yb; y < py1; ++y)
      for (long x = bx0; x < bx1; ++x) {
        const bool stripe = b.contended && ((x + y) / 4) % 2 == 0;
        full.blend(x, y, stripe ? light : s.color, 1.0);
      }
    if (std::isfinite(b.lo) && std::isfinite(b.hi) && b.hi > b.lo) {
      const long ylo = Y(b.lo), yhi = Y(b.hi);
      full.fill(cx, yhi, cx + 1, ylo + 1, black);
      full.fill(cx - 4, yhi, cx + 5, yhi + 1, black);
      full.fill(cx - 4, ylo, cx + 5, ylo + 1, black);
    }
    const std::string lab =
        (b.label.empty() ? ddpm::io::detail::tick_label(b.value, b.value / 100) : b.label) +
        (b.contended ? "*" : "");
    const long top_y = std::min(yb, std::isfinite(b.hi) ? Y(b.hi) : yb);
    const int sc = text_width(lab, 2) <= long(slot) - 4 ? 2 : 1;
    draw_text(img, cx - text_width(lab, sc) / 2, top_y - 4 - font_height * sc, lab, black, sc);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 3) {
    std::fprintf(stderr, "usage: ddpm-chart chart.json chart.png\n");
    return 2;
  }
  std::ifstream f(argv[1]);
  if (!f) {
    std::fprintf(stderr, "ddpm-chart: cannot open %s\n", argv[1]);
    return 1;
  }
  const nlohmann::json j = nlohmann::json::parse(f);
  std::vector<Series> series;
  for (const auto& s : j.at("series")) {
    Series se{str(s, "name"), Rgb{31, 119, 180}};
    if (s.contains("color") && s["color"].is_array() && s["color"].size() == 3)
      se.color = Rgb{s["color"][0].get<std::uint8_t>(), s["color"][1].get<std::uint8_t>(),
                     s["color"][2].get<std::uint8_t>()};
    series.push_back(se);
  }
  if (series.empty()) throw std::runtime_error("no series");
  std::vector<Panel> panels;
  for (const auto& pj : j.at("panels")) {
    Panel p{str(pj, "title"), str(pj, "unit"), lines(pj, "notes"), {}};
    for (const auto& bj : pj.at("bars"))
      p.bars.push_back(Bar{
          num(bj, "value"), num(bj, "lo"), num(bj, "hi"), str(bj, "label"), str(bj, "na"),
          bj.contains("contended") && bj["contended"].is_boolean() && bj["contended"].get<bool>()});
    panels.push_back(std::move(p));
  }
  if (panels.empty()) throw std::runtime_error("no panels");
  const std::string title = str(j, "title");
  const auto subtitle = lines(j, "subtitle"), footer = lines(j, "footer");
  std::size_t max_notes = 0;
  for (const auto& p : panels) max_notes = std::max(max_notes, p.notes.size());

  const long cols = long(std::min<std::size_t>(panels.size(), 4));
  const long rows = (long(panels.size()) + cols - 1) / cols;
  const long panel_w = std::max(260L, 70L * long(series.size()) + 60);
  const long panel_h = 330 + long(max_notes) * (font_height + 4);
  const long margin = 16, line = font_height + 4;
  long W = std::max(2 * margin + cols * panel_w, 900L);
  for (const auto& s : subtitle) W = std::max(W, 2 * margin + long(text_width(s)));
  for (const auto& s : footer) W = std::max(W, 2 * margin + long(text_width(s)));
  const long head =
      margin + 2 * font_height + 8 + long(subtitle.size()) * line + 8 + 2 * font_height + 12;
  const long H = head + rows * panel_h + 8 + long(footer.size()) * line + margin;
  if (W > 8192 || H > 8192) throw std::runtime_error("chart too large");

  Image8 img{std::size_t(H), std::size_t(W), 3,
             std::vector<std::uint8_t>(std::size_t(W * H * 3), 255)};
  const Rgb black{0, 0, 0};
  long y = margin;
  draw_text(img, (W - text_width(title, 2)) / 2, y, title, black, 2);
  y += 2 * font_height + 8;
  for (const auto& s : subtitle) {
    draw_text(img, (W - text_width(s)) / 2, y, s, black);
    y += line;
  }
  y += 8;
  // legend: one swatch per series, centred
  long lw = 0;
  for (const auto& s : series) lw += 22 + text_width(s.name, 2) + 24;
  long lx = (W - lw) / 2;
  const Canvas full{img, 0, 0, W, H};
  for (const auto& s : series) {
    full.fill(lx, y + 2, lx + 16, y + 2 * font_height - 2, s.color);
    draw_text(img, lx + 22, y, s.name, black, 2);
    lx += 22 + text_width(s.name, 2) + 24;
  }
  y += 2 * font_height + 12;
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const long c = long(i) % cols, r = long(i) / cols;
    const long x0 = (W - cols * panel_w) / 2 + c * panel_w;
    draw_panel(img, panels[i], series, x0, y + r * panel_h, panel_w, panel_h);
  }
  y += rows * panel_h + 8;
  for (const auto& s : footer) {
    draw_text(img, margin, y, s, black);
    y += line;
  }
  ddpm::io::write_png(argv[2], img);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm-chart: %s\n", e.what());
  return 1;
}
