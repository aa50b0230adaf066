// Tests for ddpm/eval/inputs.hpp: grids written by io::write_png_grid read back tile for tile
// (several paddings and upscales, an incomplete last row), folders, IDX files, labels, errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/eval/inputs.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/io/png.hpp"
#include "eval_test_util.hpp"

using namespace ddpm;

namespace {
/// n random 8-bit images (1 x s x s), as [-1, 1] floats that survive the PNG round trip.
std::vector<float> random_images(std::size_t n, std::size_t s, std::uint64_t seed) {
  std::vector<float> v(n * s * s);
  const Rng rng{seed};
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = float(rng.below(256, rng_stream::user, i)) / 127.5f - 1.0f;
  return v;
}
void check_same(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += std::abs(got[i] - want[i]) > 1e-6f;
  CHECK(bad == 0);
}
}  // namespace

TEST_CASE("eval load_samples: grids of every padding and upscale read back exactly") {
  eval::test::TempDir dir;
  for (std::size_t pad : {0u, 1u, 2u, 3u})
    for (std::size_t up : {1u, 2u, 3u}) {
      const std::size_t n = 12, cols = 4;
      const auto imgs = random_images(n, 28, pad * 10 + up);
      const auto path = dir / ("g" + std::to_string(pad) + std::to_string(up) + ".png");
      io::write_png_grid(path, imgs, n, 1, 28, 28, cols, pad, 1.0f, up);
      INFO("pad ", pad, " upscale ", up);
      const auto s = eval::load_samples(path, 1, 28);
      CHECK(s.kind == "grid");
      CHECK(s.grid_rows == 3);
      CHECK(s.grid_cols == 4);
      CHECK(s.n == n);
      check_same(s.images, imgs);
      const auto rows = eval::grid_labels(s, false);
      CHECK(rows[5] == 1);
      CHECK(eval::grid_labels(s, true)[5] == 1);
      CHECK(eval::grid_labels(s, true)[6] == 2);
    }
}

TEST_CASE("eval load_samples: an incomplete last grid row drops its blank tiles") {
  eval::test::TempDir dir;
  const auto imgs = random_images(10, 28, 3);
  io::write_png_grid(dir / "g.png", imgs, 10, 1, 28, 28, 4, 2, 1.0f, 2);
  const auto s = eval::load_samples(dir / "g.png", 1, 28);
  CHECK(s.n == 10);
  check_same(s.images, imgs);
}

TEST_CASE("eval load_samples: a grid of another tile size names the file and the fix") {
  eval::test::TempDir dir;
  const auto imgs = random_images(6, 20, 4);
  io::write_png_grid(dir / "g20.png", imgs, 6, 1, 20, 20, 3, 2, 1.0f, 1);
  CHECK_THROWS_WITH_AS((void)eval::load_samples(dir / "g20.png", 1, 28),
                       doctest::Contains("is not a grid of 28x28 tiles"), IoError);
  CHECK_THROWS_WITH_AS((void)eval::load_samples(dir / "g20.png", 1, 28),
                       doctest::Contains("g20.png"), IoError);
}

TEST_CASE("eval load_samples: folders of PNGs, sorted, with size checks") {
  eval::test::TempDir dir;
  std::filesystem::create_directories(dir / "ok");
  const auto imgs = random_images(3, 28, 5);
  for (std::size_t i = 0; i < 3; ++i)
    io::write_png_grid(dir / "ok" / ("s" + std::to_string(2 - i) + ".png"),
                       std::span<const float>(imgs).subspan((2 - i) * 784, 784), 1, 1, 28, 28, 1, 0,
                       1.0f, 1);
  std::filesystem::create_directories(dir / "ok" / "sub");        // ignored
  { std::ofstream(dir / "ok" / "notes.txt") << "not an image"; }  // ignored
  const auto s = eval::load_samples(dir / "ok", 1, 28);
  CHECK(s.kind == "folder");
  CHECK(s.n == 3);
  CHECK(s.files == std::vector<std::string>{"s0.png", "s1.png", "s2.png"});
  check_same(s.images, imgs);

  std::filesystem::create_directories(dir / "empty");
  CHECK_THROWS_WITH_AS((void)eval::load_samples(dir / "empty", 1, 28),
                       doctest::Contains("holds no image files"), IoError);
  std::filesystem::create_directories(dir / "big");
  io::write_png_grid(dir / "big" / "x.png", random_images(1, 32, 6), 1, 1, 32, 32, 1, 0, 1.0f, 1);
  CHECK_THROWS_WITH_AS((void)eval::load_samples(dir / "big", 1, 28),
                       doctest::Contains("x.png: image is 32x32, the classifier takes 28x28"),
                       IoError);
  CHECK_THROWS_WITH_AS((void)eval::load_samples(dir / "missing", 1, 28),
                       doctest::Contains("no such file or folder"), IoError);
}

TEST_CASE("eval load_samples: IDX files with labels, and size checks") {
  eval::test::TempDir dir;
  io::IdxArray a{{2, 28, 28}, std::vector<std::uint8_t>(2 * 784, 7)};
  a.data[784] = 255;
  io::write_idx(dir / "s-images-idx3-ubyte", a);
  io::write_idx(dir / "s-labels-idx1-ubyte", io::IdxArray{{2}, {4, 9}});
  const auto s = eval::load_samples(dir / "s-images-idx3-ubyte", 1, 28, std::nullopt, std::nullopt,
                                    dir / "s-labels-idx1-ubyte");
  CHECK(s.kind == "idx");
  CHECK(s.n == 2);
  CHECK(s.labels == std::vector<std::int32_t>{4, 9});
  CHECK(s.images[784] == doctest::Approx(1.0));
  CHECK(s.images[0] == doctest::Approx(7 / 127.5 - 1));
  CHECK_THROWS_WITH_AS((void)eval::grid_labels(s, false),
                       doctest::Contains("read as an IDX file, not as a grid"),
                       std::invalid_argument);
  io::write_idx(dir / "small-idx3", io::IdxArray{{2, 14, 14}, std::vector<std::uint8_t>(2 * 196)});
  CHECK_THROWS_WITH_AS(
      (void)eval::load_samples(dir / "small-idx3", 1, 28),
      doctest::Contains("images are 1x14x14 (CxHxW), the classifier takes 1x28x28"), IoError);
}

TEST_CASE("eval parse_labels: lists and errors") {
  CHECK(eval::parse_labels("3,1, 4 ,1") == std::vector<std::int32_t>{3, 1, 4, 1});
  CHECK_THROWS_WITH_AS((void)eval::parse_labels("1,x"), doctest::Contains("entry 2 ('x')"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)eval::parse_labels("1,,2"), std::invalid_argument);
  CHECK_THROWS_AS((void)eval::parse_labels("-1"), std::invalid_argument);
}
