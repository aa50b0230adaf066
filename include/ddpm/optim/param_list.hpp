// SPDX-License-Identifier: MIT
// ddpm/optim/param_list.hpp — the parameters of a model collected once (name and pointers to
// value and gradient), so optimisers, EMA and gradient norms iterate a flat list every step
// instead of re-visiting the model (which would build name strings: heap traffic per step).
#pragma once

#include <cmath>
#include <concepts>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::optim {

template <std::floating_point T, class B>
struct ParamRef {
  std::string name;
  Tensor<T, B>* value;
  Tensor<T, B>* grad;
};

/// Visits `model` once. The model (and its parameter tensors) must not move while the list is
/// used; swapping tensor contents (EMA) is fine.
template <std::floating_point T, class B, class Model>
std::vector<ParamRef<T, B>> collect_parameters(Model& model) {
  std::vector<ParamRef<T, B>> out;
  model.visit_parameters([&](std::string_view name, auto& p) {
    out.push_back({std::string(name), &p.value, &p.grad});
  });
  return out;
}

/// Sets every gradient to zero.
template <std::floating_point T, class B>
void zero_grads(const std::vector<ParamRef<T, B>>& params, const B& be) {
  for (const auto& p : params) Ops<B>::fill(be, p.grad->view(), T(0));
}

/// Global L2 norm of all gradients (double; NaN/Inf propagate).
template <std::floating_point T, class B>
double grad_norm(const std::vector<ParamRef<T, B>>& params, const B& be) {
  double s = 0;
  for (const auto& p : params) s += Ops<B>::sum_squares(be, p.grad->cview());
  return std::sqrt(s);
}

}  // namespace ddpm::optim
