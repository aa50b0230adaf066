// SPDX-License-Identifier: MIT
// ddpm/backend/cuda/ops.hpp — Ops<backend::Cuda>: every operation of the backend interface
// (contracts in ddpm/backend/reference.hpp) for float tensors in device memory.
//
// Readable by g++: no CUDA header and no kernel. Each operation checks its element type and
// forwards to a launcher declared here (detail::cuda::Kernels<>, LossKernels<P, L>,
// TargetKernels<P>) and defined in ddpm/backend/cuda/*.cuh. The launchers are emitted by explicit
// instantiation in one .cu of the program:
//
//   // my_program_cuda.cu (compiled by nvcc, linked with ddpm::cuda)
//   #include <ddpm/backend/cuda.cuh>
//   DDPM_CUDA_INSTANTIATE()                          // the runtime, all ops, built-in policies
//   DDPM_CUDA_INSTANTIATE_POLICIES(MyTarget, MyLoss)  // only for a custom target/loss pair
//   DDPM_CUDA_INSTANTIATE_TARGET(MyTarget)            // only for a custom target (predict)
//
// Every other file of the program may be ordinary C++ that includes <ddpm/backend/cuda.hpp>.
// Arguments are device pointers (views of Tensor<float, backend::Cuda>); per-sample coefficient
// vectors, labels and timesteps are device tensors too. Operations are queued on the device's
// stream and return at once, except those that return a value (sum_squares, diffusion_loss),
// which wait for it. DDPM_CHECK_BACKEND_OPS at the end checks Ops<backend::Cuda> against the op
// list (ddpm/backend/op_list.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ddpm/backend/cuda/memory.hpp"
#include "ddpm/backend/cuda/tag.hpp"
#include "ddpm/backend/op_list.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/builtin_policies.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::detail::cuda {

using CFV = ConstView<float>;
using FV = View<float>;
using CIV = ConstView<std::int32_t>;

/// The launchers of the policy-free operations, one per operation of Ops<backend::Cuda> (same
/// arguments, float views). Defined in ddpm/backend/cuda/{elementwise,group_norm,gemm,attention}.cuh.
template <class = void>
struct Kernels {
  using Be = backend::Cuda;
  static void fill(const Be&, FV x, float v);
  static void copy(const Be&, CFV src, FV dst);
  static void axpby(const Be&, float a, CFV x, float b, FV y);
  static void add(const Be&, CFV a, CFV b, FV out);
  static void scale(const Be&, FV x, float s);
  static double sum_squares(const Be&, CFV x);
  static void silu_forward(const Be&, CFV x, FV y);
  static void silu_backward(const Be&, CFV x, CFV dy, FV dx, bool acc);
  static void group_norm_forward(const Be&, CFV x, CFV gamma, CFV beta, FV y, FV mean, FV rstd,
                                 std::size_t groups, double eps, bool silu);
  static void group_norm_backward(const Be&, CFV x, CFV gamma, CFV beta, CFV mean, CFV rstd,
                                  CFV dy, FV dx, FV dgamma, FV dbeta, std::size_t groups,
                                  bool silu, bool acc);
  static void conv2d_forward(const Be&, CFV x, CFV w, CFV bias, FV y, ConvGeometry g);
  static void conv2d_backward(const Be&, CFV x, CFV w, CFV dy, FV dx, FV dw, FV db,
                              ConvGeometry g, bool acc);
  static void linear_forward(const Be&, CFV x, CFV w, CFV b, FV y);
  static void linear_backward(const Be&, CFV x, CFV w, CFV dy, FV dx, FV dw, FV db, bool acc);
  static void attention_forward(const Be&, CFV qkv, FV probs, FV out);
  static void attention_backward(const Be&, CFV qkv, CFV probs, CFV dout, FV dqkv);
  static void upsample2x_forward(const Be&, CFV x, FV y);
  static void upsample2x_backward(const Be&, CFV dy, FV dx, bool acc);
  static void concat_channels(const Be&, CFV a, CFV b, FV out);
  static void split_channels(const Be&, CFV dout, std::size_t ca, FV da, bool acc_a, FV db,
                             bool acc_b);
  static void add_channel_bias(const Be&, FV x, CFV bias);
  static void channel_sum(const Be&, CFV dy, FV dbias);
  static void dropout_forward(const Be&, CFV x, FV y, double p, Rng rng, std::uint64_t stream);
  static void dropout_backward(const Be&, CFV dy, FV dx, double p, Rng rng, std::uint64_t stream,
                               bool acc);
  static void embedding_forward(const Be&, CFV table, CIV labels, FV out);
  static void embedding_backward(const Be&, CIV labels, CFV dout, FV dtable);
  static void timestep_embedding(const Be&, CIV t, FV out);
  static void fill_normal(const Be&, FV out, Rng rng, std::uint64_t stream, std::uint64_t index0);
  static void lincomb(const Be&, FV out, CFV ca, CFV a, CFV cb, CFV b, CFV cz, CFV z);
  static void guidance(const Be&, CFV cond, CFV uncond, float w, FV out);
  static void clamp(const Be&, FV x, float lo, float hi);
  static void adam_step(const Be&, FV p, CFV grad, FV m, FV v, const AdamStep& s);
  static void ema_update(const Be&, FV ema, CFV p, float decay);
};

