// SPDX-License-Identifier: MIT
// ddpm/layers/parameter.hpp — a trainable tensor with its gradient, the Layer concept, and the
// helper that prefixes parameter names when a block forwards a visitor to its members.
#pragma once

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// A trainable tensor and its gradient, both in backend B's memory.
template <std::floating_point T, class B>
struct Parameter {
  Tensor<T, B> value;  ///< the weights
  Tensor<T, B> grad;   ///< same shape as value; backward() accumulates (+=), zero_grad() / the optimizer zero it

  Parameter() = default;
  /// Value and gradient of `shape`, both zero.
  explicit Parameter(Shape shape) : value(shape), grad(shape) {
    value.zero();
    grad.zero();
  }
  [[nodiscard]] std::size_t size() const noexcept { return value.size(); }
  [[nodiscard]] const Shape& shape() const noexcept { return value.shape(); }
};

/// What every layer and block provides: its element and backend types and
/// visit_parameters(v), which calls v(std::string_view name, Parameter<T, B>&) for each parameter
/// in PyTorch's named_parameters() order (optimizers and EMA rely on that order being fixed).
/// Forward/backward signatures differ between layers and are documented on each.
template <class L>
concept Layer = requires { typename L::value_type; typename L::backend_type; } &&
                requires(L& l) {
                  l.visit_parameters(
                      [](std::string_view, Parameter<typename L::value_type, typename L::backend_type>&) {});
                };

}  // namespace ddpm::nn

namespace ddpm::detail {

/// Calls v(prefix + "." + name, p) for every parameter `layer` visits (PyTorch's dotted names).
template <class L, class V>
void visit_prefixed(L& layer, std::string_view prefix, V& v) {
  layer.visit_parameters([&](std::string_view name, auto& p) {
    std::string full;
    full.reserve(prefix.size() + 1 + name.size());
    full.append(prefix).append(1, '.').append(name);
    v(std::string_view(full), p);
  });
}

}  // namespace ddpm::detail
