// SPDX-License-Identifier: MIT
// ddpm/backend/op_list.hpp — the one list of the operations every backend's Ops<B> provides, with
// their signatures, and the compile-time check that a backend has all of them.
//
// What each operation computes (its contract) is documented once, on the naive implementation in
// ddpm/backend/reference.hpp, the oracle the other backends are tested against. The list here
// only names the operations and the calls the library makes, so that a backend missing one fails
// at one static_assert that names it instead of at the first call deep inside a layer:
//
//   template <> struct ddpm::Ops<MyBackend> { ... };
//   DDPM_CHECK_BACKEND_OPS(MyBackend);
//   // error: static assertion failed: ddpm: Ops<B> has no op 'group_norm_forward' with the
//   //        signature of backend/reference.hpp
//
// Reference, Cpu and Cuda are checked this way in their own headers.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/losses.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/targets.hpp"
#include "ddpm/tensor/tensor.hpp"

/// DDPM_BACKEND_OPS(X) calls X(name, template_params, result, params, call) once per operation:
///   name             the static member function of Ops<B>;
///   template_params  its template parameters, in parentheses: the element type T, and first the
///                    prediction target P (and loss L) where the library names them explicitly;
///   result           its result type;
///   params           its parameters after the leading `const B& be`, in parentheses;
///   call             how the library calls it: Ops<B>::call must compile and return `result`.
/// The order and grouping follow backend/reference.hpp, where each operation's contract is.
#define DDPM_BACKEND_OPS(X)                                                                       \
  /* element-wise */                                                                              \
  X(fill, (class T), void, (View<T> x, T v), fill(be, x, v))                                      \
  X(copy, (class T), void, (ConstView<T> src, View<T> dst), copy(be, src, dst))                   \
  X(axpby, (class T), void, (T a, ConstView<T> x, T b, View<T> y), axpby(be, a, x, b, y))         \
  X(add, (class T), void, (ConstView<T> a, ConstView<T> b, View<T> out), add(be, a, b, out))      \
  X(scale, (class T), void, (View<T> x, T s), scale(be, x, s))                                    \
  X(sum_squares, (class T), double, (ConstView<T> x), sum_squares(be, x))                         \
  /* activations */                                                                               \
  X(silu_forward, (class T), void, (ConstView<T> x, View<T> y), silu_forward(be, x, y))           \
  X(silu_backward, (class T), void, (ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc),      \
    silu_backward(be, x, dy, dx, acc))                                                            \
  /* group norm */                                                                                \
  X(group_norm_forward, (class T), void,                                                          \
    (ConstView<T> x, ConstView<T> gamma, ConstView<T> beta, View<T> y, View<T> mean,              \
     View<T> rstd, std::size_t groups, double eps, bool silu),                                    \
    group_norm_forward(be, x, gamma, beta, y, mean, rstd, groups, eps, silu))                     \
  X(group_norm_backward, (class T), void,                                                         \
    (ConstView<T> x, ConstView<T> gamma, ConstView<T> beta, ConstView<T> mean, ConstView<T> rstd, \
     ConstView<T> dy, View<T> dx, View<T> dgamma, View<T> dbeta, std::size_t groups, bool silu,   \
     bool acc),                                                                                   \
    group_norm_backward(be, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, groups, silu,      \
                        acc))                                                                     \
  /* convolution */                                                                               \
  X(conv2d_forward, (class T), void,                                                              \
    (ConstView<T> x, ConstView<T> w, ConstView<T> bias, View<T> y, ConvGeometry g),               \
    conv2d_forward(be, x, w, bias, y, g))                                                         \
  X(conv2d_backward, (class T), void,                                                             \
    (ConstView<T> x, ConstView<T> w, ConstView<T> dy, View<T> dx, View<T> dw, View<T> db,         \
     ConvGeometry g, bool acc),                                                                   \
    conv2d_backward(be, x, w, dy, dx, dw, db, g, acc))                                            \
  /* linear */                                                                                    \
  X(linear_forward, (class T), void, (ConstView<T> x, ConstView<T> w, ConstView<T> b, View<T> y), \
    linear_forward(be, x, w, b, y))                                                               \
  X(linear_backward, (class T), void,                                                             \
    (ConstView<T> x, ConstView<T> w, ConstView<T> dy, View<T> dx, View<T> dw, View<T> db,         \
     bool acc),                                                                                   \
    linear_backward(be, x, w, dy, dx, dw, db, acc))                                               \
  /* attention */                                                                                 \
  X(attention_forward, (class T), void, (ConstView<T> qkv, View<T> probs, View<T> out),           \
    attention_forward(be, qkv, probs, out))                                                       \
  X(attention_backward, (class T), void,                                                          \
    (ConstView<T> qkv, ConstView<T> probs, ConstView<T> dout, View<T> dqkv),                      \
    attention_backward(be, qkv, probs, dout, dqkv))                                               \
  /* resampling, concat, bias */                                                                  \
  X(upsample2x_forward, (class T), void, (ConstView<T> x, View<T> y),                             \
    upsample2x_forward(be, x, y))                                                                 \
  X(upsample2x_backward, (class T), void, (ConstView<T> dy, View<T> dx, bool acc),                \
    upsample2x_backward(be, dy, dx, acc))                                                         \
  X(concat_channels, (class T), void, (ConstView<T> a, ConstView<T> b, View<T> out),              \
    concat_channels(be, a, b, out))                                                               \
  X(split_channels, (class T), void,                                                              \
    (ConstView<T> dout, std::size_t ca, View<T> da, bool acc_a, View<T> db, bool acc_b),          \
    split_channels(be, dout, ca, da, acc_a, db, acc_b))                                           \
  X(add_channel_bias, (class T), void, (View<T> x, ConstView<T> bias),                            \
    add_channel_bias(be, x, bias))                                                                \
  X(channel_sum, (class T), void, (ConstView<T> dy, View<T> dbias), channel_sum(be, dy, dbias))   \
  /* dropout */                                                                                   \
  X(dropout_forward, (class T), void,                                                             \
    (ConstView<T> x, View<T> y, double p, Rng rng, std::uint64_t stream),                         \
    dropout_forward(be, x, y, p, rng, stream))                                                    \
  X(dropout_backward, (class T), void,                                                            \
    (ConstView<T> dy, View<T> dx, double p, Rng rng, std::uint64_t stream, bool acc),             \
    dropout_backward(be, dy, dx, p, rng, stream, acc))                                            \
  /* embeddings */                                                                                \
  X(embedding_forward, (class T), void,                                                           \
    (ConstView<T> table, ConstView<std::int32_t> labels, View<T> out),                            \
    embedding_forward(be, table, labels, out))                                                    \
  X(embedding_backward, (class T), void,                                                          \
    (ConstView<std::int32_t> labels, ConstView<T> dout, View<T> dtable),                          \
    embedding_backward(be, labels, dout, dtable))                                                 \
  X(timestep_embedding, (class T), void, (ConstView<std::int32_t> t, View<T> out),                \
    timestep_embedding(be, t, out))                                                               \
  /* diffusion */                                                                                 \
  X(fill_normal, (class T), void,                                                                 \
    (View<T> out, Rng rng, std::uint64_t stream, std::uint64_t index0),                           \
    fill_normal(be, out, rng, stream, index0))                                                    \
  X(lincomb, (class T), void,                                                                     \
    (View<T> out, ConstView<T> ca, ConstView<T> a, ConstView<T> cb, ConstView<T> b,               \
     ConstView<T> cz, ConstView<T> z),                                                            \
    lincomb(be, out, ca, a, cb, b, cz, z))                                                        \
  X(diffusion_loss, (class P, class L, class T), double,                                          \
    (const L& loss, ConstView<T> out, ConstView<T> x0, ConstView<T> eps, ConstView<T> a,          \
     ConstView<T> s, ConstView<T> w, View<T> dout),                                               \
    template diffusion_loss<P>(be, loss, out, x0, eps, a, s, w, dout))                            \
  X(predict, (class P, class T), void,                                                            \
    (ConstView<T> xt, ConstView<T> out, ConstView<T> a, ConstView<T> s, bool clip, View<T> x0,    \
     View<T> eps),                                                                                \
    template predict<P>(be, xt, out, a, s, clip, x0, eps))                                        \
  X(guidance, (class T), void, (ConstView<T> cond, ConstView<T> uncond, T w, View<T> out),        \
    guidance(be, cond, uncond, w, out))                                                           \
  X(clamp, (class T), void, (View<T> x, T lo, T hi), clamp(be, x, lo, hi))                        \
  /* optimisation */                                                                              \
  X(adam_step, (class T), void,                                                                   \
    (View<T> p, ConstView<T> grad, View<T> m, View<T> v, const AdamStep& s),                      \
    adam_step(be, p, grad, m, v, s))                                                              \
  X(ema_update, (class T), void, (View<T> ema, ConstView<T> p, T decay),                          \
    ema_update(be, ema, p, decay))                                                                \
  DDPM_BACKEND_OPS_TEST_EXTRA(X)

