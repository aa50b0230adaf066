// SPDX-License-Identifier: MIT
// Tests for ddpm/io/idx.hpp: IDX round trips (raw and gzip), every rejection, MNIST folders.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/io/idx.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::IdxArray;
using ddpm::io::test::read_bytes;
using ddpm::io::test::TempDir;
using ddpm::io::test::write_bytes;

namespace {

using Bytes = std::vector<std::uint8_t>;

/// gzip-compresses bytes (one member).
Bytes gzip(const Bytes& in) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&zs, uLong(in.size())) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = uInt(in.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

/// The bytes of an IDX file: 00 00 type ndim, big-endian dims, then `data`.
Bytes idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes b{0, 0, type, std::uint8_t(dims.size())};
  for (const std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes iota_bytes(std::size_t n, std::uint8_t start = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::uint8_t(start + i * 7);
  return b;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("idx: write/read round-trips 1..4 dimensions, raw and gzip") {
  TempDir dir;
  const std::vector<std::vector<std::size_t>> shapes{{5},          {3, 4}, {2, 3, 4},
                                                     {2, 3, 4, 3}, {0},    {2, 0, 5}};
  for (const auto& dims : shapes)
    for (const bool gz : {false, true}) {
      CAPTURE(dims.size());
      CAPTURE(gz);
      std::size_t n = 1;
      for (auto d : dims) n *= d;
      const IdxArray a{dims, iota_bytes(n, 3)};
      const auto p = dir / "a.idx";
      ddpm::io::write_idx(p, a, gz);
      const Bytes raw = read_bytes(p);
      if (gz) {
        CHECK((raw[0] == 0x1f && raw[1] == 0x8b));
      } else {
        CHECK(raw.size() == 4 + 4 * dims.size() + n);
        CHECK((raw[0] == 0 && raw[1] == 0 && raw[2] == 8 && raw[3] == dims.size()));
      }
      const IdxArray b = ddpm::io::read_idx(p);
      CHECK(b.dims == a.dims);
      CHECK(b.data == a.data);
    }
}

TEST_CASE("idx: gzip is detected by its magic bytes, not by the file name") {
  TempDir dir;
  const Bytes file = idx_bytes(8, {2, 2}, {1, 2, 3, 4});
  write_bytes(dir / "looks_raw.idx", gzip(file));
  write_bytes(dir / "looks_gz.gz", file);
  CHECK(ddpm::io::read_idx(dir / "looks_raw.idx").data == Bytes{1, 2, 3, 4});
  CHECK(ddpm::io::read_idx(dir / "looks_gz.gz").data == Bytes{1, 2, 3, 4});
}

TEST_CASE("idx: concatenated gzip members are read as one stream") {
  TempDir dir;
  const Bytes file = idx_bytes(8, {6}, {10, 11, 12, 13, 14, 15});
  const Bytes first(file.begin(), file.begin() + 7), second(file.begin() + 7, file.end());
  write_bytes(dir / "multi.gz", concat(gzip(first), gzip(second)));
  const IdxArray a = ddpm::io::read_idx(dir / "multi.gz");
  CHECK(a.dims == std::vector<std::size_t>{6});
  CHECK(a.data == Bytes{10, 11, 12, 13, 14, 15});
}

TEST_CASE("idx: gzip output is reproducible") {
  TempDir dir;
  const IdxArray a{{4, 4}, iota_bytes(16)};
  ddpm::io::write_idx(dir / "x.gz", a, true);
  ddpm::io::write_idx(dir / "y.gz", a, true);
  CHECK(read_bytes(dir / "x.gz") == read_bytes(dir / "y.gz"));
}

TEST_CASE("idx: malformed raw files are rejected with the file name and the problem") {
  TempDir dir;
  auto check = [&](const std::string& name, const Bytes& bytes, const std::string& problem) {
    const auto p = dir / name;
    write_bytes(p, bytes);
    CAPTURE(name);
    DDPM_CHECK_IO_ERROR(ddpm::io::read_idx(p), p.string(), problem);
    // parse_idx (used by the fuzzer) rejects the same bytes the same way.
    DDPM_CHECK_IO_ERROR(ddpm::io::parse_idx(ddpm::io::test::as_bytes(bytes), "mem"), "mem",
                        problem);
  };
  check("empty", {}, "truncated: 0 bytes");
  check("short", {0, 0, 8}, "truncated");
  check("png", {0x89, 'P', 'N', 'G', 13, 10, 26, 10}, "bad magic 89 50 4e 47");
  check("float", idx_bytes(0x0D, {1}, {0, 0, 0, 0}), "unsupported IDX data type 0x0d (float32)");
  check("int32", idx_bytes(0x0C, {1}, {0, 0, 0, 0}), "unsupported IDX data type 0x0c (int32)");
  check("rank0", {0, 0, 8, 0}, "unsupported IDX rank 0");
  check("rank5", idx_bytes(8, {1, 1, 1, 1, 1}, {9}), "unsupported IDX rank 5");
  check("dims_cut", {0, 0, 8, 3, 0, 0, 0, 2, 0, 0}, "truncated: the header declares 3 dimensions");
  check("data_cut", idx_bytes(8, {2, 3}, {1, 2, 3, 4, 5}),
        "declare 6 bytes of data, but only 5 follow");
  check("trailing", idx_bytes(8, {2}, {1, 2, 3}), "trailing garbage: 1 bytes");
  check("overflow", idx_bytes(8, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}),
        "overflow the element count");
  check("too_big", idx_bytes(8, {65536, 65536}, {}), "more than the limit of 2147483648");
  check("missing_data", idx_bytes(8, {60000, 28, 28}, {1, 2, 3}),
        "declare 47040000 bytes of data, but only 3 follow");
}

TEST_CASE("idx: malformed gzip files are rejected with the file name and the problem") {
  TempDir dir;
  auto check = [&](const std::string& name, const Bytes& bytes, const std::string& problem) {
    const auto p = dir / name;
    write_bytes(p, bytes);
    CAPTURE(name);
    DDPM_CHECK_IO_ERROR(ddpm::io::read_idx(p), p.string(), problem);
  };
  const Bytes good = gzip(idx_bytes(8, {4, 4}, iota_bytes(16)));
  check("magic_only.gz", {0x1f, 0x8b}, "truncated gzip stream");
  check("cut.gz", Bytes(good.begin(), good.end() - 6), "truncated gzip stream");
  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 6] ^= 0xFF;  // inside the CRC-32 trailer
  check("crc.gz", bad_crc, "corrupt gzip data: incorrect data check");
  Bytes bad_header = good;
  bad_header[2] = 7;  // compression method must be 8 (deflate)
  check("method.gz", bad_header, "corrupt gzip data");
  check("junk_after.gz", concat(good, {'j', 'u', 'n', 'k'}),
        "trailing garbage: 4 bytes after the gzip stream");
  check("longer.gz", gzip(idx_bytes(8, {2}, {1, 2, 3})),
        "decompressed data is longer than the header declares");
  check("shorter.gz", gzip(idx_bytes(8, {2, 3}, {1, 2, 3})),
        "declare 6 bytes of data, but only 3 follow");
  check("not_idx.gz", gzip({'h', 'e', 'l', 'l', 'o'}), "bad magic 68 65 6c 6c");
  check("tiny.gz", gzip({0, 0}), "truncated: 2 bytes");
  check("type.gz", gzip(idx_bytes(0x0E, {1}, Bytes(8))), "(float64)");
  // A 30-byte gzip file cannot hold 1 GB: rejected before allocating.
  check("liar.gz", gzip(idx_bytes(8, {1000, 1000, 1000}, {})), "but the file can hold at most");
}

TEST_CASE("idx: missing files name the path") {
  TempDir dir;
  const auto p = dir / "nope-images-idx3-ubyte";
  DDPM_CHECK_IO_ERROR(ddpm::io::read_idx(p), p.string(), "No such file or directory");
}

TEST_CASE("idx: write_idx rejects inconsistent arrays as parameter errors") {
  TempDir dir;
  const auto p = dir / "bad.idx";
  CHECK_THROWS_AS(ddpm::io::write_idx(p, IdxArray{{}, {}}), std::invalid_argument);
  CHECK_THROWS_AS(ddpm::io::write_idx(p, IdxArray{{1, 1, 1, 1, 1}, {1}}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ddpm::io::write_idx(p, IdxArray{{2, 2}, {1, 2, 3}}),
                       doctest::Contains("has 3 bytes but the dims 2 x 2 need 4"),
                       std::invalid_argument);
  CHECK_THROWS_AS(ddpm::io::write_idx(p, IdxArray{{std::size_t{1} << 32}, {}}),
                  std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(p));
}

TEST_CASE("idx: load_idx_images turns idx3 into c = 1 and idx4 (N, H, W, C) into NCHW") {
  TempDir dir;
  SUBCASE("idx3 with labels") {
    ddpm::io::write_idx(dir / "img", IdxArray{{3, 2, 2}, iota_bytes(12)});
    ddpm::io::write_idx(dir / "lab", IdxArray{{3}, {7, 0, 9}}, true);
    const auto ds = ddpm::io::load_idx_images(dir / "img", dir / "lab");
    CHECK((ds.n == 3 && ds.c == 1 && ds.h == 2 && ds.w == 2));
    CHECK(ds.pixels == iota_bytes(12));
    CHECK(ds.labels == std::vector<std::int32_t>{7, 0, 9});
  }
  SUBCASE("idx4 RGB, no labels") {
    // Two 1x2 RGB images in (N, H, W, C): pixel values encode (n, x, c) as 100n + 10x + c.
    const Bytes nhwc{0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112};
    ddpm::io::write_idx(dir / "rgb", IdxArray{{2, 1, 2, 3}, nhwc});
    const auto ds = ddpm::io::load_idx_images(dir / "rgb");
    CHECK((ds.n == 2 && ds.c == 3 && ds.h == 1 && ds.w == 2));
    CHECK(ds.pixels == Bytes{0, 10, 1, 11, 2, 12, 100, 110, 101, 111, 102, 112});
    CHECK(ds.labels.empty());
  }
}

TEST_CASE("idx: load_idx_images rejects wrong ranks, empty sets and mismatched labels") {
  TempDir dir;
  ddpm::io::write_idx(dir / "img", IdxArray{{3, 2, 2}, iota_bytes(12)});
  ddpm::io::write_idx(dir / "flat", IdxArray{{3, 4}, iota_bytes(12)});
  ddpm::io::write_idx(dir / "none", IdxArray{{0, 28, 28}, {}});
  ddpm::io::write_idx(dir / "zero_w", IdxArray{{2, 3, 0}, {}});
  ddpm::io::write_idx(dir / "c5", IdxArray{{1, 1, 1, 5}, iota_bytes(5)});
  ddpm::io::write_idx(dir / "lab2", IdxArray{{2}, {1, 2}});
  ddpm::io::write_idx(dir / "lab_2d", IdxArray{{3, 1}, {1, 2, 3}});
  const std::string img = (dir / "img").string();
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "flat"), (dir / "flat").string(),
                      "expected images as a 3-d (N, H, W) or 4-d (N, H, W, C) IDX array, got 2-d");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "none"), (dir / "none").string(),
                      "holds no images");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "zero_w"), (dir / "zero_w").string(),
                      "zero-sized images");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "c5"), (dir / "c5").string(), "5 channels");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "img", dir / "lab2"), (dir / "lab2").string(),
                      "holds 2 labels but " + img + " holds 3 images");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "img", dir / "lab_2d"),
                      (dir / "lab_2d").string(), "expected labels as a 1-d IDX array, got 2-d");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_idx_images(dir / "img", dir / "missing"),
                      (dir / "missing").string(), "No such file or directory");
}

