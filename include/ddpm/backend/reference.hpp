// SPDX-License-Identifier: MIT
// ddpm/backend/reference.hpp — Ops<backend::Reference>: naive scalar loops, written for clarity.
// It is the oracle that the CPU and CUDA backends are tested against, and it is what the
// finite-difference gradient checks run on (in double). Every operation of the Ops interface is
// defined and documented here; other backends implement the same list with the same contracts.
// The list itself (names and signatures, the calls the library makes) is DDPM_BACKEND_OPS in
// ddpm/backend/op_list.hpp; DDPM_CHECK_BACKEND_OPS at the end of this file (and of each backend's
// header) checks that every entry is here.
//
// Conventions for every backend:
//  * tensors are contiguous, row-major, NCHW; views are passed by value;
//  * `acc` (accumulate) on a backward op means dx += ..., otherwise dx = ...;
//    parameter gradients (dw, db, dgamma, ...) are always accumulated (the optimizer zeroes them);
//  * an empty view (default-constructed) for an optional output means "do not compute it";
//  * per-sample coefficient vectors have one entry per batch item (N).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "ddpm/backend/op_list.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/backend/tags.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/policy.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm {

namespace detail {
template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <class T>
inline T silu_grad(T z) {  // d/dz z sigmoid(z)
  const T s = sigmoid(z);
  return s * (T(1) + z * (T(1) - s));
}
/// Keep-mask of dropout element i: uniform(stream, i) >= p.
inline bool dropout_keep(const Rng& rng, std::uint64_t stream, std::size_t i, double p) {
  return rng.uniform(stream, i) >= p;
}
/// Sinusoidal frequency i of an embedding with `half` frequencies, in float as PyTorch computes it.
inline float timestep_frequency(std::size_t i, std::size_t half) {
  const float c = static_cast<float>(-9.210340371976184);  // -ln(10000)
  const float denom = static_cast<float>(half > 1 ? half - 1 : 1);
  return std::exp(c * static_cast<float>(i) / denom);
}
}  // namespace detail

template <>
struct Ops<backend::Reference> {
  using B = backend::Reference;

