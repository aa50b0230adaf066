// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/simd.hpp — xsimd helpers of the CPU backend: VMath for batches (so the target
// and loss policies run vectorised), span loops whose tail goes through the same batch code
// (so an element's result never depends on where a chunk boundary falls), exp/sigmoid/SiLU,
// lane-exact float sums accumulated in double, and the AVX2 kernels xsimd 8.1 has no portable
// spelling for (Philox on 8 lanes, lane duplication and pairwise sums). Without AVX2 those
// kernels have scalar fallbacks; xsimd picks whatever SIMD the translation unit is compiled for.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "ddpm/config.hpp"
#include "ddpm/core/policy.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/vmath.hpp"
#include "ddpm/detail/third_party.hpp"

/// Forces the inlining of the element lambdas that span loops call (GCC otherwise keeps large
/// ones, such as SiLU's, out of line: a call per batch and constants reloaded every time).
#if defined(__GNUC__) || defined(__clang__)
#define DDPM_SIMD_LAMBDA __attribute__((always_inline))
#else
#define DDPM_SIMD_LAMBDA
#endif

#if defined(__AVX2__)
#include <immintrin.h>
#define DDPM_CPU_SIMD_AVX2 1
#else
#define DDPM_CPU_SIMD_AVX2 0
#endif

namespace ddpm::detail {

/// VMath for xsimd batches, with the scalar semantics of VMath<float> lane by lane, NaN included:
/// min(a, b) = b < a ? b : a, max(a, b) = a < b ? b : a, sign(0) = sign(NaN) = 0. The one
/// difference: abs(-0) is +0 here (the sign bit is cleared), -0 in the scalar version.
template <class T, class A>
struct VMath<xsimd::batch<T, A>> {
  using V = xsimd::batch<T, A>;
  static V abs(V x) { return xsimd::abs(x); }
  static V min(V a, V b) { return xsimd::select(b < a, b, a); }
  static V max(V a, V b) { return xsimd::select(a < b, b, a); }
  static V clamp(V x, V lo, V hi) { return min(max(x, lo), hi); }
  static V sign(V x) {
    return xsimd::select(x > V(T(0)), V(T(1)), V(T(0))) - xsimd::select(x < V(T(0)), V(T(1)), V(T(0)));
  }
};

/// Float functions applied lane by lane to an xsimd float batch (a policy written for float only).
template <class A>
struct Lanes<xsimd::batch<float, A>> {
  using V = xsimd::batch<float, A>;
  template <class F, class... X>
  static V map(F&& f, const X&... x) {
    alignas(64) float in[sizeof...(X)][V::size];
    std::size_t k = 0;
    ((x.store_aligned(in[k++])), ...);
    alignas(64) float out[V::size];
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      for (std::size_t l = 0; l < V::size; ++l) out[l] = f(in[I][l]...);
    }(std::index_sequence_for<X...>{});
    return V::load_aligned(out);
  }
};

}  // namespace ddpm::detail