/// diffusion_loss for target P and loss L (ddpm/backend/cuda/diffusion.cuh).
template <class P, class L>
struct LossKernels {
  static double run(const backend::Cuda&, const L& loss, CFV out, CFV x0, CFV eps, CFV a, CFV s,
                    CFV w, FV dout);
};

/// predict for target P (ddpm/backend/cuda/diffusion.cuh).
template <class P>
struct TargetKernels {
  static void run(const backend::Cuda&, CFV xt, CFV out, CFV a, CFV s, bool clip, FV x0, FV eps);
};

// Emitted by DDPM_CUDA_INSTANTIATE() (ddpm/backend/cuda/instantiate.cuh), for the built-in
// policies listed once in ddpm/core/builtin_policies.hpp.
extern template struct Kernels<void>;
#define DDPM_CUDA_EXTERN_LOSS(P, L) extern template struct LossKernels<P, L>;
#define DDPM_CUDA_EXTERN_TARGET(P) extern template struct TargetKernels<P>;
DDPM_FOR_EACH_BUILTIN_TARGET_LOSS(DDPM_CUDA_EXTERN_LOSS)
DDPM_FOR_EACH_BUILTIN_TARGET(DDPM_CUDA_EXTERN_TARGET)
#undef DDPM_CUDA_EXTERN_LOSS
#undef DDPM_CUDA_EXTERN_TARGET

template <class T>
inline constexpr bool cuda_float_only() {
  static_assert(std::is_same_v<T, float>,
                "ddpm: Ops<backend::Cuda> supports float tensors only; use backend::Reference or "
                "backend::Cpu for double");
  return true;
}

}  // namespace ddpm::detail::cuda

namespace ddpm {

/// The CUDA backend's operations. Contracts: ddpm/backend/reference.hpp. float only.
template <>
struct Ops<backend::Cuda> {
  using B = backend::Cuda;

 private:
  using K = detail::cuda::Kernels<>;
  template <class T>
  static constexpr bool ok = detail::cuda::cuda_float_only<T>();

 public:
  // ------------------------------------------------------------------ element-wise
  template <class T>
  static void fill(const B& be, View<T> x, T v) {
    static_assert(ok<T>);
    K::fill(be, x, v);
  }
  template <class T>
  static void copy(const B& be, ConstView<T> src, View<T> dst) {
    static_assert(ok<T>);
    DDPM_ASSERT(src.size() == dst.size(), "copy: sizes differ");
    K::copy(be, src, dst);
  }
  template <class T>
  static void axpby(const B& be, T a, ConstView<T> x, T b, View<T> y) {
    static_assert(ok<T>);
    DDPM_ASSERT(x.size() == y.size(), "axpby: sizes differ");
    K::axpby(be, a, x, b, y);
  }
  template <class T>
  static void add(const B& be, ConstView<T> a, ConstView<T> b, View<T> out) {
    static_assert(ok<T>);
    DDPM_ASSERT(a.size() == b.size() && a.size() == out.size(), "add: sizes differ");
    K::add(be, a, b, out);
  }
  template <class T>
  static void scale(const B& be, View<T> x, T s) {
    static_assert(ok<T>);
    K::scale(be, x, s);
  }
  /// Sum of squares in double (waits for the result).
  template <class T>
  static double sum_squares(const B& be, ConstView<T> x) {
    static_assert(ok<T>);
    return K::sum_squares(be, x);
  }

