// SPDX-License-Identifier: MIT
// ddpm/optim/ema.hpp — exponential moving average of the weights, with warm-up.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/optim/param_list.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::optim {

/// EMA settings. With warm-up the decay after n updates is min(decay, (1 + n) / (10 + n)), as the
/// reference (ref/ddpm.py EMA), so that short runs are not dominated by the initial weights.
struct EmaConfig {
  double decay = 0.999;
  bool warmup = true;
  void validate() const {
    detail::require(decay >= 0 && decay < 1, "optim::EmaConfig::decay", "must be in [0, 1), got ",
                    decay);
  }
};

/// A shadow copy of every parameter value of a model, collected once at construction (the model
/// must not move afterwards).
template <std::floating_point T, class B>
class Ema {
 public:
  template <class Model>
  Ema(Model& model, EmaConfig cfg, const B& backend = {})
      : cfg_(cfg), backend_(backend), params_(collect_parameters<T, B>(model)) {
    cfg_.validate();
    for (const auto& p : params_) {
      Tensor<T, B> v(p.value->shape());
      Ops<B>::copy(backend_, p.value->cview(), v.view());
      values_.push_back(std::move(v));
    }
  }

  [[nodiscard]] const EmaConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] std::uint64_t updates() const noexcept { return n_; }
  void set_updates(std::uint64_t n) noexcept { n_ = n; }
  /// The decay the next update will use.
  [[nodiscard]] double next_decay() const noexcept {
    if (!cfg_.warmup) return cfg_.decay;
    const double w = double(1 + n_ + 1) / double(10 + n_ + 1);
    return w < cfg_.decay ? w : cfg_.decay;
  }

  /// ema = d ema + (1 - d) p for every parameter.
  void update() {
    const T d = T(next_decay());
    ++n_;
    for (std::size_t i = 0; i < params_.size(); ++i)
      Ops<B>::ema_update(backend_, values_[i].view(), params_[i].value->cview(), d);
  }
  /// Exchanges the model's weights with the averaged ones (call again to restore). Cheap: swaps
  /// buffers, copies nothing.
  void swap() {
    for (std::size_t i = 0; i < params_.size(); ++i) std::swap(values_[i], *params_[i].value);
  }
  /// v(name, tensor) for every averaged tensor: "ema.<param>".
  template <class V>
  void visit_state(V&& v) {
    for (std::size_t i = 0; i < params_.size(); ++i) v("ema." + params_[i].name, values_[i]);
  }

 private:
  EmaConfig cfg_;
  B backend_;
  std::vector<ParamRef<T, B>> params_;
  std::vector<Tensor<T, B>> values_;
  std::uint64_t n_ = 0;
};

}  // namespace ddpm::optim
