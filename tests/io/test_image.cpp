// SPDX-License-Identifier: MIT
// Tests for ddpm/io/image.hpp: decoding, resizing, cropping, flipping, image folders.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/io/image.hpp"
#include "ddpm/io/png.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::Image8;
using ddpm::io::test::TempDir;
using ddpm::io::test::write_bytes;

namespace {

Image8 pattern(std::size_t h, std::size_t w, std::size_t c, unsigned seed = 1) {
  Image8 img{h, w, c, std::vector<std::uint8_t>(h * w * c)};
  for (std::size_t i = 0; i < img.px.size(); ++i)
    img.px[i] = std::uint8_t((i * 37 + seed * 11) % 256);
  return img;
}

Image8 constant(std::size_t h, std::size_t w, std::size_t c, std::uint8_t v) {
  return Image8{h, w, c, std::vector<std::uint8_t>(h * w * c, v)};
}

// Segments of a hand-made baseline JPEG of 8x8 pixels and one component (id 1), for the tests
// of the JPEG guards.
using Bytes = std::vector<std::uint8_t>;
Bytes jpeg_soi() { return {0xFF, 0xD8}; }
/// DQT defining quantization table 0 with all 64 entries `value`.
Bytes jpeg_dqt0(std::uint8_t value) {
  Bytes d{0xFF, 0xDB, 0x00, 0x43, 0x00};
  d.insert(d.end(), 64, value);
  return d;
}
/// SOF0: 8-bit, 8x8, component 1 sampled 1x1 with quantization table `tq`.
Bytes jpeg_sof(std::uint8_t tq) { return {0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, tq}; }
/// DHT with one code of length 1 (symbol 0) for table class `tc` (0 DC, 1 AC), id 0.
Bytes jpeg_dht(std::uint8_t tc) {
  Bytes d{0xFF, 0xC4, 0x00, 0x14, std::uint8_t(tc << 4), 1};
  d.insert(d.end(), 16, 0);
  return d;
}
/// SOS of component 1 with DC and AC table 0, one byte of data, EOI.
Bytes jpeg_sos_eoi() { return {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0, 0x00, 0xFF, 0xD9}; }
Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes all;
  for (const Bytes& b : parts) all.insert(all.end(), b.begin(), b.end());
  return all;
}

}  // namespace

TEST_CASE("image: PNG files decode to the pixels written, in 1, 3 and 4 channels") {
  TempDir dir;
  for (const std::size_t c : {1, 3, 4}) {
    CAPTURE(c);
    const Image8 img = pattern(5, 7, c);
    const auto p = dir / (std::to_string(c) + ".png");
    ddpm::io::write_png(p, img);
    const Image8 back = ddpm::io::read_image(p, c);
    CHECK((back.h == 5 && back.w == 7 && back.c == c));
    CHECK(back.px == img.px);
  }
}

TEST_CASE("image: channel conversion on read (gray -> RGB replicates, RGB -> gray is luminance)") {
  TempDir dir;
  const Image8 gray = pattern(3, 4, 1);
  ddpm::io::write_png(dir / "g.png", gray);
  const Image8 rgb = ddpm::io::read_image(dir / "g.png", 3);
  REQUIRE(rgb.c == 3);
  for (std::size_t i = 0; i < 12; ++i)
    CHECK((rgb.px[3 * i] == gray.px[i] && rgb.px[3 * i + 1] == gray.px[i] &&
           rgb.px[3 * i + 2] == gray.px[i]));
  // A pure-colour RGB image reads back as one gray level.
  Image8 red{2, 2, 3, {}};
  for (int i = 0; i < 4; ++i) red.px.insert(red.px.end(), {200, 0, 0});
  ddpm::io::write_png(dir / "r.png", red);
  const Image8 lum = ddpm::io::read_image(dir / "r.png", 1);
  REQUIRE(lum.c == 1);
  CHECK(lum.px[0] > 40);
  CHECK(lum.px[0] < 80);  // about 0.3 * 200
}

