// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/gemm.cuh — row-major GEMM on cuBLAS, and the convolutions and linear layers
// built on it. nvcc only.
//
// Convolution (k > 1 or strided): a chunk of Nc samples is unfolded into col (K x Nc*P),
// K = Ci k k, P = Ho Wo, columns ordered (sample, position); then
//   forward   Y' (Co x Nc*P) = W (Co x K) col,  y[n, co, p] = Y'[co, n P + p] + bias[co]
//   backward  dyT (Co x Nc*P) = dy transposed;  dW += dyT col^T;  dcol = W^T dyT;  dx (+)= fold(dcol)
// so every GEMM is one large call. 1x1 stride-1 convolutions skip the unfolding in the forward and
// input-gradient passes (strided batched GEMMs straight on NCHW). The fold (col2im) gathers, one
// thread per input element, so no atomics: results are deterministic.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/elementwise.cuh"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/assert.hpp"

namespace ddpm::detail::cuda {

/// C (M x N) = alpha op(A) op(B) + beta C, all row-major: op(A) is M x K, op(B) is K x N; lda, ldb,
/// ldc are the row strides of the stored matrices (A stored K x M when ta). Implemented as the
/// column-major product C^T = op(B)^T op(A)^T.
inline void gemm_rm(Context& c, bool tf32, bool ta, bool tb, std::size_t M, std::size_t N,
                    std::size_t K, float alpha, const float* A, std::size_t lda, const float* B,
                    std::size_t ldb, float beta, float* C, std::size_t ldc) {
  if (M == 0 || N == 0) return;
  c.set_tf32(tf32);
  DDPM_CUBLAS_CHECK(cublasSgemm(c.cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                as_int(N, "GEMM n"), as_int(M, "GEMM m"), as_int(K, "GEMM k"), &alpha, B,
                                as_int(ldb, "GEMM ldb"), A, as_int(lda, "GEMM lda"), &beta, C,
                                as_int(ldc, "GEMM ldc")));
}

/// gemm_rm over `batch` matrices at fixed strides (a stride may be 0: a shared operand).
inline void gemm_rm_batched(Context& c, bool tf32, bool ta, bool tb, std::size_t M, std::size_t N,
                            std::size_t K, float alpha, const float* A, std::size_t lda,
                            std::size_t strideA, const float* B, std::size_t ldb, std::size_t strideB,
                            float beta, float* C, std::size_t ldc, std::size_t strideC,
                            std::size_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  c.set_tf32(tf32);
  DDPM_CUBLAS_CHECK(cublasSgemmStridedBatched(
      c.cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "GEMM n"),
      as_int(M, "GEMM m"), as_int(K, "GEMM k"), &alpha, B, as_int(ldb, "GEMM ldb"),
      static_cast<long long>(strideB), A, as_int(lda, "GEMM lda"), static_cast<long long>(strideA),
      &beta, C, as_int(ldc, "GEMM ldc"), static_cast<long long>(strideC), as_int(batch, "GEMM batch")));
}

struct ConvDims {
  std::size_t N, Ci, H, W, Co, k, stride, pad, Ho, Wo, P, K;
};

inline ConvDims conv_dims(CFV x, CFV w, ConvGeometry g) {
  ConvDims d{};
  d.N = x.n();
  d.Ci = x.c();
  d.H = x.h();
  d.W = x.w();
  d.Co = w.n();
  d.k = g.kernel;
  d.stride = g.stride;
  d.pad = g.pad;
  d.Ho = g.out_size(d.H);
  d.Wo = g.out_size(d.W);
  d.P = d.Ho * d.Wo;
  d.K = d.Ci * d.k * d.k;
  return d;
}

/// Samples per chunk so that `per_sample` bytes times the chunk stay within `budget` bytes (at least
/// one sample per chunk, whatever the budget).
inline std::size_t chunk_samples(std::size_t N, std::size_t per_sample, std::size_t budget) {
  const std::size_t c = per_sample ? budget / per_sample : N;
  return std::max<std::size_t>(1, std::min(N, c));
}

/// col[r, q], r = (ci, kh, kw), q = (local sample, oh, ow) over Q = Nc P columns.
struct Im2colOp {
  const float* x;  // first sample of the chunk
  float* col;
  unsigned Ci, H, W, k, stride, pad, Wo, P;
  std::size_t Q;
  __device__ void operator()(std::size_t r, unsigned q) const {
    const unsigned kw = unsigned(r % k), kh = unsigned((r / k) % k), ci = unsigned(r / (std::size_t(k) * k));
    const unsigned nl = q / P, p = q % P, oh = p / Wo, ow = p % Wo;
    const int ih = int(oh * stride + kh) - int(pad), iw = int(ow * stride + kw) - int(pad);
    float v = 0.0f;
    if (ih >= 0 && iw >= 0 && ih < int(H) && iw < int(W))
      v = x[((std::size_t(nl) * Ci + ci) * H + unsigned(ih)) * W + unsigned(iw)];
    col[r * Q + q] = v;
  }
};