/// Test hook, not an interface: extra entries appended to DDPM_BACKEND_OPS (the list is expanded
/// where it is used, so a test may redefine this between includes; tests/compile_fail/
/// backend_op_missing.cpp adds an op no backend has). Empty by default.
#ifndef DDPM_BACKEND_OPS_TEST_EXTRA
#define DDPM_BACKEND_OPS_TEST_EXTRA(X)
#endif

#define DDPM_DETAIL_OPS_UNPAREN(...) __VA_ARGS__

/// One requirement of DDPM_CHECK_BACKEND_OPS: Ops<B_>::call compiles with the listed parameter
/// types and returns the listed result.
#define DDPM_DETAIL_CHECK_BACKEND_OP(name, template_params, result, params, ...)                  \
  static_assert(requires(const B_& be, DDPM_DETAIL_OPS_UNPAREN params) {                          \
    { ::ddpm::Ops<B_>::__VA_ARGS__ } -> std::same_as<result>;                                     \
  }, "ddpm: Ops<B> has no op '" #name "' with the signature of backend/reference.hpp");

/// DDPM_CHECK_BACKEND_OPS(Tag); at namespace scope, after the specialisation Ops<Tag>: one
/// static_assert per operation of DDPM_BACKEND_OPS, so a missing or mis-declared operation fails
/// with one error that names it. Checked with T = float, P = target::Epsilon, L = loss::L2 (the
/// calls are not evaluated: nothing is instantiated beyond the declarations). The instantiation
/// note under the error says which backend (`[with B_ = ...]`).
#define DDPM_CHECK_BACKEND_OPS(...)                                                               \
  static_assert(sizeof([]<class B_>(const B_*) {                                                  \
    using T [[maybe_unused]] = float;                                                             \
    using P [[maybe_unused]] = ::ddpm::target::Epsilon;                                           \
    using L [[maybe_unused]] = ::ddpm::loss::L2;                                                  \
    using namespace ::ddpm;                                                                       \
    DDPM_BACKEND_OPS(DDPM_DETAIL_CHECK_BACKEND_OP)                                                \
    return true;                                                                                  \
  }(static_cast<const __VA_ARGS__*>(nullptr))) > 0)
