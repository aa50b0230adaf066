// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/elementwise.cuh — the element-wise, resampling, embedding, random and optimiser
// operations of Ops<backend::Cuda> (one thread per output element, grid-stride loops), and the
// deterministic reductions (sum of squares, per-row and per-column sums). nvcc only.
#pragma once
#if !defined(__CUDACC__)
#error "ddpm/backend/cuda/*.cuh must be compiled by nvcc: include <ddpm/backend/cuda.cuh> from a .cu file"
#endif

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ddpm/backend/cuda/common.cuh"
#include "ddpm/backend/cuda/context.cuh"
#include "ddpm/backend/cuda/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"

namespace ddpm::detail::cuda {

// ------------------------------------------------------------------ device math

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
/// d/dz z sigmoid(z), as the reference: s (1 + z (1 - s)).
__device__ __forceinline__ float silu_grad_(float z) {
  const float s = sigmoidf_(z);
  return s * (1.0f + z * (1.0f - s));
}

// ------------------------------------------------------------------ element functors

struct FillOp {
  float* x;
  float v;
  __device__ void operator()(std::size_t i) const { x[i] = v; }
};
struct AxpbyOp {
  float a, b;
  const float* x;
  float* y;
  __device__ void operator()(std::size_t i) const { y[i] = b == 0.0f ? a * x[i] : a * x[i] + b * y[i]; }
};
struct AddOp {
  const float* a;
  const float* b;
  float* out;
  __device__ void operator()(std::size_t i) const { out[i] = a[i] + b[i]; }
};
struct ScaleOp {
  float* x;
  float s;
  __device__ void operator()(std::size_t i) const { x[i] *= s; }
};
struct SiluOp {
  const float* x;
  float* y;
  __device__ void operator()(std::size_t i) const {
    const float v = x[i];
    y[i] = v * sigmoidf_(v);
  }
};
struct SiluBackOp {
  const float* x;
  const float* dy;
  float* dx;
  bool acc;
  __device__ void operator()(std::size_t i) const {
    const float g = dy[i] * silu_grad_(x[i]);
    dx[i] = acc ? dx[i] + g : g;
  }
};
struct GuidanceOp {
  const float* cond;
  const float* uncond;
  float w;
  float* out;
  __device__ void operator()(std::size_t i) const { out[i] = uncond[i] + w * (cond[i] - uncond[i]); }
};
struct ClampOp {
  float* x;
  float lo, hi;
  __device__ void operator()(std::size_t i) const {
    const float v = x[i];
    const float m = v < lo ? lo : v;  // std::max(v, lo): NaN stays NaN
    x[i] = hi < m ? hi : m;           // std::min(m, hi)
  }
};
struct EmaOp {
  float* ema;
  const float* p;
  float decay;
  __device__ void operator()(std::size_t i) const {
    ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
  }
};
/// Adam/AdamW in PyTorch's order (ddpm/backend/reference.hpp). mode 0: no weight decay,
/// 1: decoupled (AdamW), 2: L2 added to the gradient.
struct AdamOp {
  float* p;
  const float* grad;
  float* m;
  float* v;
  float step_size, b1, b2, eps, bc2s, decay, gs, wd;
  int mode;
  __device__ void operator()(std::size_t i) const {
    float pv = p[i];
    float g = grad[i] * gs;
    if (mode == 1) pv *= decay;
    else if (mode == 2) g += wd * pv;
    const float mv = b1 * m[i] + (1.0f - b1) * g;
    const float vv = b2 * v[i] + (1.0f - b2) * g * g;
    const float denom = sqrtf(vv) / bc2s + eps;
    pv -= step_size * mv / denom;
    m[i] = mv;
    v[i] = vv;
    p[i] = pv;
  }
};

/// Dropout over Philox block b (elements 4b .. 4b + 3): keep_i = uniform(stream, i) >= p, exactly
/// the reference's test (the same double arithmetic as Rng::uniform).
struct DropoutOp {
  const float* in;
  float* out;
  std::size_t n;
  Rng rng;
  std::uint64_t stream;
  double p;
  float s;
  bool acc;
  __device__ void operator()(std::size_t b) const {
    std::uint32_t o[4];
    Rng::bits4(rng.seed, stream, b, o);
    const std::size_t i0 = 4 * b;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const std::size_t i = i0 + std::size_t(j);
      if (i < n) {
        const float g = Rng::to_uniform(o[j]) >= p ? in[i] * s : 0.0f;
        out[i] = acc ? out[i] + g : g;
      }
    }
  }
};