namespace ddpm::detail::cpu {

/// The xsimd architecture of the backend's element loops: AVX2 (8 lanes) whenever the translation
/// unit has AVX2, also when it enables AVX-512 (-march=x86-64-v4, -march=native on Zen 4/5 or a
/// Xeon). The lane count is part of the results (sums run in simd_width float lanes), so one
/// width everywhere keeps every build bitwise the same; the AVX-512 kernels of the GEMM and the
/// convolutions are chosen at run time instead (backend/cpu/isa.hpp). Without AVX2, xsimd's
/// default (SSE, NEON, ... or scalar) and the scalar fallbacks below.
#if DDPM_CPU_SIMD_AVX2
using simd_arch = xsimd::avx2;
#else
using simd_arch = xsimd::default_arch;
#endif
using fbatch = xsimd::batch<float, simd_arch>;
inline constexpr std::size_t simd_width = fbatch::size;

// ------------------------------------------------------------------ loads and stores
#if DDPM_CPU_SIMD_AVX2
static_assert(simd_width == 8, "ddpm: the AVX2 batch<float> is not 8 wide");
/// Lane mask of the first n (<= 8) lanes.
DDPM_ALWAYS_INLINE __m256i first_lanes(std::size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

/// The first n (< simd_width) floats at p, the other lanes zero (p + n may be the end of memory).
DDPM_ALWAYS_INLINE fbatch load_partial(const float* p, std::size_t n) {
#if DDPM_CPU_SIMD_AVX2
  return _mm256_maskload_ps(p, first_lanes(n));
#else
  alignas(64) float buf[simd_width] = {};
  for (std::size_t i = 0; i < n; ++i) buf[i] = p[i];
  return fbatch::load_aligned(buf);
#endif
}
/// Stores the first n (< simd_width) lanes of v at p. (Not vmaskmovps: masked stores are
/// microcoded and slow on AMD Zen; at most three plain stores of 4, 2 and 1 lanes instead.)
DDPM_ALWAYS_INLINE void store_partial(fbatch v, float* p, std::size_t n) {
#if DDPM_CPU_SIMD_AVX2
  const __m256 w = v;
  __m128 part = _mm256_castps256_ps128(w);
  if (n & 4) {
    _mm_storeu_ps(p, part);
    part = _mm256_extractf128_ps(w, 1);
    p += 4;
  }
  if (n & 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
    part = _mm_movehl_ps(part, part);
    p += 2;
  }
  if (n & 1) _mm_store_ss(p, part);
#else
  alignas(64) float buf[simd_width];
  v.store_aligned(buf);
  for (std::size_t i = 0; i < n; ++i) p[i] = buf[i];
#endif
}
/// v with lanes n.. set to zero.
DDPM_ALWAYS_INLINE fbatch keep_lanes(fbatch v, std::size_t n) {
#if DDPM_CPU_SIMD_AVX2
  return _mm256_and_ps(v, _mm256_castsi256_ps(first_lanes(n)));
#else
  alignas(64) float buf[simd_width];
  v.store_aligned(buf);
  for (std::size_t i = n; i < simd_width; ++i) buf[i] = 0.0f;
  return fbatch::load_aligned(buf);
#endif
}
/// v with lanes n.. set to `fill`.
DDPM_ALWAYS_INLINE fbatch fill_lanes(fbatch v, std::size_t n, float fill) {
#if DDPM_CPU_SIMD_AVX2
  return _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(first_lanes(n)));
#else
  alignas(64) float buf[simd_width];
  v.store_aligned(buf);
  for (std::size_t i = n; i < simd_width; ++i) buf[i] = fill;
  return fbatch::load_aligned(buf);
#endif
}

/// Lane count of a full batch as a type, so that loop bodies written once for full batches and
/// for the tail compile the full case without branches.
using full_t = std::integral_constant<std::size_t, simd_width>;

/// Loads `count` floats (all simd_width when count is full_t, else count < simd_width, rest 0).
template <class N>
DDPM_ALWAYS_INLINE fbatch load_n(const float* p, N count) {
  if constexpr (std::is_same_v<N, full_t>) {
    return fbatch::load_unaligned(p);
  } else {
    return load_partial(p, count);
  }
}
/// Stores `count` lanes (see load_n).
template <class N>
DDPM_ALWAYS_INLINE void store_n(fbatch v, float* p, N count) {
  if constexpr (std::is_same_v<N, full_t>) {
    v.store_unaligned(p);
  } else {
    store_partial(v, p, count);
  }
}
/// v, or v with the lanes past `count` zeroed (see load_n).
template <class N>
DDPM_ALWAYS_INLINE fbatch valid_n(fbatch v, N count) {
  if constexpr (std::is_same_v<N, full_t>) {
    return v;
  } else {
    return keep_lanes(v, count);
  }
}

/// Calls body(i, full_t{}) for each full batch of [0, n), then body(i, n - i) for the tail.
template <class Body>
DDPM_ALWAYS_INLINE void for_lanes(std::size_t n, Body&& body) {
  std::size_t i = 0;
  for (; i + simd_width <= n; i += simd_width) body(i, full_t{});
  if (i < n) body(i, n - i);
}

/// Largest lane, folded left to right as std::max (a < b ? b : a).
DDPM_ALWAYS_INLINE float reduce_max(fbatch v) {
  alignas(64) float buf[simd_width];
  v.store_aligned(buf);
  float m = buf[0];
  for (std::size_t i = 1; i < simd_width; ++i) m = m < buf[i] ? buf[i] : m;
  return m;
}

// ------------------------------------------------------------------ span loops
/// out[i] = f(in[i]...) for i in [0, n), f: (fbatch...) -> fbatch. The tail (n % simd_width
/// elements) runs through the same batch code on a zero-padded copy, so every element gets the
/// same arithmetic wherever it sits. out may alias an input (element-wise).
template <class F, class... In>
DDPM_ALWAYS_INLINE void map_span(std::size_t n, F&& f, float* out, const In*... in) {
  constexpr std::size_t W = simd_width;
  std::size_t i = 0;
  for (; i + W <= n; i += W) f(fbatch::load_unaligned(in + i)...).store_unaligned(out + i);
  if (i < n) store_partial(f(load_partial(in + i, n - i)...), out + i, n - i);
}

/// Elements summed in float lanes before the lanes are added in double (32 terms per lane with
/// 4 accumulators): float-accurate blocks, double-accurate totals.
inline constexpr std::size_t sum_block = 32 * 4 * simd_width;

/// Accumulates batches of float terms: add() in float lanes, flush() adds the lanes to double
/// lanes (call it every sum_block elements or so). Deterministic: depends only on the call order.
class LaneSum {
 public:
  DDPM_ALWAYS_INLINE void add(fbatch v) { acc_ += v; }
  /// The float lanes not yet flushed (for kernels that accumulate in the same order themselves).
  DDPM_ALWAYS_INLINE fbatch& lanes() { return acc_; }
  DDPM_ALWAYS_INLINE void flush() {
#if DDPM_CPU_SIMD_AVX2
    const __m256 a = acc_;
    total_ = _mm256_add_pd(total_, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))));
