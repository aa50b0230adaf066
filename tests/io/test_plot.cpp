// SPDX-License-Identifier: MIT
// Tests for ddpm/io/plot.hpp: plots render with the series colours, survive hostile values,
// ticks are nice, and the EMA smoother is debiased.
#include <doctest/doctest.h>
#include <stb/stb_image.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "ddpm/io/plot.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::Image8;
using ddpm::io::PlotOptions;
using ddpm::io::Series;

namespace {

/// Pixels of exactly this colour.
std::size_t count_color(const Image8& img, ddpm::io::Rgb c) {
  std::size_t n = 0;
  for (std::size_t i = 0; i + 2 < img.px.size(); i += 3)
    n += img.px[i] == c.r && img.px[i + 1] == c.g && img.px[i + 2] == c.b;
  return n;
}

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double qnan = std::numeric_limits<double>::quiet_NaN();

}  // namespace

TEST_CASE("plot: a plot of two series has the requested size and both tab10 colours") {
  std::vector<double> x, y1, y2;
  for (int i = 0; i <= 100; ++i) {
    x.push_back(i);
    y1.push_back(std::exp(-i / 20.0));
    y2.push_back(0.5 + 0.3 * std::sin(i / 10.0));
  }
  const std::vector<Series> s{{"decay", x, y1}, {"wave", x, y2}};
  const Image8 img =
      ddpm::io::render_line_plot(s, {.title = "t", .xlabel = "step", .ylabel = "loss"});
  CHECK((img.h == 500 && img.w == 800 && img.c == 3));
  CHECK(count_color(img, {31, 119, 180}) > 100);  // tab10 blue
  CHECK(count_color(img, {255, 127, 14}) > 100);  // tab10 orange
  CHECK(count_color(img, {0, 0, 0}) > 50);        // text
}

TEST_CASE("plot: log y, non-finite and non-positive values, empty and degenerate series") {
  const std::vector<Series> s{
      {"with holes", {}, {1, qnan, 3, -2, inf, 5, 0, 1e-3}},
      {"all bad", {qnan, inf}, {1, 2}},
      {"single", {3}, {7}},
      {"", {}, {}},
      {"huge", {-1e308, 1e308}, {1e300, 1e-300}},
  };
  for (const bool log_y : {false, true}) {
    CAPTURE(log_y);
    const Image8 img = ddpm::io::render_line_plot(s, {.log_y = log_y, .width = 300, .height = 200});
    CHECK((img.h == 200 && img.w == 300));
  }
  const Image8 empty = ddpm::io::render_line_plot({}, {.title = "nothing", .log_y = true});
  CHECK(count_color(empty, {31, 119, 180}) == 0);
  const std::vector<Series> flat{{"flat", {}, {2, 2, 2}}};
  CHECK(count_color(ddpm::io::render_line_plot(flat, {}), {31, 119, 180}) > 100);
}

TEST_CASE("plot: write_line_plot writes a PNG; bad options and series are parameter errors") {
  ddpm::io::test::TempDir dir;
  const std::vector<Series> s{{"loss", {}, {3, 2, 1.5, 1.2}}};
  ddpm::io::write_line_plot(dir / "loss.png", s, {.title = "Loss", .width = 320, .height = 240});
  int w = 0, h = 0, c = 0;
  REQUIRE(stbi_info((dir / "loss.png").c_str(), &w, &h, &c));
  CHECK((w == 320 && h == 240 && c == 3));
  CHECK_THROWS_AS((void)ddpm::io::render_line_plot(s, {.width = 10}), std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::render_line_plot(s, {.height = 100000}), std::invalid_argument);
  const std::vector<Series> bad{{"x and y differ", {1, 2}, {1, 2, 3}}};
  CHECK_THROWS_AS((void)ddpm::io::render_line_plot(bad, {}), std::invalid_argument);
  const auto p = dir / "missing" / "p.png";
  DDPM_CHECK_IO_ERROR(ddpm::io::write_line_plot(p, s), p.string(), "No such file or directory");
}

TEST_CASE("plot: ticks are 1-2-5 steps with readable labels") {
  using ddpm::io::detail::linear_ticks;
  using ddpm::io::detail::log_ticks;
  auto labels = [](const std::vector<ddpm::io::detail::Tick>& t) {
    std::vector<std::string> out;
    for (const auto& k : t) out.push_back(k.label);
    return out;
  };
  CHECK(labels(linear_ticks(0, 10, 5)) == std::vector<std::string>{"0", "2", "4", "6", "8", "10"});
  CHECK(labels(linear_ticks(-0.05, 0.26, 3)) == std::vector<std::string>{"0", "0.1", "0.2"});
  CHECK(labels(linear_ticks(0, 300000, 3)) == std::vector<std::string>{"0", "1e5", "2e5", "3e5"});
  CHECK(labels(linear_ticks(1e-6, 3e-6, 2)) == std::vector<std::string>{"1e-6", "2e-6", "3e-6"});
  CHECK(labels(log_ticks(-3, 0, 5)) == std::vector<std::string>{"0.001", "0.01", "0.1", "1"});
  CHECK(labels(log_ticks(0, 1, 5)) == std::vector<std::string>{"1", "2", "5", "10"});
  CHECK(labels(log_ticks(-12, -8, 5)) ==
        std::vector<std::string>{"1e-12", "1e-11", "1e-10", "1e-9", "1e-8"});
  CHECK(log_ticks(-300, 300, 5).size() <= 7);
  CHECK(linear_ticks(0, inf, 5).empty());
}

TEST_CASE("plot: smooth_ema weights new values by alpha, is debiased, skips non-finite values") {
  CHECK(ddpm::io::smooth_ema({}, 0.1).empty());
  const std::vector<double> c(10, 4.0);
  for (double v : ddpm::io::smooth_ema(c, 0.1)) CHECK(v == doctest::Approx(4.0));
  const std::vector<double> v{0.0, 1.0};
  const auto s = ddpm::io::smooth_ema(v, 0.5);
  CHECK(s[0] == 0.0);
  CHECK(s[1] == doctest::Approx(2.0 / 3.0));  // (0.5 * 0.5 * 0 + 0.5 * 1) / 0.75
  CHECK(ddpm::io::smooth_ema(v, 1.0) == v);   // alpha = 1: no smoothing
  const auto heavy = ddpm::io::smooth_ema(v, 0.01);
  CHECK(heavy[1] == doctest::Approx(0.01 / (1 - 0.99 * 0.99)));
  const std::vector<double> holes{1.0, qnan, 3.0};
  const auto h = ddpm::io::smooth_ema(holes, 0.5);
  CHECK(h[0] == 1.0);
  CHECK(std::isnan(h[1]));
  CHECK(h[2] == doctest::Approx((0.25 * 1 + 0.5 * 3) / 0.75));
  CHECK_THROWS_AS((void)ddpm::io::smooth_ema(v, 0.0), std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::smooth_ema(v, 1.5), std::invalid_argument);
}
