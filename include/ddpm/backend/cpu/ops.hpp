// SPDX-License-Identifier: MIT
// ddpm/backend/cpu/ops.hpp — Ops<backend::Cpu>: every operation of the backend interface
// (contracts in ddpm/backend/reference.hpp) with xsimd loops inside oneTBB chunks.
//
//  * Deterministic: chunk boundaries depend only on the shapes (parallel.hpp); reductions add fixed
//    per-chunk partials in chunk order; no float atomics. Results are bitwise the same for any
//    thread count (tests/backend/test_cpu_*.cpp check Cpu(1) against Cpu(2) for every op).
//  * No allocation in steady state: buffers come from the Context's grow-only scratch.
//    Scratch slots used here: thread and shared slot `ops_slot` (2); the GEMM uses slot 3 and the
//    convolutions slots 0, 1 and 3, and no op holds a buffer across a call into them.
//  * float is the fast path; other element types forward to Ops<backend::Reference> (the
//    forwarders are generated once from the op list: DDPM_REFERENCE_FALLBACK_OPS).
//  * DDPM_CHECK_BACKEND_OPS at the end checks this class against the op list
//    (ddpm/backend/op_list.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ddpm/backend/cpu/context.hpp"
#include "ddpm/backend/cpu/conv.hpp"
#include "ddpm/backend/cpu/gemm.hpp"
#include "ddpm/backend/cpu/parallel.hpp"
#include "ddpm/backend/cpu/simd.hpp"
#include "ddpm/backend/cpu/simd512.hpp"
#include "ddpm/backend/cpu/tag.hpp"
#include "ddpm/backend/op_list.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/backend/reference_fallback.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm {

namespace detail::cpu {

/// Elements per chunk (at least) of element-wise loops and reductions: ~128 KiB per input, so a
/// chunk costs far more than a task switch and small tensors stay on the calling thread.
inline constexpr std::size_t map_grain = std::size_t{1} << 15;
/// Chunk boundaries are multiples of this many floats (256 bytes: no false sharing of lines).
inline constexpr std::size_t chunk_align = 64;
/// Context scratch slot of these ops (thread and shared).
inline constexpr std::size_t ops_slot = 2;

/// out[i] = f(in[i]...) over n elements, in parallel chunks.
template <class F, class... In>
inline void parallel_map(Context& ctx, std::size_t n, F f, float* out, const In*... in) {
  parallel_chunks(ctx, n, map_grain, chunk_align, [&](std::size_t b, std::size_t e) {
    map_span(e - b, f, out + b, (in + b)...);
  });
}

/// Per-sample element-wise loop over a flattened (N, item) tensor: calls
/// seg(n, begin, end) on per-sample segments of fixed chunks (global element indices).
template <class Seg>
inline void parallel_samples(Context& ctx, std::size_t total, std::size_t item, Seg seg) {
  parallel_chunks(ctx, total, map_grain, chunk_align, [&](std::size_t b, std::size_t e) {
    for_each_sample_segment(b, e, item, seg);
  });
}

/// Softmax of one row in place (exp via simd exp, divided by the row sum as the reference).
inline void softmax_row(float* row, std::size_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  fbatch mx(ninf);
  for_lanes(n, [&](std::size_t i, auto c) DDPM_SIMD_LAMBDA {
    fbatch v = load_n(row + i, c);
    if constexpr (!std::is_same_v<decltype(c), full_t>) v = fill_lanes(v, c, ninf);
    mx = xsimd::max(mx, v);
  });
  const fbatch m(reduce_max(mx));
  fbatch sum(0.0f);
  for_lanes(n, [&](std::size_t i, auto c) DDPM_SIMD_LAMBDA {
    const fbatch e = exp(load_n(row + i, c) - m);
    store_n(e, row + i, c);
    sum += valid_n(e, c);
  });
  const fbatch z(detail::reduce_add(sum));
  for_lanes(n, [&](std::size_t i, auto c) DDPM_SIMD_LAMBDA { store_n(load_n(row + i, c) / z, row + i, c); });
}

/// row[j] = p[j] (row[j] - sum_j row[j] p[j]) — the softmax backward of one row, in place.
inline void softmax_backward_row(const float* p, float* row, std::size_t n) {
  fbatch dot(0.0f);
  for_lanes(n, [&](std::size_t i, auto c) DDPM_SIMD_LAMBDA {
    dot = xsimd::fma(load_n(row + i, c), load_n(p + i, c), dot);
  });
  const fbatch d(detail::reduce_add(dot));
  for_lanes(n, [&](std::size_t i, auto c) DDPM_SIMD_LAMBDA {
    const fbatch pv = load_n(p + i, c);
    store_n(pv * (load_n(row + i, c) - d), row + i, c);
  });
}

}  // namespace detail::cpu

template <>
struct Ops<backend::Cpu> {
  using B = backend::Cpu;

  // Every element type other than float: the operation of Ops<backend::Reference>, one forwarder
  // per operation of the list (ddpm/backend/reference_fallback.hpp). The operations below are the
  // float paths only.
  DDPM_REFERENCE_FALLBACK_OPS(float)

 private:
  using fbatch = detail::cpu::fbatch;