#else
    alignas(64) float lanes[simd_width];
    acc_.store_aligned(lanes);
    for (std::size_t l = 0; l < simd_width; ++l) total_ += double(lanes[l]);
#endif
    acc_ = fbatch(0.0f);
  }
  /// Flushes and returns the total.
  [[nodiscard]] double result() {
    flush();
#if DDPM_CPU_SIMD_AVX2
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, total_);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#else
    return total_;
#endif
  }

 private:
  fbatch acc_ = fbatch(0.0f);
#if DDPM_CPU_SIMD_AVX2
  __m256d total_ = _mm256_setzero_pd();
#else
  double total_ = 0.0;
#endif
};

/// for_lanes over [0, n) in blocks of sum_block elements, calling flush() after each block. With
/// `head`, each block [b, e) first goes to head(b, e), which does a prefix [b, i) itself (a wider
/// kernel adding in body's order) and returns i; body does the rest.
template <class Head, class Body, class Flush>
DDPM_ALWAYS_INLINE void for_lanes_blocked(std::size_t n, Head&& head, Body&& body, Flush&& flush) {
  for (std::size_t b = 0; b < n; b += sum_block) {
    const std::size_t e = std::min(n, b + sum_block);
    std::size_t i = head(b, e);
    for (; i + simd_width <= e; i += simd_width) body(i, full_t{});
    if (i < e) body(i, e - i);
    flush();
  }
}
template <class Body, class Flush>
DDPM_ALWAYS_INLINE void for_lanes_blocked(std::size_t n, Body&& body, Flush&& flush) {
  for_lanes_blocked(n, [](std::size_t b, std::size_t) { return b; }, body, flush);
}