/// Normals of pair q (global indices 2q, 2q + 1): element e of `out` gets normal(stream, index0 + e).
struct NormalOp {
  float* out;
  std::size_t count;
  std::uint64_t index0;
  std::uint64_t q0;  // first pair index: index0 / 2
  Rng rng;
  std::uint64_t stream;
  __device__ void operator()(std::size_t k) const {
    const std::uint64_t q = q0 + k;
    std::uint32_t o[4];
    Rng::bits4(rng.seed, stream, q / 2, o);
    const unsigned h = unsigned(q % 2) * 2;
    double z0, z1;
    Rng::box_muller(o[h], o[h + 1], z0, z1);
    const std::uint64_t g0 = 2 * q;  // global index of z0
    if (g0 >= index0 && g0 - index0 < count) out[g0 - index0] = float(z0);
    if (g0 + 1 >= index0 && g0 + 1 - index0 < count) out[g0 + 1 - index0] = float(z1);
  }
};

// ------------------------------------------------------------------ row functors

/// out[n, i] = ca[n] a[n, i] + cb[n] b[n, i] (+ cz[n] z[n, i]).
struct LincombOp {
  float* out;
  const float* ca;
  const float* a;
  const float* cb;
  const float* b;
  const float* cz;
  const float* z;
  std::size_t item;
  __device__ void operator()(std::size_t n, unsigned i) const {
    const std::size_t e = n * item + i;
    float v = ca[n] * a[e] + cb[n] * b[e];
    if (z) v += cz[n] * z[e];
    out[e] = v;
  }
};
/// Nearest x2 upsampling: row p of y (2H x 2W) from row p of x (H x W).
struct UpsampleOp {
  const float* x;
  float* y;
  unsigned H, W;
  __device__ void operator()(std::size_t p, unsigned i) const {
    const unsigned W2 = 2 * W, h = i / W2, w = i % W2;
    y[p * std::size_t(4) * H * W + i] = x[p * std::size_t(H) * W + (h / 2) * W + w / 2];
  }
};
struct UpsampleBackOp {
  const float* dy;
  float* dx;
  unsigned H, W;
  bool acc;
  __device__ void operator()(std::size_t p, unsigned i) const {
    const unsigned h = i / W, w = i % W;
    const float* d = dy + p * std::size_t(4) * H * W + std::size_t(2 * h) * (2 * W) + 2 * w;
    const float s = d[0] + d[1] + d[2 * W] + d[2 * W + 1];
    float& o = dx[p * std::size_t(H) * W + i];
    o = acc ? o + s : s;
  }
};
/// Row n of out = [a[n], b[n]] (sa + sb elements).
struct ConcatOp {
  const float* a;
  const float* b;
  float* out;
  unsigned sa, sb;
  __device__ void operator()(std::size_t n, unsigned i) const {
    out[n * (std::size_t(sa) + sb) + i] = i < sa ? a[n * sa + i] : b[n * sb + (i - sa)];
  }
};
/// Row n of dout split into da (first sa) and db (the rest); a null pointer skips that part.
struct SplitOp {
  const float* dout;
  float* da;
  float* db;
  unsigned sa, sb;
  bool acc_a, acc_b;
  __device__ void operator()(std::size_t n, unsigned i) const {
    const float v = dout[n * (std::size_t(sa) + sb) + i];
    if (i < sa) {
      if (da) {
        float& o = da[n * sa + i];
        o = acc_a ? o + v : v;
      }
    } else if (db) {
      float& o = db[n * sb + (i - sa)];
      o = acc_b ? o + v : v;
    }
  }
};
/// x[p, i] += bias[p] (rows p = (n, c)).
struct RowBiasOp {
  float* x;
  const float* bias;
  unsigned len;
  __device__ void operator()(std::size_t p, unsigned i) const { x[p * len + i] += bias[p]; }
};
/// y[r, j] += b[j] (rows r of a row-major matrix with `len` columns: linear bias).
struct ColBiasOp {
  float* y;
  const float* b;
  unsigned len;
  __device__ void operator()(std::size_t r, unsigned j) const { y[r * len + j] += b[j]; }
};
struct EmbeddingOp {
  const float* table;
  const std::int32_t* labels;
  float* out;
  unsigned D;
  std::int32_t rows;
  __device__ void operator()(std::size_t n, unsigned d) const {
    const std::int32_t l = labels[n];
    // A label outside the table (device labels are not checked on the host) gives NaN, so the
    // error shows in the loss instead of reading out of bounds.
    out[n * D + d] = (l >= 0 && l < rows) ? table[std::size_t(l) * D + d] : __int_as_float(0x7fc00000);
  }
};
/// sin/cos features: out[n, i] = sin(t f_i), out[n, half + i] = cos(t f_i), t f_i in float, the
/// sine and cosine in double (as the reference); odd D: the last column is 0.
struct TimestepOp {
  const std::int32_t* t;
  const float* freq;
  float* out;
  unsigned D, half;
  __device__ void operator()(std::size_t n, unsigned i) const {
    float* o = out + n * D;
    if (i < half) {
      const float arg = float(t[n]) * freq[i];
      o[i] = float(sin(double(arg)));
      o[half + i] = float(cos(double(arg)));
    } else if (i == D - 1 && (D % 2) != 0) {
      o[i] = 0.0f;
    }
  }
};