TEST_CASE("image: BMP and JPEG are decoded too") {
  TempDir dir;
  const Image8 img = constant(8, 8, 3, 90);
  REQUIRE(stbi_write_bmp((dir / "a.bmp").c_str(), 8, 8, 3, img.px.data()));
  CHECK(ddpm::io::read_image(dir / "a.bmp", 3).px == img.px);
  REQUIRE(stbi_write_jpg((dir / "a.jpg").c_str(), 8, 8, 3, img.px.data(), 95));
  const Image8 j = ddpm::io::read_image(dir / "a.jpg", 3);
  REQUIRE(j.px.size() == img.px.size());
  for (std::size_t i = 0; i < j.px.size(); ++i) CHECK(std::abs(int(j.px[i]) - 90) <= 3);
}

TEST_CASE("image: unreadable images are rejected naming the file") {
  TempDir dir;
  const auto missing = dir / "missing.png";
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(missing), missing.string(), "No such file or directory");
  const auto empty = dir / "empty.png";
  write_bytes(empty, {});
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(empty), empty.string(),
                      "cannot decode image: the file is empty");
  const auto junk = dir / "junk.png";
  ddpm::io::test::write_text(junk, "this is not an image at all");
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(junk), junk.string(), "cannot decode image");
  // A PNG cut in half.
  ddpm::io::write_png(dir / "whole.png", pattern(32, 32, 3));
  auto bytes = ddpm::io::test::read_bytes(dir / "whole.png");
  bytes.resize(bytes.size() / 2);
  const auto cut = dir / "cut.png";
  write_bytes(cut, bytes);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(cut), cut.string(), "cannot decode image");
  // A gray PNG header claiming 20000 x 20000 pixels (stb_image itself would try): refused by
  // ddpm's own pixel limit before decoding.
  const std::vector<std::uint8_t> huge{0x89, 'P',  'N', 'G', 13,  10, 26, 10,   0,    0, 0,
                                       13,   'I',  'H', 'D', 'R', 0,  0,  0x4E, 0x20, 0, 0,
                                       0x4E, 0x20, 8,   0,   0,   0,  0,  0,    0,    0, 0};
  const auto big = dir / "huge.png";
  write_bytes(big, huge);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(big), big.string(), "larger than the limit");
  CHECK_THROWS_AS((void)ddpm::io::read_image(dir / "whole.png", 2), std::invalid_argument);
}

TEST_CASE("image: resize keeps constants constant, in both directions") {
  for (const auto& [h, w] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 1}, {3, 5}, {7, 7}, {40, 13}, {64, 64}}) {
    CAPTURE(h);
    CAPTURE(w);
    const Image8 out = ddpm::io::resize_area_or_bilinear(constant(17, 23, 3, 201), h, w);
    CHECK((out.h == h && out.w == w && out.c == 3));
    for (auto v : out.px) CHECK(v == 201);
  }
}

TEST_CASE("image: shrinking averages areas exactly") {
  // 4x4 -> 2x2: each output is the mean of a 2x2 block.
  Image8 img{4, 4, 1, {0, 2, 10, 20, 4, 6, 30, 40, 100, 100, 0, 0, 100, 100, 0, 4}};
  const Image8 out = ddpm::io::resize_area_or_bilinear(img, 2, 2);
  CHECK(out.px == std::vector<std::uint8_t>{3, 25, 100, 1});
  // 1x3 -> 1x2 (factor 1.5): [0, 90, 180] -> [(0 + 90/2) / 1.5, (90/2 + 180) / 1.5] = [30, 150].
  const Image8 thirds = ddpm::io::resize_area_or_bilinear(Image8{1, 3, 1, {0, 90, 180}}, 1, 2);
  CHECK(thirds.px == std::vector<std::uint8_t>{30, 150});
}

TEST_CASE("image: growing is bilinear with half-pixel centres") {
  // 1x2 -> 1x4: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  const Image8 out = ddpm::io::resize_area_or_bilinear(Image8{1, 2, 1, {0, 100}}, 1, 4);
  CHECK(out.px == std::vector<std::uint8_t>{0, 25, 75, 100});
  // Equal size is a copy.
  const Image8 img = pattern(5, 6, 3);
  CHECK(ddpm::io::resize_area_or_bilinear(img, 5, 6).px == img.px);
  CHECK_THROWS_AS((void)ddpm::io::resize_area_or_bilinear(img, 0, 6), std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::resize_area_or_bilinear(Image8{2, 2, 1, {1, 2, 3}}, 1, 1),
                  std::invalid_argument);
}

