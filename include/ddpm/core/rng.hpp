// SPDX-License-Identifier: MIT
// ddpm/core/rng.hpp — counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Every random number in ddpm is a pure function of (seed, stream, index): there is no hidden
// generator state, so the same numbers come out for any thread count, any chunking and on any
// backend (the CUDA kernels include this header), and a resumed run only needs the step counter.
//
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (block low, block high, stream low, stream high), block = index / 4
//   uniform = ((u32 >> 8) + 0.5) * 2^-24   in (0, 1), never 0 or 1
//   normal  = Box-Muller on the two uniforms of each half block, evaluated in double and rounded
//             to the output type (so the CPU and CUDA values agree except in the rare case where
//             the two libm's double results round to different floats).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "ddpm/config.hpp"

namespace ddpm {

struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  /// One Philox4x32-10 block. Known-answer vectors from the Random123 distribution are checked
  /// in tests/core/test_rng.cpp.
  DDPM_HOST_DEVICE static void block(const std::uint32_t* ctr_in, const std::uint32_t* key_in,
                                     std::uint32_t* out) {
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    std::uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    std::uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += w0;
        k1 += w1;
      }
      const std::uint64_t p0 = std::uint64_t(m0) * c0;
      const std::uint64_t p1 = std::uint64_t(m1) * c2;
      const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
      const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
  }

  static Counter block(const Counter& c, const Key& k) {
    Counter out{};
    block(c.data(), k.data(), out.data());
    return out;
  }
};

/// Well-known streams. A stream is a 64-bit number; ddpm composes it from a purpose tag in the
/// top 8 bits and a step or sample counter below, so draws for different purposes never overlap.
namespace rng_stream {
inline constexpr std::uint64_t make(std::uint64_t purpose, std::uint64_t counter) noexcept {
  return (purpose << 56) ^ (counter & 0x00FFFFFFFFFFFFFFull);
}
inline constexpr std::uint64_t init = 1;         // weight initialisation (counter = parameter #)
inline constexpr std::uint64_t train_t = 2;      // training timesteps (counter = step)
inline constexpr std::uint64_t train_noise = 3;  // training noise (counter = step)
inline constexpr std::uint64_t label_drop = 4;   // classifier-free label drop (counter = step)
inline constexpr std::uint64_t dropout = 5;      // dropout masks (counter = step*1024 + layer)
inline constexpr std::uint64_t shuffle = 6;      // data order (counter = epoch)
inline constexpr std::uint64_t sample_init = 7;  // x_T of sampling
inline constexpr std::uint64_t sample_step = 8;  // per-step sampler noise (counter = step index)
inline constexpr std::uint64_t augment = 9;      // data augmentation (counter = step)
inline constexpr std::uint64_t user = 200;       // free for applications
}  // namespace rng_stream

/// Counter-based generator: a seed plus pure functions of (stream, index).
struct Rng {
  std::uint64_t seed = 0;

  DDPM_HOST_DEVICE static void bits4(std::uint64_t seed, std::uint64_t stream, std::uint64_t block,
                                     std::uint32_t* out) {
    const std::uint32_t ctr[4] = {std::uint32_t(block), std::uint32_t(block >> 32),
                                  std::uint32_t(stream), std::uint32_t(stream >> 32)};
    const std::uint32_t key[2] = {std::uint32_t(seed), std::uint32_t(seed >> 32)};
    Philox4x32::block(ctr, key, out);
  }
  /// Uniform in (0, 1) from 32 random bits (24 significant bits, centred).
  DDPM_HOST_DEVICE static double to_uniform(std::uint32_t x) {
    return (double(x >> 8) + 0.5) * (1.0 / 16777216.0);
  }
  /// Box-Muller: the pair (u1, u2) gives two normals (cos branch, sin branch).
  DDPM_HOST_DEVICE static void box_muller(std::uint32_t a, std::uint32_t b, double& z0, double& z1) {
    const double u1 = to_uniform(a), u2 = to_uniform(b);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double th = 6.283185307179586476925 * u2;
    z0 = r * std::cos(th);
    z1 = r * std::sin(th);
  }

  /// The index-th 32-bit word of a stream.
  [[nodiscard]] DDPM_HOST_DEVICE std::uint32_t bits(std::uint64_t stream, std::uint64_t index) const {
    std::uint32_t o[4];
    bits4(seed, stream, index / 4, o);
    return o[index % 4];
  }
  /// The index-th uniform in (0, 1) of a stream.
  [[nodiscard]] DDPM_HOST_DEVICE double uniform(std::uint64_t stream, std::uint64_t index) const {
    return to_uniform(bits(stream, index));
  }
  /// The index-th standard normal of a stream.
  [[nodiscard]] DDPM_HOST_DEVICE double normal(std::uint64_t stream, std::uint64_t index) const {
    std::uint32_t o[4];
    bits4(seed, stream, index / 4, o);
    const unsigned lane = unsigned(index % 4);
    double z0, z1;
    if (lane < 2)
      box_muller(o[0], o[1], z0, z1);
    else
      box_muller(o[2], o[3], z0, z1);
    return (lane % 2 == 0) ? z0 : z1;
  }
  /// Fills out[0..count) with the normals index0 .. index0+count-1 of a stream (host only).
  template <class T>
  void fill_normal(T* out, std::size_t count, std::uint64_t stream, std::uint64_t index0 = 0) const {
    std::size_t i = 0;
    while (i < count) {
      const std::uint64_t idx = index0 + i;
      if (idx % 4 == 0 && i + 4 <= count) {
        std::uint32_t o[4];
        bits4(seed, stream, idx / 4, o);
        double z0, z1, z2, z3;
        box_muller(o[0], o[1], z0, z1);
        box_muller(o[2], o[3], z2, z3);
        out[i] = T(z0);
        out[i + 1] = T(z1);
        out[i + 2] = T(z2);
        out[i + 3] = T(z3);
        i += 4;
      } else {
        out[i] = T(normal(stream, idx));
        ++i;
      }
    }
  }
  /// Uniform integer in [0, n) (n > 0), by 64-bit multiply-shift of two words: bias < 2^-32 n.
  [[nodiscard]] DDPM_HOST_DEVICE std::uint64_t below(std::uint64_t n, std::uint64_t stream,
                                                     std::uint64_t index) const {
    std::uint32_t o[4];
    bits4(seed, stream, index / 2, o);
    const unsigned half = unsigned(index % 2) * 2;
    const std::uint64_t r = (std::uint64_t(o[half]) << 32) | o[half + 1];
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;
    return std::uint64_t(u128(r) * n >> 64);
#else
    return r % n;
#endif
  }
};

}  // namespace ddpm