/// sum over i in [0, n) of g(in[i]...) (g: (fbatch...) -> fbatch): four float accumulators per
/// block of sum_block elements, blocks added in double lanes. Tail lanes past n contribute 0.
template <class G, class... In>
inline double sum_span(std::size_t n, G&& g, const In*... in) {
  constexpr std::size_t W = simd_width;
  LaneSum total;
  for (std::size_t b = 0; b < n; b += sum_block) {
    const std::size_t e = std::min(n, b + sum_block);
    fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    std::size_t i = b;
    for (; i + 4 * W <= e; i += 4 * W) {
      a0 += g(fbatch::load_unaligned(in + i)...);
      a1 += g(fbatch::load_unaligned(in + i + W)...);
      a2 += g(fbatch::load_unaligned(in + i + 2 * W)...);
      a3 += g(fbatch::load_unaligned(in + i + 3 * W)...);
    }
    for (; i + W <= e; i += W) a0 += g(fbatch::load_unaligned(in + i)...);
    if (i < e) a1 += keep_lanes(g(load_partial(in + i, e - i)...), e - i);
    total.add((a0 + a1) + (a2 + a3));
    total.flush();
  }
  return total.result();
}

// ------------------------------------------------------------------ exp, sigmoid, SiLU
/// e^x, Cephes-style: x clamped to [-87.34, 88.38] (so e^x of very negative x is ~1.2e-38, not 0),
/// n = round(x / ln 2) by the 1.5 * 2^23 magic-number addition (whose low mantissa bits are then
/// n + 127, i.e. the exponent field of 2^n), reduction by ln 2 in two parts, degree-5 polynomial;
/// about 1 ulp.
DDPM_ALWAYS_INLINE fbatch exp(fbatch x) {
  x = xsimd::min(xsimd::max(x, fbatch(-87.3365447504f)), fbatch(88.3762626647949f));
  const fbatch magic(12582912.0f + 127.0f);  // 1.5 * 2^23 + exponent bias
  const fbatch t = xsimd::fma(x, fbatch(1.44269504088896341f), magic);
  const fbatch fx = t - magic;
  fbatch r = xsimd::fnma(fx, fbatch(0.693359375f), x);
  r = xsimd::fnma(fx, fbatch(-2.12194440e-4f), r);
  fbatch y(1.9875691500e-4f);
  y = xsimd::fma(y, r, fbatch(1.3981999507e-3f));
  y = xsimd::fma(y, r, fbatch(8.3334519073e-3f));
  y = xsimd::fma(y, r, fbatch(4.1665795894e-2f));
  y = xsimd::fma(y, r, fbatch(1.6666665459e-1f));
  y = xsimd::fma(y, r, fbatch(5.0000001201e-1f));
  y = xsimd::fma(y, r * r, r) + fbatch(1.0f);
  return y * detail::bitwise_cast<float>(detail::bitwise_cast<std::int32_t>(t) << 23);
}
/// 1 / d for d in [1, 3e38] (the denominators of sigmoid): AVX2 approximate reciprocal refined by
/// one Newton step (within 1-2 ulp, and faster than the divider); exact division elsewhere.
DDPM_ALWAYS_INLINE fbatch sigmoid_reciprocal(fbatch d) {
#if DDPM_CPU_SIMD_AVX2
  const fbatch r = _mm256_rcp_ps(d);
  // Newton converges from below and would leave 1/1 one ulp short: keep sigmoid exactly 1 (and
  // SiLU exactly x) once e^-x vanishes against 1.
  return xsimd::select(d == fbatch(1.0f), fbatch(1.0f), r * xsimd::fnma(d, r, fbatch(2.0f)));
#else
  return fbatch(1.0f) / d;
#endif
}
/// 1 / (1 + e^-x)
DDPM_ALWAYS_INLINE fbatch sigmoid(fbatch x) { return sigmoid_reciprocal(fbatch(1.0f) + exp(-x)); }
/// x sigmoid(x)
DDPM_ALWAYS_INLINE fbatch silu(fbatch x) { return x * sigmoid(x); }
/// d/dz z sigmoid(z) = s (1 + z (1 - s))
DDPM_ALWAYS_INLINE fbatch silu_grad(fbatch z) {
  const fbatch s = sigmoid(z);
  return s * xsimd::fma(z, fbatch(1.0f) - s, fbatch(1.0f));
}