TEST_CASE("image: center_crop_square takes the middle, hflip mirrors") {
  const Image8 wide{2, 4, 1, {1, 2, 3, 4, 5, 6, 7, 8}};
  const Image8 c = ddpm::io::center_crop_square(wide);
  CHECK((c.h == 2 && c.w == 2));
  CHECK(c.px == std::vector<std::uint8_t>{2, 3, 6, 7});
  const Image8 tall{5, 3, 1, {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4}};
  CHECK(ddpm::io::center_crop_square(tall).px ==
        std::vector<std::uint8_t>{1, 1, 1, 2, 2, 2, 3, 3, 3});
  const Image8 rgb{1, 2, 3, {1, 2, 3, 4, 5, 6}};
  CHECK(ddpm::io::hflip(rgb).px == std::vector<std::uint8_t>{4, 5, 6, 1, 2, 3});
  const Image8 img = pattern(4, 5, 3);
  CHECK(ddpm::io::hflip(ddpm::io::hflip(img)).px == img.px);
}

TEST_CASE("image: load_image_folder sorts, skips non-images and hidden files, crops and resizes") {
  TempDir dir;
  ddpm::io::write_png(dir / "b.png", constant(10, 20, 3, 50));   // wide: cropped to 10x10
  ddpm::io::write_png(dir / "a.PNG", constant(6, 6, 1, 200));    // gray, upper-case extension
  ddpm::io::write_png(dir / "c.png", constant(30, 12, 3, 120));  // tall
  ddpm::io::test::write_text(dir / "notes.txt", "not an image");
  ddpm::io::test::write_text(dir / "._b.png", "macOS resource fork, not a PNG");
  std::filesystem::create_directory(dir / "sub.png");  // a folder with an image-like name

  const auto ds = ddpm::io::load_image_folder(dir.path(), 8, 3);
  CHECK((ds.n == 3 && ds.c == 3 && ds.h == 8 && ds.w == 8));
  REQUIRE(ds.pixels.size() == 3 * 3 * 64);
  CHECK(ds.labels.empty());
  CHECK(ds.pixels[0] == 200);              // a.PNG first
  CHECK(ds.pixels[192] == 50);             // then b.png
  CHECK(ds.pixels[2 * 192 + 191] == 120);  // then c.png

  const auto gray =
      ddpm::io::load_image_folder(dir.path(), 4, 1, /*center_crop=*/false, /*max_images=*/2);
  CHECK((gray.n == 2 && gray.c == 1 && gray.h == 4));
  CHECK(gray.pixels.size() == 2 * 16);
}

TEST_CASE("image: load_image_folder center-crops before resizing") {
  TempDir dir;
  // 2x6 image: columns 0-1 black, 2-3 white, 4-5 black. The centre crop (2x2) is all white.
  Image8 img{2, 6, 1, {}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 6; ++x) img.px.push_back((x == 2 || x == 3) ? 255 : 0);
  ddpm::io::write_png(dir / "x.png", img);
  const auto cropped = ddpm::io::load_image_folder(dir.path(), 2, 1, true);
  CHECK(cropped.pixels == std::vector<std::uint8_t>(4, 255));
  const auto squashed = ddpm::io::load_image_folder(dir.path(), 2, 1, false);
  CHECK(squashed.pixels == std::vector<std::uint8_t>{85, 85, 85, 85});  // thirds: (0 + 255 + 0) / 3
}

TEST_CASE("image: load_image_folder errors name the folder or the bad file") {
  TempDir dir;
  const auto missing = dir / "nope";
  DDPM_CHECK_IO_ERROR(ddpm::io::load_image_folder(missing, 8), missing.string(),
                      "folder does not exist");
  ddpm::io::test::write_text(dir / "readme.txt", "hello");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_image_folder(dir.path(), 8), dir.path().string(),
                      "no image files");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_image_folder(dir / "readme.txt", 8),
                      (dir / "readme.txt").string(), "is not a folder");
  ddpm::io::write_png(dir / "a.png", constant(4, 4, 3, 1));
  ddpm::io::test::write_text(dir / "b.jpg", "garbage pretending to be a JPEG");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_image_folder(dir.path(), 8), (dir / "b.jpg").string(),
                      "cannot decode image");
  CHECK_THROWS_AS((void)ddpm::io::load_image_folder(dir.path(), 0), std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::load_image_folder(dir.path(), 8, 2), std::invalid_argument);
}

