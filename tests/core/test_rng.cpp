// Tests for ddpm/core/rng.hpp: Philox known answers, distribution sanity, determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ddpm/core/rng.hpp"

using ddpm::Philox4x32;
using ddpm::Rng;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  // Random123 kat_vectors: counter (4 words), key (2 words) -> output (4 words).
  CHECK(Philox4x32::block({0, 0, 0, 0}, {0, 0}) ==
        Philox4x32::Counter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(Philox4x32::block({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                          {0xffffffff, 0xffffffff}) ==
        Philox4x32::Counter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(Philox4x32::block({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                          {0xa4093822, 0x299f31d0}) ==
        Philox4x32::Counter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("Rng normals: moments of a large sample") {
  Rng rng{42};
  const std::size_t n = 400000;
  std::vector<double> z(n);
  rng.fill_normal(z.data(), n, 3);
  double m = 0, v = 0, k = 0;
  for (double x : z) m += x;
  m /= n;
  for (double x : z) {
    v += (x - m) * (x - m);
    k += std::pow(x - m, 4);
  }
  v /= n;
  k /= n * v * v;
  CHECK(std::abs(m) < 0.01);          // std error 0.0016
  CHECK(std::abs(v - 1.0) < 0.01);    // std error 0.0022
  CHECK(std::abs(k - 3.0) < 0.05);    // kurtosis of a normal
}

TEST_CASE("Rng: a value depends only on (seed, stream, index), not on how it is drawn") {
  Rng rng{7};
  std::vector<float> all(103);
  rng.fill_normal(all.data(), all.size(), 5, 10);
  // The same values drawn one by one, and from an offset that is not a multiple of 4.
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i] == float(rng.normal(5, 10 + i)));
  std::vector<float> part(50);
  rng.fill_normal(part.data(), part.size(), 5, 10 + 33);
  for (std::size_t i = 0; i < part.size(); ++i) CHECK(part[i] == all[33 + i]);
  // Other streams and seeds differ.
  CHECK(rng.normal(5, 10) != rng.normal(6, 10));
  CHECK(Rng{8}.normal(5, 10) != rng.normal(5, 10));
}

TEST_CASE("Rng uniforms lie strictly between 0 and 1 and below(n) covers 0 to n-1") {
  Rng rng{1};
  std::vector<int> hist(10, 0);
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const double u = rng.uniform(9, i);
    REQUIRE(u > 0.0);
    REQUIRE(u < 1.0);
    const auto b = rng.below(10, 9, i);
    REQUIRE(b < 10);
    ++hist[b];
  }
  for (int h : hist) CHECK(std::abs(h - 10000) < 500);
}