TEST_CASE("idx: load_mnist_dir finds raw and .gz files by split and lists what it looked for") {
  TempDir dir;
  ddpm::io::write_idx(dir / "train-images-idx3-ubyte", IdxArray{{2, 2, 2}, iota_bytes(8)});
  ddpm::io::write_idx(dir / "train-labels-idx1-ubyte", IdxArray{{2}, {4, 5}});
  ddpm::io::write_idx(dir / "t10k-images-idx3-ubyte.gz", IdxArray{{1, 2, 2}, iota_bytes(4)}, true);
  ddpm::io::write_idx(dir / "t10k-labels-idx1-ubyte.gz", IdxArray{{1}, {3}}, true);

  const auto train = ddpm::io::load_mnist_dir(dir.path(), "train");
  CHECK((train.n == 2 && train.c == 1 && train.labels == std::vector<std::int32_t>{4, 5}));
  const auto test = ddpm::io::load_mnist_dir(dir.path(), "t10k");
  CHECK((test.n == 1 && test.labels == std::vector<std::int32_t>{3}));

  const std::string d = dir.path().string();
  DDPM_CHECK_IO_ERROR(ddpm::io::load_mnist_dir(dir.path(), "valid"), d,
                      "no images for split 'valid': looked for valid-images-idx3-ubyte[.gz], "
                      "valid-images-idx4-ubyte[.gz], valid-images.idx3-ubyte[.gz]");
  std::filesystem::remove(dir / "train-labels-idx1-ubyte");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_mnist_dir(dir.path(), "train"), d,
                      "no labels for split 'train': looked for train-labels-idx1-ubyte[.gz]");
  CHECK(ddpm::io::load_mnist_dir(dir.path(), "train", /*require_labels=*/false).labels.empty());

  const auto missing = dir / "not_there";
  DDPM_CHECK_IO_ERROR(ddpm::io::load_mnist_dir(missing), missing.string(), "folder does not exist");
  DDPM_CHECK_IO_ERROR(ddpm::io::load_mnist_dir(dir / "t10k-images-idx3-ubyte.gz"),
                      (dir / "t10k-images-idx3-ubyte.gz").string(), "is not a folder");
  CHECK_THROWS_AS((void)ddpm::io::load_mnist_dir(dir.path(), ""), std::invalid_argument);
  CHECK_THROWS_AS((void)ddpm::io::load_mnist_dir(dir.path(), "../train"), std::invalid_argument);
}