TEST_CASE("image: a JPEG Huffman table of more than 256 codes is refused before stb_image sees it") {
  // Regression of tests/fuzz/fuzz_image: stb_image 2.27 (Debian 12) writes past its Huffman
  // tables for such a segment (tests/fuzz/corpus/image/crash_*). Also with 0xFF fill bytes
  // before the start-of-image marker, which stb_image skips.
  TempDir dir;
  std::vector<std::uint8_t> seg{0x00};  // table class 0, id 0
  for (int i = 0; i < 16; ++i) seg.push_back(19);  // 16 x 19 = 304 codes
  for (int i = 0; i < 304; ++i) seg.push_back(std::uint8_t(i));
  const Bytes dht_marker{0xFF, 0xC4, std::uint8_t((seg.size() + 2) >> 8),
                         std::uint8_t((seg.size() + 2) & 0xFF)};
  Bytes jpeg = concat({jpeg_soi(), dht_marker, seg, {0xFF, 0xD9}});
  const auto p = dir / "dht.jpg";
  write_bytes(p, jpeg);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p), p.string(), "more than 256 codes");
  jpeg.insert(jpeg.begin(), 5, 0xFF);
  write_bytes(p, jpeg);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p), p.string(), "more than 256 codes");
  // 256 codes exactly is allowed by the format: not refused by the guard.
  std::vector<std::uint8_t> ok{0xFF, 0xD8, 0xFF, 0xC4, 0x01, 0x13, 0x00};
  for (int i = 0; i < 16; ++i) ok.push_back(16);
  for (int i = 0; i < 256; ++i) ok.push_back(std::uint8_t(i));
  CHECK(ddpm::io::detail::jpeg_hazard(std::as_bytes(std::span(ok))) == nullptr);
  // A real JPEG passes.
  REQUIRE(stbi_write_jpg((dir / "a.jpg").c_str(), 8, 8, 3, constant(8, 8, 3, 90).px.data(), 95));
  const auto real = ddpm::io::test::read_bytes(dir / "a.jpg");
  CHECK(ddpm::io::detail::jpeg_hazard(std::as_bytes(std::span(real))) == nullptr);
}

TEST_CASE("image: a PNG chunk longer than the file is refused before stb_image allocates for it") {
  // Regression of tests/fuzz/fuzz_image (corpus/image/oom_fuzzer_png_chunk_length_*.png): an IDAT
  // chunk that declares ~4 GB made stb_image 2.27 grow its buffer to 2 GiB for a 100-byte file.
  TempDir dir;
  const auto good = dir / "a.png";
  REQUIRE(stbi_write_png(good.c_str(), 5, 4, 3, constant(4, 5, 3, 90).px.data(), 15));
  auto bytes = ddpm::io::test::read_bytes(good);
  CHECK(ddpm::io::detail::png_hazard(std::as_bytes(std::span(bytes))) == nullptr);
  CHECK(ddpm::io::read_image(good, 3).w == 5);
  // The first chunk after IHDR (8 + 25 bytes) is IDAT: make it claim more than the file holds.
  REQUIRE(bytes.size() > 41);
  REQUIRE(bytes[37] == 'I');
  REQUIRE(bytes[38] == 'D');
  auto set_len = [&](std::uint32_t len) {
    for (int k = 0; k < 4; ++k) bytes[33 + k] = std::uint8_t(len >> (24 - 8 * k));
  };
  const auto bad = dir / "bad.png";
  set_len(0xF0370000u);
  write_bytes(bad, bytes);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(bad, 3), bad.string(), "corrupt PNG (a chunk length is over 2^31 - 1)");
  set_len(std::uint32_t(bytes.size()));  // valid as a length, but past the end of the file
  write_bytes(bad, bytes);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(bad, 3), bad.string(),
                      "corrupt PNG (a chunk is longer than the rest of the file)");
  // A file cut inside a chunk is refused the same way.
  auto cut = ddpm::io::test::read_bytes(good);
  cut.resize(cut.size() - 20);
  write_bytes(bad, cut);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(bad, 3), bad.string(), "corrupt PNG");
}

