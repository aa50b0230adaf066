// SPDX-License-Identifier: MIT
// ddpm/layers/embedding.hpp — the class embedding table and the time embedding
// (sinusoidal features -> Linear -> SiLU -> Linear).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Embedding(rows, dim): a lookup table, weight (rows, dim) drawn N(0, 1) (PyTorch's default).
/// The U-Net's class embedding has num_classes + 1 rows; the last one is the null class of
/// classifier-free guidance. No state.
template <std::floating_point T, class B>
class Embedding {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  Embedding(std::size_t rows, std::size_t dim, const B& backend, ParamInit& init)
      : backend_(backend), rows_(rows), dim_(dim), weight_(Shape{rows, dim}) {
    init.normal(weight_, 1.0);
  }

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }

  /// out[n, :] = weight[labels[n], :].       labels: (N) in [0, rows)   out: (N, dim)
  /// Labels are checked against [0, rows) when they are in host memory.
  void forward(ConstView<std::int32_t> labels, View<T> out) const {
    check(labels, out.shape(), "Embedding::forward");
    ops::template embedding_forward<T>(backend_, weight_.value.cview(), labels, out);
  }
  /// weight.grad[labels[n], :] += dout[n, :]  (no input gradient: labels are integers).
  void backward(ConstView<std::int32_t> labels, ConstView<T> dout) {
    check(labels, dout.shape(), "Embedding::backward");
    ops::template embedding_backward<T>(backend_, labels, dout, weight_.grad.view());
  }

  template <class V>
  void visit_parameters(V&& v) {
    v(std::string_view("weight"), weight_);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    v(std::string_view("weight"), weight_);
  }

 private:
  void check(ConstView<std::int32_t> labels, const Shape& out, std::string_view what) const {
    ddpm::detail::require_shape(out, Shape{labels.size(), dim_}, what);
    if constexpr (std::is_same_v<typename B::memory_space, backend::host_memory>) {
      for (std::size_t n = 0; n < labels.size(); ++n)
        DDPM_REQUIRE(labels[n] >= 0 && std::size_t(labels[n]) < rows_, what, "label ", labels[n],
                        " at index ", n, " outside [0, ", rows_, ")");
    }
  }

  B backend_;
  std::size_t rows_, dim_;
  Parameter<T, B> weight_;
};

/// The DDPM time embedding: emb = Linear2(SiLU(Linear0(sinusoidal(t)))), with
/// sinusoidal(t) = [sin(t f_i), cos(t f_i)], f_i = exp(-ln(10000) i / (half - 1)),
/// half = base / 2, timesteps fed unscaled. Parameter names follow PyTorch's
/// nn.Sequential(Linear, SiLU, Linear): "0.weight", "0.bias", "2.weight", "2.bias".
///
/// Saved state: the sinusoidal features (N, base), the first linear output and its SiLU
/// (N, dim each) of the last forward(), plus two (N, dim) gradient buffers; a few kilobytes.
template <std::floating_point T, class B>
class TimeEmbedding {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  TimeEmbedding(std::size_t base, std::size_t dim, const B& backend, ParamInit& init)
      : backend_(backend), base_(base), dim_(dim), fc0_(base, dim, backend, init), fc2_(dim, dim, backend, init) {}

  [[nodiscard]] std::size_t base() const noexcept { return base_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }

  /// emb = time MLP of the sinusoidal features of t.             t: (N) int32   emb: (N, dim)
  void forward(ConstView<std::int32_t> t, View<T> emb) {
    const std::size_t N = t.size();
    ddpm::detail::require_shape(emb.shape(), Shape{N, dim_}, "TimeEmbedding::forward");
    sin_.resize(Shape{N, base_});
    pre_.resize(Shape{N, dim_});
    act_.resize(Shape{N, dim_});
    ops::template timestep_embedding<T>(backend_, t, sin_.view());
    fc0_.forward(sin_.cview(), pre_.view());
    ops::template silu_forward<T>(backend_, pre_.cview(), act_.view());
    fc2_.forward(act_.cview(), emb);
  }

  /// @pre  forward() was the last call, with demb's batch size.
  /// @post every parameter gradient += its share of d loss / d emb (no input gradient).
  void backward(ConstView<T> demb) {
    ddpm::detail::require_shape(demb.shape(), pre_.shape(), "TimeEmbedding::backward");
    dact_.resize(pre_.shape());
    dpre_.resize(pre_.shape());
    fc2_.backward(act_.cview(), demb, dact_.view(), false);
    ops::template silu_backward<T>(backend_, pre_.cview(), dact_.cview(), dpre_.view(), false);
    fc0_.backward(sin_.cview(), dpre_.cview(), View<T>{}, false);
  }

  template <class V>
  void visit_parameters(V&& v) {
    ddpm::detail::visit_prefixed(fc0_, "0", v);
    ddpm::detail::visit_prefixed(fc2_, "2", v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    ddpm::detail::visit_prefixed(fc0_, "0", v);
    ddpm::detail::visit_prefixed(fc2_, "2", v);
  }

  /// Frees the saved activations.
  void release() noexcept {
    for (Tensor<T, B>* t : {&sin_, &pre_, &act_, &dact_, &dpre_}) t->release();
  }
  [[nodiscard]] std::size_t state_bytes() const noexcept {
    return (sin_.capacity() + pre_.capacity() + act_.capacity() + dact_.capacity() +
            dpre_.capacity()) * sizeof(T);
  }

 private:
  B backend_;
  std::size_t base_, dim_;
  Linear<T, B> fc0_;   // "0"
  Linear<T, B> fc2_;   // "2" (index 1 is the parameter-free SiLU)
  Tensor<T, B> sin_;   // (N, base)
  Tensor<T, B> pre_;   // (N, dim)  fc0 output
  Tensor<T, B> act_;   // (N, dim)  SiLU(pre)
  Tensor<T, B> dact_;  // (N, dim)  backward scratch
  Tensor<T, B> dpre_;  // (N, dim)  backward scratch
};

}  // namespace ddpm::nn