// ------------------------------------------------------------------ reductions

/// out[r] = sum of row r (len elements), one warp per row, lanes in a fixed order.
template <class T>
__global__ void __launch_bounds__(256) row_sum_kernel(const T* in, T* out, std::size_t rows, std::size_t len) {
  const std::size_t warps_per_block = blockDim.x / 32;
  const std::size_t lane = threadIdx.x & 31u;
  for (std::size_t r = std::size_t(blockIdx.x) * warps_per_block + threadIdx.x / 32; r < rows;
       r += std::size_t(gridDim.x) * warps_per_block) {
    const T* p = in + r * len;
    T s = T(0);
    for (std::size_t i = lane; i < len; i += 32) s += p[i];
    s = warp_sum(s);
    if (lane == 0) out[r] = s;
  }
}
inline void row_sums(cudaStream_t st, const float* in, float* out, std::size_t rows, std::size_t len) {
  if (rows == 0) return;
  const std::size_t blocks = (rows + 7) / 8;  // 8 warps per block
  row_sum_kernel<<<unsigned(blocks < max_grid_x ? blocks : max_grid_x), 256, 0, st>>>(in, out, rows, len);
  DDPM_CUDA_CHECK_LAUNCH();
}

/// out[c] (+)= sum over r of in[r * cols + c], rows added in order 0, 1, ... (deterministic).
template <class T>
__global__ void __launch_bounds__(block_threads) col_sum_kernel(const T* in, T* out, std::size_t rows, std::size_t cols, bool acc) {
  for (std::size_t c = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += std::size_t(gridDim.x) * blockDim.x) {
    T s = T(0);
    for (std::size_t r = 0; r < rows; ++r) s += in[r * cols + c];
    out[c] = acc ? out[c] + s : s;
  }
}
inline void col_sums(cudaStream_t st, const float* in, float* out, std::size_t rows, std::size_t cols,
                     bool acc) {
  if (cols == 0) return;
  col_sum_kernel<<<grid_for(cols), block_threads, 0, st>>>(in, out, rows, cols, acc);
  DDPM_CUDA_CHECK_LAUNCH();
}