 public:
  // ------------------------------------------------------------------ element-wise
  /// x[i] = v
  template <std::same_as<float> T>
  static void fill(const B& be, View<T> x, T v) {
    const fbatch vb(v);
    detail::cpu::parallel_map(be.ctx(), x.size(), [vb]() { return vb; }, x.data());
  }
  /// dst = src (same element count)
  template <std::same_as<float> T>
  static void copy(const B& be, ConstView<T> src, View<T> dst) {
    DDPM_ASSERT(src.size() == dst.size(), "copy: sizes differ");
    if (src.data() == dst.data()) return;
    detail::cpu::parallel_chunks(be.ctx(), src.size(), detail::cpu::map_grain,
                                 detail::cpu::chunk_align, [&](std::size_t b, std::size_t e) {
                                   std::memcpy(dst.data() + b, src.data() + b,
                                               (e - b) * sizeof(float));
                                 });
  }
  /// y = a x + b y  (b = 0 ignores the old y, NaN included)
  template <std::same_as<float> T>
  static void axpby(const B& be, T a, ConstView<T> x, T b, View<T> y) {
    DDPM_ASSERT(x.size() == y.size(), "axpby: sizes differ");
    const fbatch av(a), bv(b);
    if (b == 0.0f)
      detail::cpu::parallel_map(be.ctx(), x.size(), [av](fbatch xv) DDPM_SIMD_LAMBDA { return av * xv; },
                                y.data(), x.data());
    else
      detail::cpu::parallel_map(
          be.ctx(), x.size(), [av, bv](fbatch xv, fbatch yv) DDPM_SIMD_LAMBDA { return xsimd::fma(av, xv, bv * yv); },
          y.data(), x.data(), static_cast<const float*>(y.data()));
  }
  /// out = a + b (out may alias a or b)
  template <std::same_as<float> T>
  static void add(const B& be, ConstView<T> a, ConstView<T> b, View<T> out) {
    DDPM_ASSERT(a.size() == b.size() && a.size() == out.size(), "add: sizes differ");
    detail::cpu::parallel_map(be.ctx(), a.size(), [](fbatch u, fbatch v) DDPM_SIMD_LAMBDA { return u + v; },
                              out.data(), a.data(), b.data());
  }
  /// x *= s
  template <std::same_as<float> T>
  static void scale(const B& be, View<T> x, T s) {
    const fbatch sv(s);
    detail::cpu::parallel_map(be.ctx(), x.size(), [sv](fbatch v) DDPM_SIMD_LAMBDA { return v * sv; }, x.data(),
                              static_cast<const float*>(x.data()));
  }
  /// sum of x[i]^2 in double (float squares summed in float lanes per block of 512, blocks in
  /// double, chunks in order: deterministic). NaN/Inf propagate.
  template <std::same_as<float> T>
  static double sum_squares(const B& be, ConstView<T> x) {
    const float* p = x.data();
    return detail::cpu::parallel_sum(
        be.ctx(), x.size(), detail::cpu::map_grain, detail::cpu::chunk_align,
        [p](std::size_t b, std::size_t e) {
          return detail::cpu::sum_span(e - b, [](fbatch v) DDPM_SIMD_LAMBDA { return v * v; }, p + b);
        });
  }

  // ------------------------------------------------------------------ activations
  /// y = x sigmoid(x)
  template <std::same_as<float> T>
  static void silu_forward(const B& be, ConstView<T> x, View<T> y) {
    detail::cpu::parallel_map(be.ctx(), x.size(), [](fbatch v) DDPM_SIMD_LAMBDA { return detail::cpu::silu(v); },
                              y.data(), x.data());
  }
  /// dx (+)= dy * silu'(x)
  template <std::same_as<float> T>
  static void silu_backward(const B& be, ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) {
    if (acc)
      detail::cpu::parallel_map(
          be.ctx(), x.size(),
          [](fbatch xv, fbatch g, fbatch d) DDPM_SIMD_LAMBDA { return xsimd::fma(g, detail::cpu::silu_grad(xv), d); },
          dx.data(), x.data(), dy.data(), static_cast<const float*>(dx.data()));
    else
      detail::cpu::parallel_map(
          be.ctx(), x.size(), [](fbatch xv, fbatch g) DDPM_SIMD_LAMBDA { return g * detail::cpu::silu_grad(xv); },
          dx.data(), x.data(), dy.data());
  }