// ------------------------------------------------------------------ dropout keep masks
/// Smallest 24-bit k with Rng::to_uniform(k << 8) >= p, so that keep_i <=> (bits_i >> 8) >= k
/// exactly as the reference's `uniform(stream, i) >= p` (clamped to [0, 2^24]).
inline std::uint32_t dropout_threshold(double p) {
  constexpr double scale = 16777216.0;
  double t = std::ceil(p * scale - 0.5);
  if (!(t > 0.0)) t = 0.0;
  if (t > scale) t = scale;
  auto k = std::uint32_t(t);
  const auto uniform_of = [](std::uint32_t q) { return (double(q) + 0.5) * (1.0 / 16777216.0); };
  while (k > 0 && uniform_of(k - 1) >= p) --k;
  while (k < (1u << 24) && !(uniform_of(k) >= p)) ++k;
  return k;
}

#if DDPM_CPU_SIMD_AVX2
/// Philox4x32-10 of the 8 consecutive blocks 8 g .. 8 g + 7 of a stream, for G groups g at once
/// (independent dependency chains, so the multiplier latency overlaps), turned into dropout keep
/// masks in element order: mask[4 j + q] covers elements 32 g_j + 8 q .. 32 g_j + 8 q + 7.
template <int G>
DDPM_ALWAYS_INLINE void philox_keep_masks(const Rng& rng, std::uint64_t stream,
                                          const std::uint64_t* group, std::uint32_t threshold,
                                          __m256 mask[4 * G]) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i c0[G], c1[G], c2[G], c3[G];
  for (int j = 0; j < G; ++j) {
    // block 8 g is a multiple of 8, so adding the lane index never carries out of the low word.
    const std::uint64_t block0 = group[j] * 8;
    c0[j] = _mm256_add_epi32(_mm256_set1_epi32(std::int32_t(std::uint32_t(block0))), lane);
    c1[j] = _mm256_set1_epi32(std::int32_t(std::uint32_t(block0 >> 32)));
    c2[j] = _mm256_set1_epi32(std::int32_t(std::uint32_t(stream)));
    c3[j] = _mm256_set1_epi32(std::int32_t(std::uint32_t(stream >> 32)));
  }
  __m256i k0 = _mm256_set1_epi32(std::int32_t(std::uint32_t(rng.seed)));
  __m256i k1 = _mm256_set1_epi32(std::int32_t(std::uint32_t(rng.seed >> 32)));
  const __m256i m0 = _mm256_set1_epi32(std::int32_t(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(std::int32_t(0xCD9E8D57u));
  const __m256i w0 = _mm256_set1_epi32(std::int32_t(0x9E3779B9u));
  const __m256i w1 = _mm256_set1_epi32(std::int32_t(0xBB67AE85u));
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 = _mm256_add_epi32(k0, w0);
      k1 = _mm256_add_epi32(k1, w1);
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
    for (int j = 0; j < G; ++j) {
      // 32x32 -> 64-bit products of the even lanes, then of the odd lanes (shifted down).
      const __m256i e0 = _mm256_mul_epu32(c0[j], m0);
      const __m256i o0 = _mm256_mul_epu32(_mm256_srli_epi64(c0[j], 32), m0);
      const __m256i e1 = _mm256_mul_epu32(c2[j], m1);
      const __m256i o1 = _mm256_mul_epu32(_mm256_srli_epi64(c2[j], 32), m1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_shuffle_epi32(e0, 0xF5), o0, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_shuffle_epi32(o0, 0xA0), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_shuffle_epi32(e1, 0xF5), o1, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_shuffle_epi32(o1, 0xA0), 0xAA);
      c0[j] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[j]), k0);
      c1[j] = lo1;
      c2[j] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[j]), k1);
      c3[j] = lo0;
    }
  }
  // keep <=> (word >> 8) >= threshold; then a 4x8 transpose (block l, word w -> element 4 l + w).
  const __m256i tm1 = _mm256_set1_epi32(std::int32_t(threshold) - 1);
  for (int j = 0; j < G; ++j) {
    const __m256i a = _mm256_cmpgt_epi32(_mm256_srli_epi32(c0[j], 8), tm1);
    const __m256i b = _mm256_cmpgt_epi32(_mm256_srli_epi32(c1[j], 8), tm1);
    const __m256i c = _mm256_cmpgt_epi32(_mm256_srli_epi32(c2[j], 8), tm1);
    const __m256i d = _mm256_cmpgt_epi32(_mm256_srli_epi32(c3[j], 8), tm1);
    const __m256i t0 = _mm256_unpacklo_epi32(a, b), t1 = _mm256_unpackhi_epi32(a, b);
    const __m256i t2 = _mm256_unpacklo_epi32(c, d), t3 = _mm256_unpackhi_epi32(c, d);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    mask[4 * j + 0] = _mm256_castsi256_ps(_mm256_permute2x128_si256(u0, u1, 0x20));
    mask[4 * j + 1] = _mm256_castsi256_ps(_mm256_permute2x128_si256(u2, u3, 0x20));
    mask[4 * j + 2] = _mm256_castsi256_ps(_mm256_permute2x128_si256(u0, u1, 0x31));
    mask[4 * j + 3] = _mm256_castsi256_ps(_mm256_permute2x128_si256(u2, u3, 0x31));
  }
}
#endif