/// Called by every thread of every block of a reduction kernel after thread 0 of the block wrote
/// its partial sum(s): the last block to finish adds partial[0 .. count) in a fixed order and
/// writes the total to *result (deterministic: neither the order of the blocks nor atomics enter
/// the sum), then resets the counter for the next reduction. The threadFenceReduction pattern.
template <class T>
__device__ __forceinline__ void finish_partials(const T* partial, std::size_t count, unsigned* counter,
                                                T* result, T* sh) {
  __shared__ bool last;
  __threadfence();  // this block's partials are visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  T s = T(0);
  for (std::size_t i = threadIdx.x; i < count; i += blockDim.x) s += __ldcg(partial + i);  // not via L1
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    *result = s;
    *counter = 0;
  }
}

/// Sum of squares in double: block b sums a fixed subset (grid stride), the last block the partials.
inline constexpr unsigned reduce_blocks_max = 1024;
template <class T>
__global__ void __launch_bounds__(block_threads) sum_squares_kernel(const T* x, std::size_t n, double* partial, unsigned* counter,
                                   double* result) {
  __shared__ double sh[32];
  double s = 0.0;
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    s += v * v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
  finish_partials(partial, gridDim.x, counter, result, sh);
}
/// Blocks of a deterministic reduction over n elements (depends on n only).
inline unsigned reduce_blocks(std::size_t n) {
  const std::size_t b = (n + 4 * block_threads - 1) / (4 * block_threads);
  return unsigned(b == 0 ? 1 : (b < reduce_blocks_max ? b : reduce_blocks_max));
}
/// Waits for the reduction kernel just queued and returns the value it wrote to c.device_result.
inline double reduction_result(Context& c) {
  c.synchronize();
  return *static_cast<volatile double*>(c.host_result);
}

// ------------------------------------------------------------------ launchers

template <class D>
void Kernels<D>::fill(const Be& be, FV x, float v) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), FillOp{x.data(), v});
}

template <class D>
void Kernels<D>::copy(const Be& be, CFV src, FV dst) {
  const On on_(be);  // the tag's device, whichever is current
  if (src.size() == 0 || src.data() == dst.data()) return;
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.size() * sizeof(float),
                                  cudaMemcpyDeviceToDevice, ctx(be).stream));
}

template <class D>
void Kernels<D>::axpby(const Be& be, float a, CFV x, float b, FV y) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), AxpbyOp{a, b, x.data(), y.data()});
}

template <class D>
void Kernels<D>::add(const Be& be, CFV a, CFV b, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, a.size(), AddOp{a.data(), b.data(), out.data()});
}

template <class D>
void Kernels<D>::scale(const Be& be, FV x, float s) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), ScaleOp{x.data(), s});
}

template <class D>
double Kernels<D>::sum_squares(const Be& be, CFV x) {
  const On on_(be);  // the tag's device, whichever is current
  if (x.size() == 0) return 0.0;
  Context& c = ctx(be);
  const unsigned blocks = reduce_blocks(x.size());
  double* partial = c.scratch_as<double>(slot::partial, blocks);
  sum_squares_kernel<<<blocks, block_threads, 0, c.stream>>>(x.data(), x.size(), partial, c.reduce_counter,
                                                             c.device_result);
  DDPM_CUDA_CHECK_LAUNCH();
  return reduction_result(c);
}

template <class D>
void Kernels<D>::silu_forward(const Be& be, CFV x, FV y) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), SiluOp{x.data(), y.data()});
}

template <class D>
void Kernels<D>::silu_backward(const Be& be, CFV x, CFV dy, FV dx, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), SiluBackOp{x.data(), dy.data(), dx.data(), acc});
}

template <class D>
void Kernels<D>::upsample2x_forward(const Be& be, CFV x, FV y) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t H = x.h(), W = x.w();
  launch_rows(ctx(be).stream, x.n() * x.c(), 4 * H * W, UpsampleOp{x.data(), y.data(), unsigned(H), unsigned(W)});
}