  // ------------------------------------------------------------------ activations
  template <class T>
  static void silu_forward(const B& be, ConstView<T> x, View<T> y) {
    static_assert(ok<T>);
    K::silu_forward(be, x, y);
  }
  template <class T>
  static void silu_backward(const B& be, ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc) {
    static_assert(ok<T>);
    K::silu_backward(be, x, dy, dx, acc);
  }

  // ------------------------------------------------------------------ group norm
  template <class T>
  static void group_norm_forward(const B& be, ConstView<T> x, ConstView<T> gamma,
                                 ConstView<T> beta, View<T> y, View<T> mean, View<T> rstd,
                                 std::size_t groups, double eps, bool silu) {
    static_assert(ok<T>);
    K::group_norm_forward(be, x, gamma, beta, y, mean, rstd, groups, eps, silu);
  }
  template <class T>
  static void group_norm_backward(const B& be, ConstView<T> x, ConstView<T> gamma,
                                  ConstView<T> beta, ConstView<T> mean, ConstView<T> rstd,
                                  ConstView<T> dy, View<T> dx, View<T> dgamma, View<T> dbeta,
                                  std::size_t groups, bool silu, bool acc) {
    static_assert(ok<T>);
    K::group_norm_backward(be, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, groups, silu, acc);
  }