TEST_CASE("image: a JPEG scan that uses an undefined Huffman table is refused before stb_image sees it") {
  // Regression of tests/fuzz/fuzz_image: stb_image 2.27 then decodes with uninitialised tables
  // and reads far out of bounds (corpus/image/crash_fuzzer_jpeg_undefined_table_*.jpg).
  TempDir dir;
  const Bytes head = concat({jpeg_soi(), jpeg_dqt0(1), jpeg_sof(0)});
  // uses AC table 0, never defined
  Bytes jpeg = concat({head, jpeg_dht(0), jpeg_sos_eoi()});
  const auto p = dir / "undefined_table.jpg";
  write_bytes(p, jpeg);
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p), p.string(),
                      "a scan uses a Huffman table the file does not define");
  // With the AC table defined the guard lets it through (stb_image decides about the rest).
  jpeg = concat({head, jpeg_dht(0), jpeg_dht(1), jpeg_sos_eoi()});
  CHECK(ddpm::io::detail::jpeg_hazard(std::as_bytes(std::span(jpeg))) == nullptr);
  // Progressive JPEGs (DC scans name an AC table they do not use) are not refused.
  for (const char* name : {"progressive_rgb.jpg", "progressive_gray.jpg"}) {
    const auto file = std::filesystem::path(DDPM_SOURCE_DIR) / "tests/fuzz/corpus/image" / name;
    CHECK(ddpm::io::read_image(file, 3).w == 37);
  }
}

TEST_CASE("image: a PNM header number that overflows int is refused before stb_image sees it") {
  // Regression of tests/fuzz/fuzz_image: stb_image 2.27 accumulates the width, height and maximum
  // value in an int without a bound (corpus/image/crash_fuzzer_pnm_int_overflow_*.pgm).
  TempDir dir;
  const auto ok = dir / "ok.pgm";
  std::vector<std::uint8_t> pgm;
  for (char ch : std::string("P5\n# a comment\n3 2\n255\n")) pgm.push_back(std::uint8_t(ch));
  for (std::uint8_t v : {0, 50, 100, 150, 200, 250}) pgm.push_back(v);
  write_bytes(ok, pgm);
  const auto img = ddpm::io::read_image(ok, 1);
  CHECK(img.w == 3);
  CHECK(img.h == 2);
  CHECK(img.px[5] == 250);
  for (const std::string header : {"P5 55555555555 2 255\n", "P6\n3 2 4294967296\n",
                                   "P5\n#c\n3\n9999999999\n255\n"}) {
    std::vector<std::uint8_t> bad(header.begin(), header.end());
    bad.insert(bad.end(), 18, 7);
    const auto p = dir / "bad.pgm";
    write_bytes(p, bad);
    DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p, 1), p.string(),
                        "corrupt PNM (a header number does not fit in an int)");
  }
  const auto found = std::filesystem::path(DDPM_SOURCE_DIR) /
                     "tests/fuzz/corpus/image/crash_fuzzer_pnm_int_overflow_c0b85926.pgm";
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(found, 3), found.string(), "corrupt PNM");
}

TEST_CASE("image: a JPEG scan of a component whose quantization table is undefined is refused") {
  // Regression of tests/fuzz/fuzz_image: stb_image 2.27 dequantises with uninitialised memory,
  // so the decoded pixels change from run to run and the products overflow int
  // (corpus/image/crash_fuzzer_jpeg_undefined_quant_*.jpg).
  TempDir dir;
  auto jpeg_with = [](std::uint8_t tq, bool with_dqt) {
    return concat({jpeg_soi(), with_dqt ? jpeg_dqt0(2) : Bytes{}, jpeg_sof(tq), jpeg_dht(0),
                   jpeg_dht(1), jpeg_sos_eoi()});
  };
  const auto p = dir / "no_dqt.jpg";
  write_bytes(p, jpeg_with(0, false));
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p, 1), p.string(),
                      "a scan uses a quantization table the file does not define");
  write_bytes(p, jpeg_with(1, true));  // table 1 is used, only table 0 defined
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(p, 1), p.string(),
                      "a scan uses a quantization table the file does not define");
  const auto ok = jpeg_with(0, true);
  CHECK(ddpm::io::detail::jpeg_hazard(std::as_bytes(std::span(ok))) == nullptr);
  // The file the fuzzer found (no DQT at all) is refused by name.
  const auto found = std::filesystem::path(DDPM_SOURCE_DIR) /
                     "tests/fuzz/corpus/image/crash_fuzzer_jpeg_undefined_quant_5d7347e1.jpg";
  DDPM_CHECK_IO_ERROR(ddpm::io::read_image(found, 3), found.string(), "quantization table");
}