/// Dropout of `count` elements starting at element 32 g0 of a stream (g0 = first group):
/// y[j] = keep_j ? x[j] * s : 0 (acc: y[j] += ...), keep_j = (Philox word of element j >> 8) >=
/// threshold, i.e. exactly the reference's uniform(stream, j) >= p. The mask is made on the fly
/// (AVX2: 8 Philox blocks per vector, two groups of 32 elements interleaved) and never stored; a
/// tail shorter than 32 runs the same vector code on padded copies.
inline void dropout_span(const Rng& rng, std::uint64_t stream, std::uint64_t g0,
                         std::uint32_t threshold, float s, const float* x, float* y,
                         std::size_t count, bool acc) {
#if DDPM_CPU_SIMD_AVX2
  const __m256 vs = _mm256_set1_ps(s);
  auto apply = [&](const __m256* mask, int nvec, const float* xp, float* yp) {
    for (int q = 0; q < nvec; ++q) {
      __m256 v = _mm256_and_ps(mask[q], _mm256_mul_ps(_mm256_loadu_ps(xp + 8 * q), vs));
      if (acc) v = _mm256_add_ps(_mm256_loadu_ps(yp + 8 * q), v);
      _mm256_storeu_ps(yp + 8 * q, v);
    }
  };
  std::size_t i = 0;
  std::uint64_t g = g0;
  for (; i + 64 <= count; i += 64, g += 2) {
    __m256 mask[8];
    const std::uint64_t groups[2] = {g, g + 1};
    philox_keep_masks<2>(rng, stream, groups, threshold, mask);
    apply(mask, 8, x + i, y + i);
  }
  for (; i < count; i += 32, ++g) {
    __m256 mask[4];
    philox_keep_masks<1>(rng, stream, &g, threshold, mask);
    if (i + 32 <= count) {
      apply(mask, 4, x + i, y + i);
    } else {
      const std::size_t rest = count - i;
      alignas(32) float xb[32] = {}, yb[32] = {};
      std::memcpy(xb, x + i, rest * sizeof(float));
      if (acc) std::memcpy(yb, y + i, rest * sizeof(float));
      apply(mask, 4, xb, yb);
      std::memcpy(y + i, yb, rest * sizeof(float));
    }
  }
#else
  for (std::size_t i = 0; i < count; i += 4) {
    std::uint32_t o[4];
    Rng::bits4(rng.seed, stream, g0 * 8 + i / 4, o);
    for (std::size_t w = 0; w < 4 && i + w < count; ++w) {
      const float v = (o[w] >> 8) >= threshold ? x[i + w] * s : 0.0f;
      y[i + w] = acc ? y[i + w] + v : v;
    }
  }
#endif
}