template <class D>
void Kernels<D>::upsample2x_backward(const Be& be, CFV dy, FV dx, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t H = dx.h(), W = dx.w();
  launch_rows(ctx(be).stream, dx.n() * dx.c(), H * W,
              UpsampleBackOp{dy.data(), dx.data(), unsigned(H), unsigned(W), acc});
}

template <class D>
void Kernels<D>::concat_channels(const Be& be, CFV a, CFV b, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = a.n();
  if (N == 0) return;
  const std::size_t sa = a.size() / N, sb = b.size() / N;
  launch_rows(ctx(be).stream, N, sa + sb, ConcatOp{a.data(), b.data(), out.data(), unsigned(sa), unsigned(sb)});
}

template <class D>
void Kernels<D>::split_channels(const Be& be, CFV dout, std::size_t ca, FV da, bool acc_a, FV db,
                                bool acc_b) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = dout.n();
  if (N == 0 || (da.empty() && db.empty())) return;
  const std::size_t s = dout.size() / N, sa = ca * dout.h() * dout.w(), sb = s - sa;
  launch_rows(ctx(be).stream, N, s,
              SplitOp{dout.data(), da.empty() ? nullptr : da.data(), db.empty() ? nullptr : db.data(),
                      unsigned(sa), unsigned(sb), acc_a, acc_b});
}

template <class D>
void Kernels<D>::add_channel_bias(const Be& be, FV x, CFV bias) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t HW = x.h() * x.w();
  launch_rows(ctx(be).stream, x.n() * x.c(), HW, RowBiasOp{x.data(), bias.data(), unsigned(HW)});
}

template <class D>
void Kernels<D>::channel_sum(const Be& be, CFV dy, FV dbias) {
  const On on_(be);  // the tag's device, whichever is current
  row_sums(ctx(be).stream, dy.data(), dbias.data(), dy.n() * dy.c(), dy.h() * dy.w());
}

template <class D>
void Kernels<D>::dropout_forward(const Be& be, CFV x, FV y, double p, Rng rng, std::uint64_t stream) {
  const On on_(be);  // the tag's device, whichever is current
  if (p == 0.0) return copy(be, x, y);
  const std::size_t n = x.size();
  launch_for_each(ctx(be).stream, (n + 3) / 4,
                  DropoutOp{x.data(), y.data(), n, rng, stream, p, float(1.0 / (1.0 - p)), false});
}

template <class D>
void Kernels<D>::dropout_backward(const Be& be, CFV dy, FV dx, double p, Rng rng,
                                  std::uint64_t stream, bool acc) {
  const On on_(be);  // the tag's device, whichever is current
  if (p == 0.0) {
    if (acc) return add(be, CFV(dx), dy, dx);
    return copy(be, dy, dx);
  }
  const std::size_t n = dy.size();
  launch_for_each(ctx(be).stream, (n + 3) / 4,
                  DropoutOp{dy.data(), dx.data(), n, rng, stream, p, float(1.0 / (1.0 - p)), acc});
}

template <class D>
void Kernels<D>::embedding_forward(const Be& be, CFV table, CIV labels, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t D_ = table.dim(1);
  launch_rows(ctx(be).stream, labels.size(), D_,
              EmbeddingOp{table.data(), labels.data(), out.data(), unsigned(D_), std::int32_t(table.dim(0))});
}

/// dtable[labels[n], d] += dout[n, d], one thread per column d adding the samples in order
/// (bitwise the reference's order).
template <class T>
__global__ void __launch_bounds__(block_threads) embedding_backward_kernel(const std::int32_t* labels, std::size_t N, const T* dout,
                                          T* dtable, std::size_t D, std::int32_t rows) {
  for (std::size_t d = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; d < D;
       d += std::size_t(gridDim.x) * blockDim.x)
    for (std::size_t n = 0; n < N; ++n) {
      const std::int32_t l = labels[n];
      if (l >= 0 && l < rows) dtable[std::size_t(l) * D + d] += dout[n * D + d];
    }
}