/// dx[n, ci, ih, iw] (+)= sum over (kh, kw) of dcol at the output position that read it.
struct Col2imOp {
  const float* dcol;
  float* dx;  // first sample of the chunk
  unsigned Ci, H, W, k, stride, pad, Ho, Wo, P;
  std::size_t Q;
  bool acc;
  __device__ void operator()(std::size_t row, unsigned i) const {  // row = (local sample, ci)
    const unsigned nl = unsigned(row / Ci), ci = unsigned(row % Ci);
    const unsigned ih = i / W, iw = i % W;
    float s = 0.0f;
    for (unsigned kh = 0; kh < k; ++kh) {
      const int ohs = int(ih) + int(pad) - int(kh);
      if (ohs < 0 || ohs % int(stride) != 0) continue;
      const unsigned oh = unsigned(ohs) / stride;
      if (oh >= Ho) continue;
      for (unsigned kw = 0; kw < k; ++kw) {
        const int ows = int(iw) + int(pad) - int(kw);
        if (ows < 0 || ows % int(stride) != 0) continue;
        const unsigned ow = unsigned(ows) / stride;
        if (ow >= Wo) continue;
        const std::size_t r = (std::size_t(ci) * k + kh) * k + kw;
        s += dcol[r * Q + std::size_t(nl) * P + oh * Wo + ow];
      }
    }
    float& o = dx[row * H * W + i];
    o = acc ? o + s : s;
  }
};

/// y[n, co, p] = t[co, n P + p] (+ bias[co]): rows (n, co) of the chunk.
struct FromCnpOp {
  const float* t;
  float* y;  // first sample of the chunk
  const float* bias;
  unsigned Co, P;
  std::size_t Q;
  __device__ void operator()(std::size_t row, unsigned p) const {  // row = (local sample, co)
    const std::size_t nl = row / Co, co = row % Co;
    float v = t[co * Q + nl * P + p];
    if (bias) v += bias[co];
    y[row * P + p] = v;
  }
};

/// t[co, n P + p] = y[n, co, p]: rows (co, local sample).
struct ToCnpOp {
  const float* y;  // first sample of the chunk
  float* t;
  unsigned Co, P, Nc;
  __device__ void operator()(std::size_t row, unsigned p) const {  // row = (co, local sample)
    const std::size_t co = row / Nc, nl = row % Nc;
    t[row * P + p] = y[(nl * Co + co) * P + p];
  }
};

/// y[row, p] += bias[row % Co], rows = (sample, channel): the bias of a 1x1 convolution.
struct ChannelBiasOp {
  float* y;
  const float* bias;
  unsigned P, Co;
  __device__ void operator()(std::size_t row, unsigned p) const { y[row * P + p] += bias[row % Co]; }
};

inline bool is_pointwise(const ConvDims& d) { return d.k == 1 && d.stride == 1 && d.pad == 0; }

template <class D>
void Kernels<D>::conv2d_forward(const Be& be, CFV x, CFV w, CFV bias, FV y, ConvGeometry g) {
  const On on_(be);  // the tag's device, whichever is current
  const ConvDims d = conv_dims(x, w, g);
  if (d.N == 0 || d.Co == 0 || d.P == 0) return;
  Context& c = ctx(be);
  if (is_pointwise(d)) {
    // y_n (Co x P) = W (Co x Ci) x_n (Ci x P), all samples in one batched call.
    gemm_rm_batched(c, be.tf32, false, false, d.Co, d.P, d.Ci, 1.0f, w.data(), d.Ci, 0, x.data(), d.P,
                    d.Ci * d.P, 0.0f, y.data(), d.P, d.Co * d.P, d.N);
    if (!bias.empty())
      launch_rows(c.stream, d.N * d.Co, d.P, ChannelBiasOp{y.data(), bias.data(), unsigned(d.P), unsigned(d.Co)});
    return;
  }
  const std::size_t Nc = chunk_samples(d.N, (d.K + d.Co) * d.P * sizeof(float), chunk_budget(be));
  float* col = c.scratch_as<float>(slot::col, d.K * Nc * d.P);
  float* tmp = c.scratch_as<float>(slot::tmp, d.Co * Nc * d.P);
  for (std::size_t n0 = 0; n0 < d.N; n0 += Nc) {
    const std::size_t nc = std::min(Nc, d.N - n0), Q = nc * d.P;
    launch_rows(c.stream, d.K, Q,
                Im2colOp{x.data() + n0 * d.Ci * d.H * d.W, col, unsigned(d.Ci), unsigned(d.H), unsigned(d.W),
                         unsigned(d.k), unsigned(d.stride), unsigned(d.pad), unsigned(d.Wo), unsigned(d.P), Q});
    gemm_rm(c, be.tf32, false, false, d.Co, Q, d.K, 1.0f, w.data(), d.K, col, Q, 0.0f, tmp, Q);
    launch_rows(c.stream, nc * d.Co, d.P,
                FromCnpOp{tmp, y.data() + n0 * d.Co * d.P, bias.empty() ? nullptr : bias.data(),
                          unsigned(d.Co), unsigned(d.P), Q});
  }
}