  // ------------------------------------------------------------------ element-wise
  /// x[i] = v
  template <class T>
  static void fill(const B&, View<T> x, T v) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = v;
  }
  /// dst = src (same element count)
  template <class T>
  static void copy(const B&, ConstView<T> src, View<T> dst) {
    DDPM_ASSERT(src.size() == dst.size(), "copy: sizes differ");
    for (std::size_t i = 0; i < src.size(); ++i) dst[i] = src[i];
  }
  /// y = a x + b y  (b = 0 ignores the old y, NaN included)
  template <class T>
  static void axpby(const B&, T a, ConstView<T> x, T b, View<T> y) {
    DDPM_ASSERT(x.size() == y.size(), "axpby: sizes differ");
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = b == T(0) ? a * x[i] : a * x[i] + b * y[i];
  }
  /// out = a + b (out may alias a or b)
  template <class T>
  static void add(const B&, ConstView<T> a, ConstView<T> b, View<T> out) {
    DDPM_ASSERT(a.size() == b.size() && a.size() == out.size(), "add: sizes differ");
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i];
  }
  /// x *= s
  template <class T>
  static void scale(const B&, View<T> x, T s) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] *= s;
  }
  /// sum of x[i]^2 in double (NaN/Inf propagate).
  template <class T>
  static double sum_squares(const B&, ConstView<T> x) {
    double s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) s += double(x[i]) * double(x[i]);
    return s;
  }

  // ------------------------------------------------------------------ activations
  /// y = x sigmoid(x)
  template <class T>
  static void silu_forward(const B&, ConstView<T> x, View<T> y) {
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * detail::sigmoid(x[i]);
  }
  /// dx (+)= dy * silu'(x)
  template <class T>
  static void silu_backward(const B&, ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      const T g = dy[i] * detail::silu_grad(x[i]);
      dx[i] = acc ? dx[i] + g : g;
    }
  }

  // ------------------------------------------------------------------ group norm
  /// x: (N, C, H, W), gamma/beta: (C), mean/rstd: (N, G) outputs (saved for backward).
  /// y = gamma (x - mean) rstd + beta, then SiLU if `silu`. rstd = 1 / sqrt(var + eps), biased var.
  template <class T>
  static void group_norm_forward(const B&, ConstView<T> x, ConstView<T> gamma, ConstView<T> beta,
                                 View<T> y, View<T> mean, View<T> rstd, std::size_t groups,
                                 double eps, bool silu) {
    const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w(), G = groups, Cg = C / G;
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t g = 0; g < G; ++g) {
        const T* xp = x.data() + (n * C + g * Cg) * HW;
        double s = 0, ss = 0;
        for (std::size_t i = 0; i < Cg * HW; ++i) s += xp[i];
        const double mu = s / double(Cg * HW);
        for (std::size_t i = 0; i < Cg * HW; ++i) ss += (xp[i] - mu) * (xp[i] - mu);
        const double var = ss / double(Cg * HW);
        const T r = T(1.0 / std::sqrt(var + eps));
        mean[n * G + g] = T(mu);
        rstd[n * G + g] = r;
        for (std::size_t c = 0; c < Cg; ++c) {
          const std::size_t ch = g * Cg + c;
          for (std::size_t i = 0; i < HW; ++i) {
            const std::size_t idx = (n * C + ch) * HW + i;
            T z = gamma[ch] * (x[idx] - T(mu)) * r + beta[ch];
            if (silu) z = z * detail::sigmoid(z);
            y[idx] = z;
          }
        }
      }
  }
  /// Backward of group_norm_forward (recomputes the normalised input from x, mean, rstd):
  /// dx (+)= ..., dgamma += sum(g xhat), dbeta += sum(g), with g = dy (times silu' if `silu`).
  template <class T>
  static void group_norm_backward(const B&, ConstView<T> x, ConstView<T> gamma,
                                  ConstView<T> beta, ConstView<T> mean, ConstView<T> rstd,
                                  ConstView<T> dy, View<T> dx, View<T> dgamma, View<T> dbeta,
                                  std::size_t groups, bool silu, bool acc) {
    const std::size_t N = x.n(), C = x.c(), HW = x.h() * x.w(), G = groups, Cg = C / G;
    const double M = double(Cg * HW);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t g = 0; g < G; ++g) {
        const T mu = mean[n * G + g], r = rstd[n * G + g];
        double sum_dxhat = 0, sum_dxhat_xhat = 0;
        for (std::size_t c = 0; c < Cg; ++c) {
          const std::size_t ch = g * Cg + c;
          for (std::size_t i = 0; i < HW; ++i) {
            const std::size_t idx = (n * C + ch) * HW + i;
            const T xhat = (x[idx] - mu) * r;
            T gr = dy[idx];
            if (silu) gr *= detail::silu_grad(gamma[ch] * xhat + beta[ch]);
            dgamma[ch] += gr * xhat;
            dbeta[ch] += gr;
            const double dxhat = double(gr) * double(gamma[ch]);
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * double(xhat);
          }
        }
        const double m1 = sum_dxhat / M, m2 = sum_dxhat_xhat / M;
        if (dx.empty()) continue;
        for (std::size_t c = 0; c < Cg; ++c) {
          const std::size_t ch = g * Cg + c;
          for (std::size_t i = 0; i < HW; ++i) {
            const std::size_t idx = (n * C + ch) * HW + i;
            const T xhat = (x[idx] - mu) * r;
            T gr = dy[idx];
            if (silu) gr *= detail::silu_grad(gamma[ch] * xhat + beta[ch]);
            const double dxhat = double(gr) * double(gamma[ch]);
            const T v = T(double(r) * (dxhat - m1 - double(xhat) * m2));
            dx[idx] = acc ? dx[idx] + v : v;
          }
        }
      }
  }

  // ------------------------------------------------------------------ convolution
  /// y = conv(x, w) + bias. x (N, Ci, H, W), w (Co, Ci, k, k), bias (Co) or empty, y (N, Co, Ho, Wo).
  template <class T>
  static void conv2d_forward(const B&, ConstView<T> x, ConstView<T> w, ConstView<T> bias,
                             View<T> y, ConvGeometry g) {
    const std::size_t N = x.n(), Ci = x.c(), H = x.h(), W = x.w(), Co = w.n(), k = g.kernel;
    const std::size_t Ho = g.out_size(H), Wo = g.out_size(W);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t co = 0; co < Co; ++co)
        for (std::size_t oh = 0; oh < Ho; ++oh)
          for (std::size_t ow = 0; ow < Wo; ++ow) {
            T s = bias.empty() ? T(0) : bias[co];
            for (std::size_t ci = 0; ci < Ci; ++ci)
              for (std::size_t kh = 0; kh < k; ++kh)
                for (std::size_t kw = 0; kw < k; ++kw) {
                  const std::ptrdiff_t ih = std::ptrdiff_t(oh * g.stride + kh) - std::ptrdiff_t(g.pad);
                  const std::ptrdiff_t iw = std::ptrdiff_t(ow * g.stride + kw) - std::ptrdiff_t(g.pad);
                  if (ih < 0 || iw < 0 || ih >= std::ptrdiff_t(H) || iw >= std::ptrdiff_t(W)) continue;
                  s += x[((n * Ci + ci) * H + std::size_t(ih)) * W + std::size_t(iw)] *
                       w[((co * Ci + ci) * k + kh) * k + kw];
                }
            y[((n * Co + co) * Ho + oh) * Wo + ow] = s;
          }
  }
  /// dx (+)= conv^T(dy, w) (skipped if dx is empty); dw += corr(x, dy); db += sum dy (if not empty).
  template <class T>
  static void conv2d_backward(const B&, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, ConvGeometry g, bool acc) {
    const std::size_t N = x.n(), Ci = x.c(), H = x.h(), W = x.w(), Co = w.n(), k = g.kernel;
    const std::size_t Ho = g.out_size(H), Wo = g.out_size(W);
    if (!dx.empty() && !acc)
      for (std::size_t i = 0; i < dx.size(); ++i) dx[i] = T(0);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t co = 0; co < Co; ++co)
        for (std::size_t oh = 0; oh < Ho; ++oh)
          for (std::size_t ow = 0; ow < Wo; ++ow) {
            const T d = dy[((n * Co + co) * Ho + oh) * Wo + ow];
            if (!db.empty()) db[co] += d;
            for (std::size_t ci = 0; ci < Ci; ++ci)
              for (std::size_t kh = 0; kh < k; ++kh)
                for (std::size_t kw = 0; kw < k; ++kw) {
                  const std::ptrdiff_t ih = std::ptrdiff_t(oh * g.stride + kh) - std::ptrdiff_t(g.pad);
                  const std::ptrdiff_t iw = std::ptrdiff_t(ow * g.stride + kw) - std::ptrdiff_t(g.pad);
                  if (ih < 0 || iw < 0 || ih >= std::ptrdiff_t(H) || iw >= std::ptrdiff_t(W)) continue;
                  const std::size_t xi = ((n * Ci + ci) * H + std::size_t(ih)) * W + std::size_t(iw);
                  const std::size_t wi = ((co * Ci + ci) * k + kh) * k + kw;
                  dw[wi] += d * x[xi];
                  if (!dx.empty()) dx[xi] += d * w[wi];
                }
          }
  }

  // ------------------------------------------------------------------ linear
  /// y = x w^T + b. x (N, In), w (Out, In), b (Out) or empty, y (N, Out).
  template <class T>
  static void linear_forward(const B&, ConstView<T> x, ConstView<T> w, ConstView<T> b, View<T> y) {
    const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t o = 0; o < Out; ++o) {
        T s = b.empty() ? T(0) : b[o];
        for (std::size_t i = 0; i < In; ++i) s += x[n * In + i] * w[o * In + i];
        y[n * Out + o] = s;
      }
  }
  /// dx (+)= dy w (if dx not empty); dw += dy^T x; db += sum_n dy (if db not empty).
  template <class T>
  static void linear_backward(const B&, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, bool acc) {
    const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t i = 0; i < In && !dx.empty(); ++i) {
        T s = 0;
        for (std::size_t o = 0; o < Out; ++o) s += dy[n * Out + o] * w[o * In + i];
        dx[n * In + i] = acc ? dx[n * In + i] + s : s;
      }
      for (std::size_t o = 0; o < Out; ++o) {
        for (std::size_t i = 0; i < In; ++i) dw[o * In + i] += dy[n * Out + o] * x[n * In + i];
        if (!db.empty()) db[o] += dy[n * Out + o];
      }
    }
  }

  // ------------------------------------------------------------------ attention
  /// Single-head self-attention over the H*W positions. qkv (N, 3C, H, W) holds q, k, v in that
  /// channel order; probs (N, P, P) receives softmax_j(scale q_i . k_j) (saved for backward);
  /// out (N, C, H, W): out[c, i] = sum_j v[c, j] probs[i, j]. scale = 1 / sqrt(C).
  template <class T>
  static void attention_forward(const B&, ConstView<T> qkv, View<T> probs, View<T> out) {
    const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
    const T scale = T(1) / std::sqrt(T(C));
    std::vector<T> row(P);
    for (std::size_t n = 0; n < N; ++n) {
      const T* q = qkv.data() + n * 3 * C * P;
      const T* k = q + C * P;
      const T* v = k + C * P;
      T* pr = probs.data() + n * P * P;
      for (std::size_t i = 0; i < P; ++i) {
        T mx = -std::numeric_limits<T>::infinity();
        for (std::size_t j = 0; j < P; ++j) {
          T s = 0;
          for (std::size_t c = 0; c < C; ++c) s += q[c * P + i] * k[c * P + j];
          row[j] = s * scale;
          mx = std::max(mx, row[j]);
        }
        T z = 0;
        for (std::size_t j = 0; j < P; ++j) z += (row[j] = std::exp(row[j] - mx));
        for (std::size_t j = 0; j < P; ++j) pr[i * P + j] = row[j] / z;
      }
      T* o = out.data() + n * C * P;
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t i = 0; i < P; ++i) {
          T s = 0;
          for (std::size_t j = 0; j < P; ++j) s += v[c * P + j] * pr[i * P + j];
          o[c * P + i] = s;
        }
    }
  }
  /// dqkv = d(out)/d(qkv) applied to dout (assigned, not accumulated).
  template <class T>
  static void attention_backward(const B&, ConstView<T> qkv, ConstView<T> probs,
                                 ConstView<T> dout, View<T> dqkv) {
    const std::size_t N = qkv.n(), C = qkv.c() / 3, P = qkv.h() * qkv.w();
    const T scale = T(1) / std::sqrt(T(C));
    std::vector<T> ds(P * P);
    for (std::size_t n = 0; n < N; ++n) {
      const T* q = qkv.data() + n * 3 * C * P;
      const T* k = q + C * P;
      const T* v = k + C * P;
      const T* pr = probs.data() + n * P * P;
      const T* d = dout.data() + n * C * P;
      T* dq = dqkv.data() + n * 3 * C * P;
      T* dk = dq + C * P;
      T* dv = dk + C * P;
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t j = 0; j < P; ++j) {
          T s = 0;
          for (std::size_t i = 0; i < P; ++i) s += d[c * P + i] * pr[i * P + j];
          dv[c * P + j] = s;
        }
      for (std::size_t i = 0; i < P; ++i) {
        T dot = 0;
        for (std::size_t j = 0; j < P; ++j) {
          T dp = 0;
          for (std::size_t c = 0; c < C; ++c) dp += d[c * P + i] * v[c * P + j];
          ds[i * P + j] = dp;
          dot += dp * pr[i * P + j];
        }
        for (std::size_t j = 0; j < P; ++j) ds[i * P + j] = pr[i * P + j] * (ds[i * P + j] - dot);
      }
      for (std::size_t c = 0; c < C; ++c) {
        for (std::size_t i = 0; i < P; ++i) {
          T s = 0;
          for (std::size_t j = 0; j < P; ++j) s += ds[i * P + j] * k[c * P + j];
          dq[c * P + i] = s * scale;
        }
        for (std::size_t j = 0; j < P; ++j) {
          T s = 0;
          for (std::size_t i = 0; i < P; ++i) s += ds[i * P + j] * q[c * P + i];
          dk[c * P + j] = s * scale;
        }
      }
    }
  }

  // ------------------------------------------------------------------ resampling, concat, bias
  /// Nearest-neighbour x2: y (N, C, 2H, 2W), y[2h + a, 2w + b] = x[h, w].
  template <class T>
  static void upsample2x_forward(const B&, ConstView<T> x, View<T> y) {
    const std::size_t NC = x.n() * x.c(), H = x.h(), W = x.w();
    for (std::size_t p = 0; p < NC; ++p)
      for (std::size_t h = 0; h < 2 * H; ++h)
        for (std::size_t w = 0; w < 2 * W; ++w)
          y[(p * 2 * H + h) * 2 * W + w] = x[(p * H + h / 2) * W + w / 2];
  }
  /// dx (+)= sum of the four dy entries each x entry was copied to.
  template <class T>
  static void upsample2x_backward(const B&, ConstView<T> dy, View<T> dx, bool acc) {
    const std::size_t NC = dx.n() * dx.c(), H = dx.h(), W = dx.w();
    for (std::size_t p = 0; p < NC; ++p)
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t w = 0; w < W; ++w) {
          const T* d = dy.data() + (p * 2 * H + 2 * h) * 2 * W + 2 * w;
          const T s = d[0] + d[1] + d[2 * W] + d[2 * W + 1];
          T& o = dx[(p * H + h) * W + w];
          o = acc ? o + s : s;
        }
  }
  /// out (N, Ca + Cb, H, W) = [a, b] along channels.
  template <class T>
  static void concat_channels(const B&, ConstView<T> a, ConstView<T> b, View<T> out) {
    const std::size_t N = a.n(), sa = a.size() / N, sb = b.size() / N;
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t i = 0; i < sa; ++i) out[n * (sa + sb) + i] = a[n * sa + i];
      for (std::size_t i = 0; i < sb; ++i) out[n * (sa + sb) + sa + i] = b[n * sb + i];
    }
  }
  /// Backward of concat: dout (N, C, H, W) with the first `ca` channels belonging to a:
  /// da (+)= dout[:, :ca], db (+)= dout[:, ca:]; an empty da or db is skipped.
  template <class T>
  static void split_channels(const B&, ConstView<T> dout, std::size_t ca, View<T> da, bool acc_a,
                             View<T> db, bool acc_b) {
    const std::size_t N = dout.n(), s = dout.size() / N, HW = dout.h() * dout.w();
    const std::size_t sa = ca * HW, sb = s - sa;
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t i = 0; i < sa && !da.empty(); ++i) {
        T& o = da[n * sa + i];
        o = acc_a ? o + dout[n * s + i] : dout[n * s + i];
      }
      for (std::size_t i = 0; i < sb && !db.empty(); ++i) {
        T& o = db[n * sb + i];
        o = acc_b ? o + dout[n * s + sa + i] : dout[n * s + sa + i];
      }
    }
  }
  /// x[n, c, :, :] += bias[n, c]  (x (N, C, H, W), bias (N, C)).
  template <class T>
  static void add_channel_bias(const B&, View<T> x, ConstView<T> bias) {
    const std::size_t NC = x.n() * x.c(), HW = x.h() * x.w();
    for (std::size_t p = 0; p < NC; ++p)
      for (std::size_t i = 0; i < HW; ++i) x[p * HW + i] += bias[p];
  }
  /// dbias[n, c] = sum over H, W of dy[n, c]  (assigned).
  template <class T>
  static void channel_sum(const B&, ConstView<T> dy, View<T> dbias) {
    const std::size_t NC = dy.n() * dy.c(), HW = dy.h() * dy.w();
    for (std::size_t p = 0; p < NC; ++p) {
      T s = 0;
      for (std::size_t i = 0; i < HW; ++i) s += dy[p * HW + i];
      dbias[p] = s;
    }
  }

  // ------------------------------------------------------------------ dropout
  /// y = x * keep_i / (1 - p), keep_i = uniform(stream, i) >= p (Philox, so backward regenerates
  /// the mask instead of storing it). p = 0 copies.
  template <class T>
  static void dropout_forward(const B&, ConstView<T> x, View<T> y, double p, Rng rng,
                              std::uint64_t stream) {
    const T s = T(1.0 / (1.0 - p));
    for (std::size_t i = 0; i < x.size(); ++i)
      y[i] = (p == 0.0 || detail::dropout_keep(rng, stream, i, p)) ? x[i] * (p == 0.0 ? T(1) : s) : T(0);
  }
  /// dx (+)= dy * keep / (1 - p)
  template <class T>
  static void dropout_backward(const B&, ConstView<T> dy, View<T> dx, double p, Rng rng,
                               std::uint64_t stream, bool acc) {
    const T s = T(1.0 / (1.0 - p));
    for (std::size_t i = 0; i < dy.size(); ++i) {
      const T g = (p == 0.0 || detail::dropout_keep(rng, stream, i, p)) ? dy[i] * (p == 0.0 ? T(1) : s) : T(0);
      dx[i] = acc ? dx[i] + g : g;
    }
  }

  // ------------------------------------------------------------------ embeddings
  /// out[n, :] = table[labels[n], :]. table (R, D), labels (N) in [0, R), out (N, D).
  template <class T>
  static void embedding_forward(const B&, ConstView<T> table, ConstView<std::int32_t> labels,
                                View<T> out) {
    const std::size_t D = table.dim(1);
    for (std::size_t n = 0; n < labels.size(); ++n)
      for (std::size_t d = 0; d < D; ++d) out[n * D + d] = table[std::size_t(labels[n]) * D + d];
  }
  /// dtable[labels[n], :] += dout[n, :]
  template <class T>
  static void embedding_backward(const B&, ConstView<std::int32_t> labels, ConstView<T> dout,
                                 View<T> dtable) {
    const std::size_t D = dtable.dim(1);
    for (std::size_t n = 0; n < labels.size(); ++n)
      for (std::size_t d = 0; d < D; ++d) dtable[std::size_t(labels[n]) * D + d] += dout[n * D + d];
  }
  /// out (N, D) = [sin(t f_i), cos(t f_i)], f_i = exp(-ln(10000) i / (D/2 - 1)); odd D: last = 0.
  template <class T>
  static void timestep_embedding(const B&, ConstView<std::int32_t> t, View<T> out) {
    const std::size_t N = t.size(), D = out.dim(1), half = D / 2;
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t i = 0; i < half; ++i) {
        const float arg = static_cast<float>(t[n]) * detail::timestep_frequency(i, half);
        out[n * D + i] = T(std::sin(double(arg)));
        out[n * D + half + i] = T(std::cos(double(arg)));
      }
      if (D % 2) out[n * D + D - 1] = T(0);
    }
  }

  // ------------------------------------------------------------------ diffusion
  /// out[n, i] = normal(stream, index0 + n * item + i)  (i.e. element e gets normal(stream, index0 + e))
  template <class T>
  static void fill_normal(const B&, View<T> out, Rng rng, std::uint64_t stream,
                          std::uint64_t index0) {
    rng.fill_normal(out.data(), out.size(), stream, index0);
  }
  /// out[n, :] = ca[n] a[n, :] + cb[n] b[n, :] (+ cz[n] z[n, :] if z is not empty).
  /// q_sample is lincomb(sqrt_abar, x0, sqrt_1m_abar, eps); sampler updates are lincombs too.
  template <class T>
  static void lincomb(const B&, View<T> out, ConstView<T> ca, ConstView<T> a, ConstView<T> cb,
                      ConstView<T> b, ConstView<T> cz, ConstView<T> z) {
    const std::size_t N = out.n(), item = out.size() / N;
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t i = 0; i < item; ++i) {
        const std::size_t e = n * item + i;
        T v = ca[n] * a[e] + cb[n] * b[e];
        if (!z.empty()) v += cz[n] * z[e];
        out[e] = v;
      }
  }
  /// Loss of one batch and its gradient:
  ///   d = out - P::target(x0, eps, a, s);  loss = mean(w[n] L.value(d));  dout = w[n] L.grad(d) / numel
  /// (w empty means 1). Returns the loss in double.
  template <class P, class L, class T>
  static double diffusion_loss(const B&, const L& loss, ConstView<T> out, ConstView<T> x0,
                               ConstView<T> eps, ConstView<T> a, ConstView<T> s, ConstView<T> w,
                               View<T> dout) {
    const std::size_t N = out.n(), item = out.size() / N;
    const T inv = T(1) / T(out.size());
    double total = 0;
    for (std::size_t n = 0; n < N; ++n) {
      const T wn = w.empty() ? T(1) : w[n];
      double part = 0;
      for (std::size_t i = 0; i < item; ++i) {
        const std::size_t e = n * item + i;
        const T d = out[e] - detail::target_target<P, T>(x0[e], eps[e], a[n], s[n]);
        part += double(detail::loss_value(loss, d));
        dout[e] = wn * detail::loss_grad(loss, d) * inv;
      }
      total += double(wn) * part;
    }
    return total / double(out.size());
  }
  /// From the network output: x0 = P::x0(xt, out), clipped to [-1, 1] if `clip`; eps = P::eps(xt,
  /// out) without clipping, (xt - a x0) / s with it (as the reference sampler).
  template <class P, class T>
  static void predict(const B&, ConstView<T> xt, ConstView<T> out, ConstView<T> a, ConstView<T> s,
                      bool clip, View<T> x0, View<T> eps) {
    const std::size_t N = xt.n(), item = xt.size() / N;
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t i = 0; i < item; ++i) {
        const std::size_t e = n * item + i;
        T x = detail::target_x0<P, T>(xt[e], out[e], a[n], s[n]);
        if (clip) {
          x = std::min(std::max(x, T(-1)), T(1));
          if (!eps.empty()) eps[e] = (xt[e] - a[n] * x) / s[n];
        } else if (!eps.empty()) {
          eps[e] = detail::target_eps<P, T>(xt[e], out[e], a[n], s[n]);
        }
        x0[e] = x;
      }
  }
  /// Classifier-free guidance: out = uncond + w (cond - uncond).
  template <class T>
  static void guidance(const B&, ConstView<T> cond, ConstView<T> uncond, T w, View<T> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = uncond[i] + w * (cond[i] - uncond[i]);
  }
  /// Clamps x to [lo, hi].
  template <class T>
  static void clamp(const B&, View<T> x, T lo, T hi) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::min(std::max(x[i], lo), hi);
  }

  // ------------------------------------------------------------------ optimisation
  /// One Adam/AdamW step on a parameter tensor (PyTorch's formula and operation order):
  ///   g = grad * grad_scale (+ wd p if not decoupled);  p *= 1 - lr wd (if decoupled)
  ///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
  ///   p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  template <class T>
  static void adam_step(const B&, View<T> p, ConstView<T> grad, View<T> m, View<T> v,
                        const AdamStep& s) {
    const double bc1 = 1.0 - std::pow(s.beta1, double(s.step));
    const double bc2s = std::sqrt(1.0 - std::pow(s.beta2, double(s.step)));
    const T step_size = T(s.lr / bc1), b1 = T(s.beta1), b2 = T(s.beta2), eps = T(s.eps);
    const T decay = T(1.0 - s.lr * s.weight_decay), gs = T(s.grad_scale), wd = T(s.weight_decay);
    for (std::size_t i = 0; i < p.size(); ++i) {
      T g = grad[i] * gs;
      if (s.weight_decay != 0.0) {
        if (s.decoupled) p[i] *= decay;
        else g += wd * p[i];
      }
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      const T denom = std::sqrt(v[i]) / T(bc2s) + eps;
      p[i] -= step_size * m[i] / denom;
    }
  }
  /// ema = decay ema + (1 - decay) p
  template <class T>
  static void ema_update(const B&, View<T> ema, ConstView<T> p, T decay) {
    for (std::size_t i = 0; i < p.size(); ++i) ema[i] = decay * ema[i] + (T(1) - decay) * p[i];
  }
};

DDPM_CHECK_BACKEND_OPS(backend::Reference);

}  // namespace ddpm