template <class D>
void Kernels<D>::embedding_backward(const Be& be, CIV labels, CFV dout, FV dtable) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t D_ = dtable.dim(1);
  if (D_ == 0 || labels.size() == 0) return;
  embedding_backward_kernel<<<grid_for(D_), block_threads, 0, ctx(be).stream>>>(
      labels.data(), labels.size(), dout.data(), dtable.data(), D_, std::int32_t(dtable.dim(0)));
  DDPM_CUDA_CHECK_LAUNCH();
}

template <class D>
void Kernels<D>::timestep_embedding(const Be& be, CIV t, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = t.size(), D_ = out.dim(1), half = D_ / 2;
  if (N == 0 || D_ == 0) return;
  Context& c = ctx(be);
  float* freq = c.scratch_as<float>(slot::freq, half ? half : 1);
  if (half && c.freq_half != int(half)) {
    // The frequencies on the host with the reference's float expression (same libm: bitwise).
    std::vector<float> f(half);
    const float cst = static_cast<float>(-9.210340371976184);  // -ln(10000)
    const float denom = static_cast<float>(half > 1 ? half - 1 : 1);
    for (std::size_t i = 0; i < half; ++i) f[i] = std::exp(cst * static_cast<float>(i) / denom);
    c.upload(freq, f.data(), half * sizeof(float));
    c.freq_half = int(half);
  }
  launch_rows(c.stream, N, D_, TimestepOp{t.data(), freq, out.data(), unsigned(D_), unsigned(half)});
}

template <class D>
void Kernels<D>::fill_normal(const Be& be, FV out, Rng rng, std::uint64_t stream, std::uint64_t index0) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t n = out.size();
  if (n == 0) return;
  const std::uint64_t q0 = index0 / 2, q1 = (index0 + n - 1) / 2;  // pairs touched
  launch_for_each(ctx(be).stream, std::size_t(q1 - q0 + 1), NormalOp{out.data(), n, index0, q0, rng, stream});
}

template <class D>
void Kernels<D>::lincomb(const Be& be, FV out, CFV ca, CFV a, CFV cb, CFV b, CFV cz, CFV z) {
  const On on_(be);  // the tag's device, whichever is current
  const std::size_t N = out.n();
  if (N == 0 || out.size() == 0) return;
  const std::size_t item = out.size() / N;
  const bool has_z = !z.empty();
  launch_rows(ctx(be).stream, N, item,
              LincombOp{out.data(), ca.data(), a.data(), cb.data(), b.data(), has_z ? cz.data() : nullptr,
                        has_z ? z.data() : nullptr, item});
}

template <class D>
void Kernels<D>::guidance(const Be& be, CFV cond, CFV uncond, float w, FV out) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, out.size(), GuidanceOp{cond.data(), uncond.data(), w, out.data()});
}

template <class D>
void Kernels<D>::clamp(const Be& be, FV x, float lo, float hi) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, x.size(), ClampOp{x.data(), lo, hi});
}

template <class D>
void Kernels<D>::adam_step(const Be& be, FV p, CFV grad, FV m, FV v, const AdamStep& s) {
  const On on_(be);  // the tag's device, whichever is current
  // Scalars exactly as the reference computes them (double, then rounded to float).
  const double bc1 = 1.0 - std::pow(s.beta1, double(s.step));
  const double bc2s = std::sqrt(1.0 - std::pow(s.beta2, double(s.step)));
  AdamOp op{p.data(), grad.data(), m.data(), v.data(),
            float(s.lr / bc1), float(s.beta1), float(s.beta2), float(s.eps), float(bc2s),
            float(1.0 - s.lr * s.weight_decay), float(s.grad_scale), float(s.weight_decay),
            s.weight_decay == 0.0 ? 0 : (s.decoupled ? 1 : 2)};
  launch_for_each(ctx(be).stream, p.size(), op);
}

template <class D>
void Kernels<D>::ema_update(const Be& be, FV ema, CFV p, float decay) {
  const On on_(be);  // the tag's device, whichever is current
  launch_for_each(ctx(be).stream, p.size(), EmaOp{ema.data(), p.data(), decay});
}

}  // namespace ddpm::detail::cuda
