// SPDX-License-Identifier: MIT
// Tests for ddpm/io/types.hpp: the [0, 255] -> [-1, 1] mapping and checked multiplication.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "ddpm/io/types.hpp"

TEST_CASE("types: to_float_pm1 maps 0 -> -1, 255 -> 1, as x / 127.5 - 1 in float") {
  std::vector<std::uint8_t> px(256);
  for (int i = 0; i < 256; ++i) px[std::size_t(i)] = std::uint8_t(i);
  const std::vector<float> f = ddpm::io::to_float_pm1(px);
  REQUIRE(f.size() == 256);
  CHECK(f[0] == -1.0f);
  CHECK(f[255] == 1.0f);
  for (int i = 0; i < 256; ++i) CHECK(f[std::size_t(i)] == float(i) / 127.5f - 1.0f);  // bit-exact
  CHECK(ddpm::io::to_float_pm1({}).empty());
}

TEST_CASE("types: checked_mul detects overflow") {
  std::size_t out = 0;
  CHECK(ddpm::io::detail::checked_mul(3, 4, out));
  CHECK(out == 12);
  CHECK(ddpm::io::detail::checked_mul(0, std::numeric_limits<std::size_t>::max(), out));
  CHECK(out == 0);
  CHECK_FALSE(ddpm::io::detail::checked_mul(std::size_t{1} << 33, std::size_t{1} << 33, out));
}