  // ------------------------------------------------------------------ convolution, linear
  template <class T>
  static void conv2d_forward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> bias,
                             View<T> y, ConvGeometry g) {
    static_assert(ok<T>);
    K::conv2d_forward(be, x, w, bias, y, g);
  }
  template <class T>
  static void conv2d_backward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, ConvGeometry g, bool acc) {
    static_assert(ok<T>);
    K::conv2d_backward(be, x, w, dy, dx, dw, db, g, acc);
  }
  template <class T>
  static void linear_forward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> b,
                             View<T> y) {
    static_assert(ok<T>);
    K::linear_forward(be, x, w, b, y);
  }
  template <class T>
  static void linear_backward(const B& be, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, bool acc) {
    static_assert(ok<T>);
    K::linear_backward(be, x, w, dy, dx, dw, db, acc);
  }

  // ------------------------------------------------------------------ attention
  template <class T>
  static void attention_forward(const B& be, ConstView<T> qkv, View<T> probs, View<T> out) {
    static_assert(ok<T>);
    K::attention_forward(be, qkv, probs, out);
  }
  template <class T>
  static void attention_backward(const B& be, ConstView<T> qkv, ConstView<T> probs,
                                 ConstView<T> dout, View<T> dqkv) {
    static_assert(ok<T>);
    K::attention_backward(be, qkv, probs, dout, dqkv);
  }

  // ------------------------------------------------------------------ resampling, concat, bias
  template <class T>
  static void upsample2x_forward(const B& be, ConstView<T> x, View<T> y) {
    static_assert(ok<T>);
    K::upsample2x_forward(be, x, y);
  }
  template <class T>
  static void upsample2x_backward(const B& be, ConstView<T> dy, View<T> dx, bool acc) {
    static_assert(ok<T>);
    K::upsample2x_backward(be, dy, dx, acc);
  }
  template <class T>
  static void concat_channels(const B& be, ConstView<T> a, ConstView<T> b, View<T> out) {
    static_assert(ok<T>);
    K::concat_channels(be, a, b, out);
  }
  template <class T>
  static void split_channels(const B& be, ConstView<T> dout, std::size_t ca, View<T> da,
                             bool acc_a, View<T> db, bool acc_b) {
    static_assert(ok<T>);
    K::split_channels(be, dout, ca, da, acc_a, db, acc_b);
  }
  template <class T>
  static void add_channel_bias(const B& be, View<T> x, ConstView<T> bias) {
    static_assert(ok<T>);
    K::add_channel_bias(be, x, bias);
  }
  template <class T>
  static void channel_sum(const B& be, ConstView<T> dy, View<T> dbias) {
    static_assert(ok<T>);
    K::channel_sum(be, dy, dbias);
  }

  // ------------------------------------------------------------------ dropout
  template <class T>
  static void dropout_forward(const B& be, ConstView<T> x, View<T> y, double p, Rng rng,
                              std::uint64_t stream) {
    static_assert(ok<T>);
    K::dropout_forward(be, x, y, p, rng, stream);
  }
  template <class T>
  static void dropout_backward(const B& be, ConstView<T> dy, View<T> dx, double p, Rng rng,
                               std::uint64_t stream, bool acc) {
    static_assert(ok<T>);
    K::dropout_backward(be, dy, dx, p, rng, stream, acc);
  }

  // ------------------------------------------------------------------ embeddings
  template <class T>
  static void embedding_forward(const B& be, ConstView<T> table, ConstView<std::int32_t> labels,
                                View<T> out) {
    static_assert(ok<T>);
    K::embedding_forward(be, table, labels, out);
  }
  template <class T>
  static void embedding_backward(const B& be, ConstView<std::int32_t> labels, ConstView<T> dout,
                                 View<T> dtable) {
    static_assert(ok<T>);
    K::embedding_backward(be, labels, dout, dtable);
  }
  template <class T>
  static void timestep_embedding(const B& be, ConstView<std::int32_t> t, View<T> out) {
    static_assert(ok<T>);
    K::timestep_embedding(be, t, out);
  }

  // ------------------------------------------------------------------ diffusion
  template <class T>
  static void fill_normal(const B& be, View<T> out, Rng rng, std::uint64_t stream,
                          std::uint64_t index0) {
    static_assert(ok<T>);
    K::fill_normal(be, out, rng, stream, index0);
  }
  template <class T>
  static void lincomb(const B& be, View<T> out, ConstView<T> ca, ConstView<T> a, ConstView<T> cb,
                      ConstView<T> b, ConstView<T> cz, ConstView<T> z) {
    static_assert(ok<T>);
    K::lincomb(be, out, ca, a, cb, b, cz, z);
  }
  /// Loss and gradient (waits for the loss value). P and L must be instantiated for CUDA: the
  /// built-in ones are, by DDPM_CUDA_INSTANTIATE(); others by DDPM_CUDA_INSTANTIATE_POLICIES(P, L).
  template <class P, class L, class T>
  static double diffusion_loss(const B& be, const L& loss, ConstView<T> out, ConstView<T> x0,
                               ConstView<T> eps, ConstView<T> a, ConstView<T> s, ConstView<T> w,
                               View<T> dout) {
    static_assert(ok<T>);
    return detail::cuda::LossKernels<P, L>::run(be, loss, out, x0, eps, a, s, w, dout);
  }
  /// x0 and eps from the network output. A custom target needs DDPM_CUDA_INSTANTIATE_TARGET(P).
  template <class P, class T>
  static void predict(const B& be, ConstView<T> xt, ConstView<T> out, ConstView<T> a,
                      ConstView<T> s, bool clip, View<T> x0, View<T> eps) {
    static_assert(ok<T>);
    detail::cuda::TargetKernels<P>::run(be, xt, out, a, s, clip, x0, eps);
  }
  template <class T>
  static void guidance(const B& be, ConstView<T> cond, ConstView<T> uncond, T w, View<T> out) {
    static_assert(ok<T>);
    K::guidance(be, cond, uncond, w, out);
  }
  template <class T>
  static void clamp(const B& be, View<T> x, T lo, T hi) {
    static_assert(ok<T>);
    K::clamp(be, x, lo, hi);
  }

  // ------------------------------------------------------------------ optimisation
  template <class T>
  static void adam_step(const B& be, View<T> p, ConstView<T> grad, View<T> m, View<T> v,
                        const AdamStep& s) {
    static_assert(ok<T>);
    K::adam_step(be, p, grad, m, v, s);
  }
  template <class T>
  static void ema_update(const B& be, View<T> ema, ConstView<T> p, T decay) {
    static_assert(ok<T>);
    K::ema_update(be, ema, p, decay);
  }
};

// Complete here (declarations only; the definitions are in the .cuh files), so checked here, for
// g++ and nvcc alike.
DDPM_CHECK_BACKEND_OPS(backend::Cuda);

}  // namespace ddpm