template <class D>
void Kernels<D>::conv2d_backward(const Be& be, CFV x, CFV w, CFV dy, FV dx, FV dw, FV db,
                                 ConvGeometry g, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  const ConvDims d = conv_dims(x, w, g);
  if (d.N == 0 || d.Co == 0) return;
  Context& c = ctx(be);
  if (d.P == 0) {
    if (!dx.empty() && !acc) fill(be, dx, 0.0f);
    return;
  }
  // db += sum over samples and positions: per-(n, co) sums, then over n in order.
  if (!db.empty()) {
    float* rs = c.scratch_as<float>(slot::rowsum, d.N * d.Co);
    row_sums(c.stream, dy.data(), rs, d.N * d.Co, d.P);
    col_sums(c.stream, rs, db.data(), d.N, d.Co, true);
  }
  const bool point = is_pointwise(d);
  if (point && !dx.empty()) {
    // dx_n (Ci x P) (+)= W^T (Ci x Co) dy_n (Co x P)
    gemm_rm_batched(c, be.tf32, true, false, d.Ci, d.P, d.Co, 1.0f, w.data(), d.Ci, 0, dy.data(), d.P,
                    d.Co * d.P, acc ? 1.0f : 0.0f, dx.data(), d.P, d.Ci * d.P, d.N);
  }
  const bool want_dx = !point && !dx.empty();
  const std::size_t Nc = chunk_samples(d.N, (d.K + d.Co) * d.P * sizeof(float), chunk_budget(be));
  float* col = c.scratch_as<float>(slot::col, d.K * Nc * d.P);
  float* dyt = c.scratch_as<float>(slot::tmp, d.Co * Nc * d.P);
  for (std::size_t n0 = 0; n0 < d.N; n0 += Nc) {
    const std::size_t nc = std::min(Nc, d.N - n0), Q = nc * d.P;
    launch_rows(c.stream, d.Co * nc, d.P,
                ToCnpOp{dy.data() + n0 * d.Co * d.P, dyt, unsigned(d.Co), unsigned(d.P), unsigned(nc)});
    launch_rows(c.stream, d.K, Q,
                Im2colOp{x.data() + n0 * d.Ci * d.H * d.W, col, unsigned(d.Ci), unsigned(d.H), unsigned(d.W),
                         unsigned(d.k), unsigned(d.stride), unsigned(d.pad), unsigned(d.Wo), unsigned(d.P), Q});
    // dW (Co x K) += dyT (Co x Q) col^T (Q x K)
    gemm_rm(c, be.tf32, false, true, d.Co, d.K, Q, 1.0f, dyt, Q, col, Q, 1.0f, dw.data(), d.K);
    if (want_dx) {
      // dcol (K x Q) = W^T (K x Co) dyT (Co x Q), into col (the dW GEMM before it is done with it)
      gemm_rm(c, be.tf32, true, false, d.K, Q, d.Co, 1.0f, w.data(), d.K, dyt, Q, 0.0f, col, Q);
      launch_rows(c.stream, nc * d.Ci, d.H * d.W,
                  Col2imOp{col, dx.data() + n0 * d.Ci * d.H * d.W, unsigned(d.Ci), unsigned(d.H), unsigned(d.W),
                           unsigned(d.k), unsigned(d.stride), unsigned(d.pad), unsigned(d.Ho), unsigned(d.Wo),
                           unsigned(d.P), Q, acc});
    }
  }
}

template <class D>
void Kernels<D>::linear_forward(const Be& be, CFV x, CFV w, CFV b, FV y) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
  if (N == 0 || Out == 0) return;
  Context& c = ctx(be);
  // y (N x Out) = x (N x In) W^T
  gemm_rm(c, be.tf32, false, true, N, Out, In, 1.0f, x.data(), In, w.data(), In, 0.0f, y.data(), Out);
  if (!b.empty()) launch_rows(c.stream, N, Out, ColBiasOp{y.data(), b.data(), unsigned(Out)});
}

template <class D>
void Kernels<D>::linear_backward(const Be& be, CFV x, CFV w, CFV dy, FV dx, FV dw, FV db, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = x.dim(0), In = w.dim(1), Out = w.dim(0);
  if (N == 0) return;
  Context& c = ctx(be);
  // dx (N x In) (+)= dy (N x Out) W (Out x In)
  if (!dx.empty())
    gemm_rm(c, be.tf32, false, false, N, In, Out, 1.0f, dy.data(), Out, w.data(), In, acc ? 1.0f : 0.0f,
            dx.data(), In);
  // dW (Out x In) += dy^T (Out x N) x (N x In)
  gemm_rm(c, be.tf32, true, false, Out, In, N, 1.0f, dy.data(), Out, x.data(), In, 1.0f, dw.data(), In);
  if (!db.empty()) col_sums(c.stream, dy.data(), db.data(), N, Out, true);
}

}  // namespace ddpm::detail::cuda