// ------------------------------------------------------------------ nearest-neighbour x2 rows
/// d0[2 i] = d0[2 i + 1] = d1[2 i] = d1[2 i + 1] = src[i] for i < n (the two output rows of one
/// input row of a nearest-neighbour x2 upsampling). AVX2: a lane permutation per 8 inputs, and
/// masked loads/stores for a tail, so short rows (W = 7) cost a handful of instructions.
DDPM_ALWAYS_INLINE void duplicate_lanes(const float* src, std::size_t n, float* d0, float* d1) {
  std::size_t i = 0;
#if DDPM_CPU_SIMD_AVX2
  const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m256i hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    const __m256 a = _mm256_permutevar8x32_ps(v, lo), b = _mm256_permutevar8x32_ps(v, hi);
    _mm256_storeu_ps(d0 + 2 * i, a);
    _mm256_storeu_ps(d0 + 2 * i + 8, b);
    _mm256_storeu_ps(d1 + 2 * i, a);
    _mm256_storeu_ps(d1 + 2 * i + 8, b);
  }
  if (i < n) {
    const std::size_t r = n - i;  // 1..7 inputs, 2..14 outputs
    const __m256 v = _mm256_maskload_ps(src + i, first_lanes(r));
    const __m256 a = _mm256_permutevar8x32_ps(v, lo), b = _mm256_permutevar8x32_ps(v, hi);
    if (2 * r >= 8) {
      _mm256_storeu_ps(d0 + 2 * i, a);
      _mm256_storeu_ps(d1 + 2 * i, a);
      if (2 * r > 8) {
        store_partial(b, d0 + 2 * i + 8, 2 * r - 8);
        store_partial(b, d1 + 2 * i + 8, 2 * r - 8);
      }
    } else {
      store_partial(a, d0 + 2 * i, 2 * r);
      store_partial(a, d1 + 2 * i, 2 * r);
    }
  }
#else
  for (; i < n; ++i) d0[2 * i] = d0[2 * i + 1] = d1[2 * i] = d1[2 * i + 1] = src[i];
#endif
}

/// out[i] (+)= (r0[2i] + r1[2i]) + (r0[2i+1] + r1[2i+1]), i < n: the 2x2 sums of the upsampling
/// backward. AVX2: vertical adds, a horizontal pair add and a lane permutation per 8 outputs; the
/// tail runs the same arithmetic with masked loads and stores.
DDPM_ALWAYS_INLINE void pair_sum_rows(const float* r0, const float* r1, std::size_t n, float* out,
                                      bool acc) {
  std::size_t i = 0;
#if DDPM_CPU_SIMD_AVX2
  const auto pairs = [](__m256 a, __m256 b) {  // [a0+a1, a2+a3, ..., b6+b7]
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_hadd_ps(a, b)), 0xD8));
  };
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_add_ps(_mm256_loadu_ps(r0 + 2 * i), _mm256_loadu_ps(r1 + 2 * i));
    const __m256 b = _mm256_add_ps(_mm256_loadu_ps(r0 + 2 * i + 8), _mm256_loadu_ps(r1 + 2 * i + 8));
    __m256 s = pairs(a, b);
    if (acc) s = _mm256_add_ps(_mm256_loadu_ps(out + i), s);
    _mm256_storeu_ps(out + i, s);
  }
  if (i < n) {
    const std::size_t r = n - i;  // 1..7 outputs from 2..14 inputs per row
    const __m256i ma = first_lanes(std::min<std::size_t>(2 * r, 8));
    const __m256i mb = first_lanes(2 * r > 8 ? 2 * r - 8 : 0);
    const __m256 a = _mm256_add_ps(_mm256_maskload_ps(r0 + 2 * i, ma), _mm256_maskload_ps(r1 + 2 * i, ma));
    const __m256 b =
        _mm256_add_ps(_mm256_maskload_ps(r0 + 2 * i + 8, mb), _mm256_maskload_ps(r1 + 2 * i + 8, mb));
    __m256 s = pairs(a, b);
    if (acc) s = _mm256_add_ps(_mm256_maskload_ps(out + i, first_lanes(r)), s);
    store_partial(s, out + i, r);
  }
#else
  for (; i < n; ++i) {
    const float s = (r0[2 * i] + r1[2 * i]) + (r0[2 * i + 1] + r1[2 * i + 1]);
    out[i] = acc ? out[i] + s : s;
  }
#endif
}

}  // namespace ddpm::detail::cpu