  // ------------------------------------------------------------------ group norm
  /// x: (N, C, H, W), gamma/beta: (C), mean/rstd: (N, G) outputs (saved for backward).
  /// y = gamma (x - mean) rstd + beta, then SiLU if `silu`. One task per block of groups; per
  /// group a stats pass (mean, then centred variance, float lanes summed in double) and one
  /// normalise(+SiLU) pass while the group is still in L1/L2.
  template <std::same_as<float> T>
  static void group_norm_forward(const B& be, ConstView<T> x, ConstView<T> gamma,
                                 ConstView<T> beta, View<T> y, View<T> mean, View<T> rstd,
                                 std::size_t groups, double eps, bool silu) {
    using namespace detail::cpu;
    const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w(), G = groups, Cg = C / G;
    const std::size_t M = Cg * HW;
    if (N == 0 || M == 0) return;
    const float* xd = x.data();
    float* yd = y.data();
    [[maybe_unused]] const bool wide = use_avx512();
    auto one_group = [&](std::size_t ng) {
      const std::size_t g = ng % G;
      const float* xp = xd + ng * M;
      const double mu = sum_span(M, [](fbatch v) DDPM_SIMD_LAMBDA { return v; }, xp) / double(M);
      const float muf = float(mu);
      const fbatch muv(muf);
      const double ss = sum_span(M, [muv](fbatch v) DDPM_SIMD_LAMBDA { const fbatch d = v - muv; return d * d; }, xp);
      const double shift = mu - double(muf);
      const double var = std::max(ss / double(M) - shift * shift, 0.0);
      const float r = float(1.0 / std::sqrt(var + eps));
      mean[ng] = muf;
      rstd[ng] = r;
      for (std::size_t c = 0; c < Cg; ++c) {
        const std::size_t ch = g * Cg + c;
        const fbatch sc(gamma[ch] * r), bt(beta[ch]);
        const float* xc = xp + c * HW;
        float* yc = yd + ng * M + c * HW;
        std::size_t done = 0;  // 16-lane chunks at the AVX-512 level (bitwise the same)
#if DDPM_CPU_HAVE_AVX512_KERNELS
        if (wide) done = avx512::group_norm_map(xc, yc, HW, muf, gamma[ch] * r, beta[ch], silu);
#endif
        if (silu)
          map_span(HW - done, [&](fbatch v) DDPM_SIMD_LAMBDA { return detail::cpu::silu(xsimd::fma(v - muv, sc, bt)); },
                   yc + done, xc + done);
        else
          map_span(HW - done, [&](fbatch v) DDPM_SIMD_LAMBDA { return xsimd::fma(v - muv, sc, bt); },
                   yc + done, xc + done);
      }
    };
    parallel_chunks(be.ctx(), N * G, std::max<std::size_t>(1, map_grain / M), 1,
                    [&](std::size_t b, std::size_t e) {
                      for (std::size_t ng = b; ng < e; ++ng) one_group(ng);
                    });
  }
  /// Backward of group_norm_forward (recomputes the normalised input from x, mean, rstd):
  /// dx (+)= ..., dgamma += sum(g xhat), dbeta += sum(g), with g = dy (times silu' if `silu`).
  /// Per group: pass 1 reads x, dy, forms g (kept in thread scratch when `silu`) and the
  /// per-channel sums; pass 2 writes dx. Per-(sample, channel) sums of dgamma/dbeta are kept in
  /// shared scratch and added over the batch in sample order afterwards.
  template <std::same_as<float> T>
  static void group_norm_backward(const B& be, ConstView<T> x, ConstView<T> gamma,
                                  ConstView<T> beta, ConstView<T> mean, ConstView<T> rstd,
                                  ConstView<T> dy, View<T> dx, View<T> dgamma, View<T> dbeta,
                                  std::size_t groups, bool silu, bool acc) {
    using namespace detail::cpu;
    const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w(), G = groups, Cg = C / G;
    const std::size_t M = Cg * HW;
    if (N == 0 || M == 0) return;
    Context& ctx = be.ctx();
    // part[(n C + ch) 2 + {0, 1}] = (sum g, sum g xhat) of sample n, channel ch, in double.
    auto* part = reinterpret_cast<double*>(ctx.shared_scratch(ops_slot, 2 * 2 * N * C));
    const bool want_dx = !dx.empty();
    [[maybe_unused]] const bool wide = use_avx512();
    if (silu && want_dx) ctx.reserve_thread_scratch(ops_slot, M);
    auto one_group = [&](std::size_t ng) {
      const std::size_t n = ng / G, g = ng % G;
      const float mu = mean[ng], r = rstd[ng];
      const fbatch muv(mu), rv(r);
      const float* xp = x.data() + ng * M;
      const float* dyp = dy.data() + ng * M;
      float* gbuf = (silu && want_dx) ? ctx.thread_scratch(ops_slot, M) : nullptr;
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      for (std::size_t c = 0; c < Cg; ++c) {
        const std::size_t ch = g * Cg + c;
        const fbatch gm(gamma[ch]), bt(beta[ch]);
        const float* xc = xp + c * HW;
        const float* dc = dyp + c * HW;
        LaneSum s_g, s_gx;
        const auto flush = [&] {
          s_g.flush();
          s_gx.flush();
        };
        if (silu) {
          float* gc = gbuf ? gbuf + c * HW : nullptr;
          auto body = [&](std::size_t i, auto cnt) DDPM_SIMD_LAMBDA {
            const fbatch xhat = (load_n(xc + i, cnt) - muv) * rv;
            const fbatch gr = load_n(dc + i, cnt) * silu_grad(xsimd::fma(gm, xhat, bt));
            if (gc) store_n(gr, gc + i, cnt);
            s_g.add(valid_n(gr, cnt));
            s_gx.add(valid_n(gr * xhat, cnt));
          };
          // AVX-512 level: 16-lane chunks first, the same sums bitwise
          const auto head = [&](std::size_t b, std::size_t e) -> std::size_t {
#if DDPM_CPU_HAVE_AVX512_KERNELS
            if (wide) {
              __m256 lg = s_g.lanes(), lgx = s_gx.lanes();
              const std::size_t i = avx512::group_norm_silu_grad(xc, dc, gc, b, e, mu, r, gamma[ch],
                                                                 beta[ch], lg, lgx);
              s_g.lanes() = lg;
              s_gx.lanes() = lgx;
              return i;
            }
#endif
            (void)e;
            return b;
          };
          for_lanes_blocked(HW, head, body, flush);
        } else {
          for_lanes_blocked(HW, [&](std::size_t i, auto cnt) DDPM_SIMD_LAMBDA {
            const fbatch xhat = (load_n(xc + i, cnt) - muv) * rv;
            const fbatch gr = load_n(dc + i, cnt);
            s_g.add(valid_n(gr, cnt));
            s_gx.add(valid_n(gr * xhat, cnt));
          }, flush);
        }
        const double sg = s_g.result(), sgx = s_gx.result();
        part[(n * C + ch) * 2] = sg;
        part[(n * C + ch) * 2 + 1] = sgx;
        sum_dxhat += double(gamma[ch]) * sg;
        sum_dxhat_xhat += double(gamma[ch]) * sgx;
      }
      if (!want_dx) return;
      const double m1 = sum_dxhat / double(M), m2 = sum_dxhat_xhat / double(M);
      const fbatch b1(float(double(r) * m1)), c2(float(double(r) * m2));
      for (std::size_t c = 0; c < Cg; ++c) {
        const std::size_t ch = g * Cg + c;
        const fbatch a(r * gamma[ch]);
        const float* xc = xp + c * HW;
        const float* gc = silu ? gbuf + c * HW : dyp + c * HW;
        float* dxc = dx.data() + ng * M + c * HW;
        auto body = [&](std::size_t i, auto cnt) DDPM_SIMD_LAMBDA {
          const fbatch xhat = (load_n(xc + i, cnt) - muv) * rv;
          const fbatch v = xsimd::fms(a, load_n(gc + i, cnt), xsimd::fma(xhat, c2, b1));
          store_n(acc ? load_n(dxc + i, cnt) + v : v, dxc + i, cnt);
        };
        for_lanes(HW, body);
      }
    };
    parallel_chunks(ctx, N * G, std::max<std::size_t>(1, map_grain / M), 1,
                    [&](std::size_t b, std::size_t e) {
                      for (std::size_t ng = b; ng < e; ++ng) one_group(ng);
                    });
    for (std::size_t ch = 0; ch < C; ++ch) {
      double sg = 0.0, sgx = 0.0;
      for (std::size_t n = 0; n < N; ++n) {
        sg += part[(n * C + ch) * 2];
        sgx += part[(n * C + ch) * 2 + 1];
      }
      dbeta[ch] = float(double(dbeta[ch]) + sg);
      dgamma[ch] = float(double(dgamma[ch]) + sgx);
    }
  }

  // ------------------------------------------------------------------ convolution
  static detail::cpu::ConvAlgo conv_algo(const B& be) noexcept {
    return be.convolution == backend::CpuConvolution::exact ? detail::cpu::ConvAlgo::gemm
                                                              : detail::cpu::ConvAlgo::automatic;
  }
  /// y = conv(x, w) + bias. x (N, Ci, H, W), w (Co, Ci, k, k), bias (Co) or empty, y (N, Co, Ho, Wo).
  template <std::same_as<float> T>
  static void conv2d_forward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> bias,
                             View<T> y, ConvGeometry g) {
    if (x.n() == 0) return;
    detail::cpu::conv2d_forward(be.ctx(), conv_shape(x, w, g), x.data(), w.data(),
                                bias.empty() ? nullptr : bias.data(), y.data(), conv_algo(be));
  }
  /// dx (+)= conv^T(dy, w) (skipped if dx is empty); dw += corr(x, dy); db += sum dy (if not empty).
  template <std::same_as<float> T>
  static void conv2d_backward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, ConvGeometry g, bool acc) {
    if (x.n() == 0) return;
    const detail::cpu::Conv2dShape s = conv_shape(x, w, g);
    if (!dx.empty())
      detail::cpu::conv2d_backward_data(be.ctx(), s, w.data(), dy.data(), dx.data(), acc,
                                        conv_algo(be));
    detail::cpu::conv2d_backward_weight(be.ctx(), s, x.data(), dy.data(), dw.data(),
                                        db.empty() ? nullptr : db.data(), conv_algo(be));
  }

  // ------------------------------------------------------------------ linear
  /// y = x w^T + b. x (N, In), w (Out, In), b (Out) or empty, y (N, Out).
  template <std::same_as<float> T>
  static void linear_forward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> b,
                             View<T> y) {
    const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
    if (N == 0 || Out == 0) return;
    float beta = 0.0f;
    if (!b.empty()) {
      for (std::size_t n = 0; n < N; ++n)
        std::memcpy(y.data() + n * Out, b.data(), Out * sizeof(float));
      beta = 1.0f;
    }
    detail::cpu::sgemm(be.ctx(), false, true, N, Out, In, 1.0f, x.data(), In, w.data(), In, beta,
                       y.data(), Out);
  }
  /// dx (+)= dy w (if dx not empty); dw += dy^T x; db += sum_n dy (if db not empty).
  template <std::same_as<float> T>
  static void linear_backward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, bool acc) {
    const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
    if (N == 0) return;
    detail::cpu::Context& ctx = be.ctx();
    if (!dx.empty())
      detail::cpu::sgemm(ctx, false, false, N, In, Out, 1.0f, dy.data(), Out, w.data(), In,
                         acc ? 1.0f : 0.0f, dx.data(), In);
    detail::cpu::sgemm(ctx, true, false, Out, In, N, 1.0f, dy.data(), Out, x.data(), In, 1.0f,
                       dw.data(), In);
    if (!db.empty())  // rows added in sample order, as the reference (bitwise equal)
      for (std::size_t n = 0; n < N; ++n)
        detail::cpu::map_span(Out, [](fbatch a, fbatch d) DDPM_SIMD_LAMBDA { return a + d; }, db.data(),
                              static_cast<const float*>(db.data()), dy.data() + n * Out);
  }

  // ------------------------------------------------------------------ attention
  /// Single-head self-attention over the P = H*W positions; qkv (N, 3C, H, W) = [q; k; v],
  /// probs (N, P, P) = softmax_j(scale q_i . k_j), out[c, i] = sum_j v[c, j] probs[i, j],
  /// scale = 1 / sqrt(C). Per sample: S = scale Q^T K (GEMM), row softmax (simd exp) in place,
  /// out = V P^T (GEMM). Samples in parallel with single-thread GEMMs; a batch of one sample
  /// uses the parallel GEMM instead (bitwise the same GEMM result either way).
  template <std::same_as<float> T>
  static void attention_forward(const B& be, ConstView<T> qkv, View<T> probs, View<T> out) {
    const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
    if (N == 0 || P == 0) return;
    const float scale = 1.0f / std::sqrt(float(C));
    detail::cpu::Context& ctx = be.ctx();
    auto one = [&](std::size_t n, auto gemm) DDPM_SIMD_LAMBDA {
      const float* q = qkv.data() + n * 3 * C * P;
      const float* k = q + C * P;
      const float* v = k + C * P;
      float* pr = probs.data() + n * P * P;
      gemm(true, false, P, P, C, scale, q, P, k, P, 0.0f, pr, P);
      for (std::size_t i = 0; i < P; ++i) detail::cpu::softmax_row(pr + i * P, P);
      gemm(false, true, C, P, P, 1.0f, v, P, pr, P, 0.0f, out.data() + n * C * P, P);
    };
    for_samples(ctx, N, attention_gemm_workspace(C, P), one);
  }
  /// dqkv = d(out)/d(qkv) applied to dout (assigned, not accumulated). Per sample:
  /// dV = dO P, dS = P o (dO^T V - rowdot) (thread scratch), dQ = scale K dS^T, dK = scale Q dS.
  template <std::same_as<float> T>
  static void attention_backward(const B& be, ConstView<T> qkv, ConstView<T> probs,
                                 ConstView<T> dout, View<T> dqkv) {
    const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
    if (N == 0 || P == 0) return;
    const float scale = 1.0f / std::sqrt(float(C));
    detail::cpu::Context& ctx = be.ctx();
    auto one = [&](std::size_t n, auto gemm) DDPM_SIMD_LAMBDA {
      const float* q = qkv.data() + n * 3 * C * P;
      const float* k = q + C * P;
      const float* v = k + C * P;
      const float* pr = probs.data() + n * P * P;
      const float* d = dout.data() + n * C * P;
      float* dq = dqkv.data() + n * 3 * C * P;
      float* dk = dq + C * P;
      float* dv = dk + C * P;
      float* ds = ctx.thread_scratch(detail::cpu::ops_slot, P * P);
      gemm(false, false, C, P, P, 1.0f, d, P, pr, P, 0.0f, dv, P);
      gemm(true, false, P, P, C, 1.0f, d, P, v, P, 0.0f, ds, P);
      for (std::size_t i = 0; i < P; ++i) detail::cpu::softmax_backward_row(pr + i * P, ds + i * P, P);
      gemm(false, true, C, P, P, scale, k, P, ds, P, 0.0f, dq, P);
      gemm(false, false, C, P, P, scale, q, P, ds, P, 0.0f, dk, P);
    };
    if (N > 1) ctx.reserve_thread_scratch(detail::cpu::ops_slot, P * P);  // N == 1: calling thread
    for_samples(ctx, N, attention_gemm_workspace(C, P), one);
  }

  // ------------------------------------------------------------------ resampling, concat, bias
  /// Nearest-neighbour x2: y (N, C, 2H, 2W), y[2h + a, 2w + b] = x[h, w]. Parallel over rows.
  template <std::same_as<float> T>
  static void upsample2x_forward(const B& be, ConstView<T> x, View<T> y) {
    const std::size_t rows = x.n() * x.c() * x.h(), W = x.w();
    if (rows == 0 || W == 0) return;
    const float* xd = x.data();
    float* yd = y.data();
    detail::cpu::parallel_chunks(
        be.ctx(), rows, std::max<std::size_t>(1, detail::cpu::map_grain / (4 * W)), 1,
        [&](std::size_t b, std::size_t e) {
          for (std::size_t r = b; r < e; ++r) {
            float* y0 = yd + r * 4 * W;
            detail::cpu::duplicate_lanes(xd + r * W, W, y0, y0 + 2 * W);
          }
        });
  }
  /// dx (+)= sum of the four dy entries each x entry was copied to.
  template <std::same_as<float> T>
  static void upsample2x_backward(const B& be, ConstView<T> dy, View<T> dx, bool acc) {
    const std::size_t rows = dx.n() * dx.c() * dx.h(), W = dx.w();
    if (rows == 0 || W == 0) return;
    const float* dyd = dy.data();
    float* dxd = dx.data();
    detail::cpu::parallel_chunks(
        be.ctx(), rows, std::max<std::size_t>(1, detail::cpu::map_grain / (4 * W)), 1,
        [&](std::size_t b, std::size_t e) {
          for (std::size_t r = b; r < e; ++r) {
            const float* r0 = dyd + r * 4 * W;
            detail::cpu::pair_sum_rows(r0, r0 + 2 * W, W, dxd + r * W, acc);
          }
        });
  }
  /// out (N, Ca + Cb, H, W) = [a, b] along channels.
  template <std::same_as<float> T>
  static void concat_channels(const B& be, ConstView<T> a, ConstView<T> b, View<T> out) {
    const std::size_t N = a.n();
    if (N == 0) return;
    const std::size_t sa = a.size() / N, sb = b.size() / N, so = sa + sb;
    // Chunks of the output, copied as the runs of a and b they cover.
    detail::cpu::parallel_samples(be.ctx(), N * so, so, [&](std::size_t n, std::size_t s, std::size_t e) {
      const std::size_t lo = s - n * so, hi = e - n * so;
      float* o = out.data() + n * so;
      if (lo < sa)
        std::memcpy(o + lo, a.data() + n * sa + lo, (std::min(hi, sa) - lo) * sizeof(float));
      if (hi > sa) {
        const std::size_t l2 = std::max(lo, sa);
        std::memcpy(o + l2, b.data() + n * sb + (l2 - sa), (hi - l2) * sizeof(float));
      }
    });
  }
  /// Backward of concat: da (+)= dout[:, :ca], db (+)= dout[:, ca:]; an empty da or db is skipped.
  template <std::same_as<float> T>
  static void split_channels(const B& be, ConstView<T> dout, std::size_t ca, View<T> da,
                             bool acc_a, View<T> db, bool acc_b) {
    const std::size_t N = dout.n();
    if (N == 0) return;
    const std::size_t s = dout.size() / N, HW = dout.h() * dout.w();
    const std::size_t sa = ca * HW, sb = s - sa;
    auto part = [](const float* src, float* dst, std::size_t len, bool acc) {
      if (acc)
        detail::cpu::map_span(len, [](fbatch u, fbatch v) DDPM_SIMD_LAMBDA { return u + v; }, dst,
                              static_cast<const float*>(dst), src);
      else
        std::memcpy(dst, src, len * sizeof(float));
    };
    detail::cpu::parallel_samples(be.ctx(), N * s, s, [&](std::size_t n, std::size_t b, std::size_t e) {
      const std::size_t lo = b - n * s, hi = e - n * s;
      const float* src = dout.data() + n * s;
      if (lo < sa && !da.empty())
        part(src + lo, da.data() + n * sa + lo, std::min(hi, sa) - lo, acc_a);
      if (hi > sa && !db.empty()) {
        const std::size_t l2 = std::max(lo, sa);
        part(src + l2, db.data() + n * sb + (l2 - sa), hi - l2, acc_b);
      }
    });
  }
  /// x[n, c, :, :] += bias[n, c]  (x (N, C, H, W), bias (N, C)).
  template <std::same_as<float> T>
  static void add_channel_bias(const B& be, View<T> x, ConstView<T> bias) {
    const std::size_t NC = x.n() * x.c(), HW = x.h() * x.w();
    if (NC == 0 || HW == 0) return;
    detail::cpu::parallel_samples(be.ctx(), NC * HW, HW, [&](std::size_t p, std::size_t b, std::size_t e) {
      const fbatch bv(bias[p]);
      detail::cpu::map_span(e - b, [bv](fbatch v) DDPM_SIMD_LAMBDA { return v + bv; }, x.data() + b,
                            static_cast<const float*>(x.data() + b));
    });
  }
  /// dbias[n, c] = sum over H, W of dy[n, c]  (assigned). One plane per task item.
  template <std::same_as<float> T>
  static void channel_sum(const B& be, ConstView<T> dy, View<T> dbias) {
    const std::size_t NC = dy.n() * dy.c(), HW = dy.h() * dy.w();
    if (NC == 0) return;
    detail::cpu::parallel_chunks(
        be.ctx(), NC, std::max<std::size_t>(1, detail::cpu::map_grain / std::max<std::size_t>(HW, 1)), 1,
        [&](std::size_t b, std::size_t e) {
          for (std::size_t p = b; p < e; ++p)
            dbias[p] = float(detail::cpu::sum_span(HW, [](fbatch v) DDPM_SIMD_LAMBDA { return v; }, dy.data() + p * HW));
        });
  }

  // ------------------------------------------------------------------ dropout
  /// y = x * keep_i / (1 - p), keep_i = uniform(stream, i) >= p. The Philox mask is generated on
  /// the fly, 8 blocks (32 elements) per AVX2 step, never stored; bitwise equal to the reference.
  template <std::same_as<float> T>
  static void dropout_forward(const B& be, ConstView<T> x, View<T> y, double p, Rng rng,
                              std::uint64_t stream) {
    if (p == 0.0) return copy(be, x, y);
    dropout_apply(be, x.data(), y.data(), x.size(), p, rng, stream, false);
  }
  /// dx (+)= dy * keep / (1 - p)
  template <std::same_as<float> T>
  static void dropout_backward(const B& be, ConstView<T> dy, View<T> dx, double p, Rng rng,
                               std::uint64_t stream, bool acc) {
    if (p == 0.0) {
      if (acc) return add(be, ConstView<float>(dx), dy, dx);
      return copy(be, dy, dx);
    }
    dropout_apply(be, dy.data(), dx.data(), dy.size(), p, rng, stream, acc);
  }

  // ------------------------------------------------------------------ embeddings
  /// out[n, :] = table[labels[n], :]. table (R, D), labels (N) in [0, R), out (N, D).
  template <std::same_as<float> T>
  static void embedding_forward(const B&, ConstView<T> table, ConstView<std::int32_t> labels,
                                View<T> out) {
    const std::size_t D = table.dim(1);
    for (std::size_t n = 0; n < labels.size(); ++n)
      std::memcpy(out.data() + n * D, table.data() + std::size_t(labels[n]) * D, D * sizeof(float));
  }
  /// dtable[labels[n], :] += dout[n, :] (rows added in sample order: bitwise equal to the reference)
  template <std::same_as<float> T>
  static void embedding_backward(const B&, ConstView<std::int32_t> labels, ConstView<T> dout,
                                 View<T> dtable) {
    const std::size_t D = dtable.dim(1);
    for (std::size_t n = 0; n < labels.size(); ++n) {
      float* row = dtable.data() + std::size_t(labels[n]) * D;
      detail::cpu::map_span(D, [](fbatch a, fbatch d) DDPM_SIMD_LAMBDA { return a + d; }, row,
                            static_cast<const float*>(row), dout.data() + n * D);
    }
  }
  /// out (N, D) = [sin(t f_i), cos(t f_i)] — the reference's loop (double sin/cos, N x D/2 values:
  /// tiny), so the result is bitwise the reference's.
  template <std::same_as<float> T>
  static void timestep_embedding(const B&, ConstView<std::int32_t> t, View<T> out) {
    Ops<backend::Reference>::timestep_embedding(backend::Reference{}, t, out);
  }

  // ------------------------------------------------------------------ diffusion
  /// out[e] = normal(stream, index0 + e), in parallel chunks (each value a pure function of its
  /// index: bitwise the reference's).
  template <std::same_as<float> T>
  static void fill_normal(const B& be, View<T> out, Rng rng, std::uint64_t stream,
                          std::uint64_t index0) {
    float* o = out.data();
    detail::cpu::parallel_chunks(be.ctx(), out.size(), std::size_t{1} << 13, 64,
                                 [&](std::size_t b, std::size_t e) {
                                   rng.fill_normal(o + b, e - b, stream, index0 + b);
                                 });
  }
  /// out[n, :] = ca[n] a[n, :] + cb[n] b[n, :] (+ cz[n] z[n, :] if z is not empty).
  template <std::same_as<float> T>
  static void lincomb(const B& be, View<T> out, ConstView<T> ca, ConstView<T> a, ConstView<T> cb,
                      ConstView<T> b, ConstView<T> cz, ConstView<T> z) {
    const std::size_t N = out.n();
    if (N == 0 || out.size() == 0) return;
    const std::size_t item = out.size() / N;
    const bool has_z = !z.empty();
    detail::cpu::parallel_samples(be.ctx(), out.size(), item, [&](std::size_t n, std::size_t s, std::size_t e) {
      const fbatch av(ca[n]), bv(cb[n]);
      if (has_z) {
        const fbatch zv(cz[n]);
        detail::cpu::map_span(
            e - s, [=](fbatch x, fbatch y, fbatch w) DDPM_SIMD_LAMBDA { return xsimd::fma(zv, w, xsimd::fma(av, x, bv * y)); },
            out.data() + s, a.data() + s, b.data() + s, z.data() + s);
      } else {
        detail::cpu::map_span(
            e - s, [=](fbatch x, fbatch y) DDPM_SIMD_LAMBDA { return xsimd::fma(av, x, bv * y); }, out.data() + s,
            a.data() + s, b.data() + s);
      }
    });
  }
  /// Loss of one batch and its gradient:
  ///   d = out - P::target(x0, eps, a, s);  loss = mean(w[n] L.value(d));  dout = w[n] L.grad(d) / numel
  /// (w empty means 1). The policies run on xsimd batches. Returns the loss in double, summed as
  /// float lanes per block, blocks and chunks in double in a fixed order.
  template <class P, class L, std::same_as<float> T>
  static double diffusion_loss(const B& be, const L& loss, ConstView<T> out, ConstView<T> x0,
                               ConstView<T> eps, ConstView<T> a, ConstView<T> s, ConstView<T> w,
                               View<T> dout) {
    using namespace detail::cpu;
    const std::size_t N = out.n(), total = out.size();
    if (N == 0 || total == 0) return 0.0;
    const std::size_t item = total / N;
    const float inv = 1.0f / float(total);
    const double sum = parallel_sum(be.ctx(), total, map_grain, chunk_align, [&](std::size_t b, std::size_t e) {
      double part = 0.0;
      for_each_sample_segment(b, e, item, [&](std::size_t n, std::size_t sb, std::size_t se) {
        const float wn = w.empty() ? 1.0f : w[n];
        const fbatch av(a[n]), sv(s[n]), wv(wn), iv(inv);
        const float* po = out.data() + sb;
        const float* px = x0.data() + sb;
        const float* pe = eps.data() + sb;
        float* pd = dout.data() + sb;
        LaneSum acc;
        for_lanes_blocked(se - sb, [&](std::size_t i, auto cnt) DDPM_SIMD_LAMBDA {
          const fbatch d =
              load_n(po + i, cnt) - detail::target_target<P, fbatch>(load_n(px + i, cnt), load_n(pe + i, cnt), av, sv);
          acc.add(valid_n(detail::loss_value(loss, d), cnt));
          store_n(wv * detail::loss_grad(loss, d) * iv, pd + i, cnt);
        }, [&] { acc.flush(); });
        part += double(wn) * acc.result();
      });
      return part;
    });
    return sum / double(total);
  }
  /// From the network output: x0 = P::x0(xt, out), clipped to [-1, 1] if `clip`; eps = P::eps(xt,
  /// out) without clipping, (xt - a x0) / s with it (as the reference sampler).
  template <class P, std::same_as<float> T>
  static void predict(const B& be, ConstView<T> xt, ConstView<T> out, ConstView<T> a,
                      ConstView<T> s, bool clip, View<T> x0, View<T> eps) {
    using namespace detail::cpu;
    const std::size_t N = xt.n(), total = xt.size();
    if (N == 0 || total == 0) return;
    const std::size_t item = total / N;
    const bool want_eps = !eps.empty();
    parallel_samples(be.ctx(), total, item, [&](std::size_t n, std::size_t sb, std::size_t se) {
      const fbatch av(a[n]), sv(s[n]), lo(-1.0f), hi(1.0f);
      const float* px = xt.data() + sb;
      const float* po = out.data() + sb;
      float* p0 = x0.data() + sb;
      float* pe = want_eps ? eps.data() + sb : nullptr;
      for_lanes(se - sb, [&](std::size_t i, auto cnt) DDPM_SIMD_LAMBDA {
        const fbatch xv = load_n(px + i, cnt), ov = load_n(po + i, cnt);
        fbatch x = detail::target_x0<P, fbatch>(xv, ov, av, sv);
        if (clip) {
          x = detail::VMath<fbatch>::clamp(x, lo, hi);
          if (pe) store_n((xv - av * x) / sv, pe + i, cnt);
        } else if (pe) {
          store_n(detail::target_eps<P, fbatch>(xv, ov, av, sv), pe + i, cnt);
        }
        store_n(x, p0 + i, cnt);
      });
    });
  }
  /// Classifier-free guidance: out = uncond + w (cond - uncond).
  template <std::same_as<float> T>
  static void guidance(const B& be, ConstView<T> cond, ConstView<T> uncond, T w, View<T> out) {
    const fbatch wv(w);
    detail::cpu::parallel_map(
        be.ctx(), out.size(), [wv](fbatch c, fbatch u) DDPM_SIMD_LAMBDA { return xsimd::fma(wv, c - u, u); },
        out.data(), cond.data(), uncond.data());
  }
  /// Clamps x to [lo, hi] (NaN stays NaN, as the reference).
  template <std::same_as<float> T>
  static void clamp(const B& be, View<T> x, T lo, T hi) {
    const fbatch l(lo), h(hi);
    detail::cpu::parallel_map(
        be.ctx(), x.size(), [l, h](fbatch v) DDPM_SIMD_LAMBDA { return detail::VMath<fbatch>::clamp(v, l, h); },
        x.data(), static_cast<const float*>(x.data()));
  }

  // ------------------------------------------------------------------ optimisation
  /// One Adam/AdamW step (PyTorch's formula and operation order), fused: one pass reading p, grad,
  /// m, v and writing p, m, v.
  template <std::same_as<float> T>
  static void adam_step(const B& be, View<T> p, ConstView<T> grad, View<T> m, View<T> v,
                        const AdamStep& s) {
    using namespace detail::cpu;
    const double bc1 = 1.0 - std::pow(s.beta1, double(s.step));
    const double bc2s = std::sqrt(1.0 - std::pow(s.beta2, double(s.step)));
    const fbatch step_size(float(s.lr / bc1)), b1(float(s.beta1)), b2(float(s.beta2));
    const fbatch omb1(1.0f - float(s.beta1)), omb2(1.0f - float(s.beta2));
    const fbatch epsv(float(s.eps)), bc2v(static_cast<float>(bc2s));
    const fbatch decay(float(1.0 - s.lr * s.weight_decay)), gs(float(s.grad_scale));
    const fbatch wd(float(s.weight_decay));
    const int mode = s.weight_decay == 0.0 ? 0 : (s.decoupled ? 1 : 2);
    float* pd = p.data();
    float* md = m.data();
    float* vd = v.data();
    const float* gd = grad.data();
    parallel_chunks(be.ctx(), p.size(), map_grain, chunk_align, [&](std::size_t b, std::size_t e) {
      auto run = [&](auto mode_c) {
        constexpr int md_ = decltype(mode_c)::value;
        for_lanes(e - b, [&](std::size_t j, auto cnt) DDPM_SIMD_LAMBDA {
          const std::size_t i = b + j;
          fbatch pv = load_n(pd + i, cnt);
          fbatch g = load_n(gd + i, cnt) * gs;
          if constexpr (md_ == 1) pv = pv * decay;
          if constexpr (md_ == 2) g = xsimd::fma(wd, pv, g);
          const fbatch mv = xsimd::fma(b1, load_n(md + i, cnt), omb1 * g);
          const fbatch vv = xsimd::fma(b2, load_n(vd + i, cnt), omb2 * g * g);
          const fbatch denom = xsimd::sqrt(vv) / bc2v + epsv;
          pv = pv - step_size * mv / denom;
          store_n(mv, md + i, cnt);
          store_n(vv, vd + i, cnt);
          store_n(pv, pd + i, cnt);
        });
      };
      if (mode == 0) run(std::integral_constant<int, 0>{});
      else if (mode == 1) run(std::integral_constant<int, 1>{});
      else run(std::integral_constant<int, 2>{});
    });
  }
  /// ema = decay ema + (1 - decay) p
  template <std::same_as<float> T>
  static void ema_update(const B& be, View<T> ema, ConstView<T> p, T decay) {
    const fbatch d(decay), od(1.0f - decay);
    detail::cpu::parallel_map(
        be.ctx(), p.size(), [d, od](fbatch e, fbatch x) DDPM_SIMD_LAMBDA { return xsimd::fma(d, e, od * x); },
        ema.data(), static_cast<const float*>(ema.data()), p.data());
  }

 private:
  template <class T>
  static detail::cpu::Conv2dShape conv_shape(ConstView<T> x, ConstView<T> w, ConvGeometry g) {
    detail::cpu::Conv2dShape s;
    s.n = x.n();
    s.c_in = x.c();
    s.h = x.h();
    s.w = x.w();
    s.c_out = w.n();
    s.kernel = g.kernel;
    s.stride = g.stride;
    s.pad = g.pad;
    return s;
  }

  /// Packing memory of the single-thread GEMMs of one attention sample: M x N x K = P x P x C
  /// (scores, and dS in backward) and C x P x P (output, dV, dQ, dK).
  static std::size_t attention_gemm_workspace(std::size_t C, std::size_t P) {
    using detail::cpu::gemm::workspace_size;
    return std::max(workspace_size(P, P, C), workspace_size(C, P, P));
  }

  /// Runs one(n, gemm) for every sample: in parallel with the single-thread GEMM when N > 1, on
  /// the calling thread with the parallel GEMM when N == 1 (a choice made by shape only). The
  /// single-thread GEMMs pack into thread scratch (gemm::scratch_slot), reserved for every thread
  /// at `workspace` floats beforehand.
  template <class One>
  static void for_samples(detail::cpu::Context& ctx, std::size_t N, std::size_t workspace,
                          One& one) {
    if (N == 1) {
      auto gemm = [&ctx](bool ta, bool tb, std::size_t M, std::size_t Nn, std::size_t K, float alpha,
                         const float* A, std::size_t lda, const float* Bm, std::size_t ldb,
                         float beta, float* Cm, std::size_t ldc) {
        detail::cpu::sgemm(ctx, ta, tb, M, Nn, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
      };
      one(std::size_t{0}, gemm);
      return;
    }
    namespace g = detail::cpu::gemm;
    ctx.reserve_thread_scratch(g::scratch_slot, workspace);
    auto gemm = [&ctx](bool ta, bool tb, std::size_t M, std::size_t Nn, std::size_t K, float alpha,
                       const float* A, std::size_t lda, const float* Bm, std::size_t ldb,
                       float beta, float* Cm, std::size_t ldc) {
      g::sgemm_serial(ta, tb, M, Nn, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc,
                      ctx.thread_scratch(g::scratch_slot, g::workspace_size(M, Nn, K)));
    };
    detail::cpu::parallel_chunks(ctx, N, 1, 1, [&](std::size_t b, std::size_t e) {
      for (std::size_t n = b; n < e; ++n) one(n, gemm);
    });
  }

  static void dropout_apply(const B& be, const float* x, float* y, std::size_t count, double p,
                            Rng rng, std::uint64_t stream, bool acc) {
    const std::uint32_t thr = detail::cpu::dropout_threshold(p);
    const float s = float(1.0 / (1.0 - p));
    [[maybe_unused]] const bool wide = detail::cpu::use_avx512();
    detail::cpu::parallel_chunks(be.ctx(), count, detail::cpu::map_grain / 2, 64,
                                 [&](std::size_t b, std::size_t e) {
                                   // AVX-512 level: 16-lane masks first (the same bytes)
#if DDPM_CPU_HAVE_AVX512_KERNELS
                                   if (wide)
                                     b += detail::cpu::avx512::dropout_head(
                                         rng, stream, b / 32, thr, s, x + b, y + b, e - b, acc);
#endif
                                   detail::cpu::dropout_span(rng, stream, b / 32, thr, s, x + b,
                                                             y + b, e - b, acc);
                                 });
  }
};

DDPM_CHECK_BACKEND_OPS(backend::Cpu);

}  // namespace ddpm
